"""Keras' own `EarlyStopping`, replayed on the recorded per-epoch logs of a full run.

`EarlyStopping` only reads the epoch's `logs` (and, with
`restore_best_weights`, copies the weights it will restore): it does not
change training until it stops it. Training is deterministic given the seed
(`studies.early_stopping.cell` runs with TensorFlow's op determinism), so the
epochs a run with the callback trains are the first epochs of the full run,
with the same logs, and the callback sees the same values in both. Feeding
the full run's logs to a real `keras.callbacks.EarlyStopping` instance
(`on_train_begin`, then `on_epoch_end(epoch, logs)` until it sets
`model.stop_training`) therefore gives the epoch at which `fit` would have
stopped and the epoch whose weights it restores, and the restored model's
test accuracy is the one recorded at that epoch. The study checks this once
against a real `fit` with the callback (the check run).

`mode="auto"` is resolved by Keras from the model's compiled metrics: the
callback's model must be compiled with the same metrics as the run (the
keras-nc metrics carry their `direction`: `"up"` for MIR, `"down"` for HDR and
NC1, see docs/log_keys.md) and its metrics built (one `evaluate` call).

Example:

```python
import keras
import numpy as np

import keras_nc
from studies.early_stopping import replay

backbone = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu")])
model = keras_nc.models.CollapseClassifier(backbone, 2)
model.compile(loss="sparse_categorical_crossentropy", metrics=[keras_nc.metrics.MIR()])
model.evaluate(np.ones((4, 4)), np.array([0, 1, 0, 1]), verbose=0)  # builds the metrics
history = {"val_mir": [0.1, 0.3, 0.2, 0.25, 0.28, 0.4]}
print(replay.replay(history, model, "val_mir", patience=3))
# Stop(epochs_trained=5, stopped_epoch=4, best_epoch=1, stopped=True)
```
"""

from dataclasses import dataclass

import keras

MONITORS = ("val_loss", "val_accuracy", "val_mir", "val_hdr", "val_nc1")
PATIENCES = (3, 5)


@dataclass(frozen=True)
class Stop:
    """Where `EarlyStopping` stops a run (0-based epochs, Keras' own numbering).

    `epochs_trained` counts the epochs run; `best_epoch` is the epoch whose
    weights `restore_best_weights=True` restores (also when it never stops);
    `stopped` says whether the callback stopped training (possibly after the
    last epoch).
    """

    epochs_trained: int
    stopped_epoch: int
    best_epoch: int
    stopped: bool


def early_stopping(monitor, patience):
    """The callback the study studies: `mode="auto"`, the best weights restored."""
    return keras.callbacks.EarlyStopping(
        monitor=monitor, mode="auto", patience=patience, restore_best_weights=True
    )


def replay(history, model, monitor, patience):
    """Runs `EarlyStopping(monitor, "auto", patience, restore_best_weights=True)` on `history`.

    Args:
        history: `{key: [value per epoch]}` (a `History.history`).
        model: a model compiled with the run's metrics, its metrics built.
        monitor: the monitored key, e.g. `"val_mir"`.
        patience: the callback's patience.

    Returns:
        A `Stop`.
    """
    epochs = len(history[monitor])
    model.stop_training = False
    callback = early_stopping(monitor, patience)
    callback.set_model(model)
    callback.on_train_begin()
    trained, stopped = epochs, False
    for epoch in range(epochs):
        logs = {key: values[epoch] for key, values in history.items()}
        callback.on_epoch_end(epoch, logs)
        if model.stop_training:  # `fit` ends after this epoch (also if it is the last)
            trained, stopped = epoch + 1, True
            break
    model.stop_training = False  # the model is `fit`-able again
    return Stop(trained, int(callback.stopped_epoch), int(callback.best_epoch), stopped)


def comparison(model, monitor):
    """`"max"` or `"min"`: how `EarlyStopping(monitor, mode="auto")` compares on `model`.

    Read from the callback's public behaviour: of two epochs logging 0 and 1,
    the best is the second when it maximises.
    """
    callback = early_stopping(monitor, patience=1)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate((0.0, 1.0)):
        callback.on_epoch_end(epoch, {monitor: value})
    model.stop_training = False
    return "max" if callback.best_epoch == 1 else "min"
