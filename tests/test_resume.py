"""Interrupted and resumed training equals uninterrupted training (BackupAndRestore)."""

import keras
import numpy as np
import pytest

from keras_nc import losses, metrics
from keras_nc.models import CollapseClassifier
from tests.helpers import to_numpy

C, D, N, EPOCHS = 3, 6, 24, 4


class _Interrupt(keras.callbacks.Callback):
    """Simulates a crash at the end of an epoch (after the backup was written)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated interruption")


def _data():
    rng = np.random.default_rng(0)
    y = (np.arange(N) % C).astype("int32")
    x = (rng.normal(size=(N, D)) + 2.0 * np.eye(C, D)[y]).astype("float32")
    return x, y


def _model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((D,))
    backbone = keras.Model(inputs, keras.layers.Dense(8, activation="relu")(inputs))
    model = CollapseClassifier(backbone, num_classes=C)
    schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=EPOCHS * N // 8)
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
        loss=[
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            losses.InformationRegularizer(0.1, 0.1),
        ],
        metrics=[metrics.MIR(), metrics.MIR(pairing="class", name="mir_class"), metrics.NC1()],
    )
    return model


def _fit(model, callbacks=()):
    x, y = _data()
    return model.fit(
        x, y, batch_size=8, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=list(callbacks)
    )


def _state(model):
    weights = [to_numpy(v) for v in model.weights]
    metric_states = [to_numpy(v) for m in model.metrics for v in m.variables]
    return weights, metric_states


def _restart(model, weights):
    """Puts `model` back to `weights` with a fresh optimizer state, as a new process would.

    One model object serves every run so the train step compiles once (JAX and
    TensorFlow compile per model).
    """
    model.set_weights(weights)
    for variable in model.optimizer.variables:
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))


def test_interrupted_and_resumed_fit_equals_uninterrupted_fit(tmp_path):
    model = _model(seed=0)
    initial = model.get_weights()
    expected_history = _fit(model).history
    expected_weights, expected_metric_states = _state(model)

    _restart(model, initial)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        _fit(model, [keras.callbacks.BackupAndRestore(str(tmp_path)), _Interrupt(epoch=1)])
    # The new process starts from other weights and a fresh optimizer; the
    # backup restores weights, optimizer state (momentum, schedule step) and epoch.
    scrambled = [np.random.default_rng(1).normal(size=w.shape).astype(w.dtype) for w in initial]
    _restart(model, scrambled)
    history = _fit(model, [keras.callbacks.BackupAndRestore(str(tmp_path))]).history

    assert int(to_numpy(model.optimizer.iterations)) == EPOCHS * N // 8
    # The resumed run logs the epochs after the interruption only.
    assert len(history["loss"]) == EPOCHS - 2
    # The backup restores the exact float32 weights, optimizer state and step; the same
    # compiled step (one model object) on the same batches on one CPU then computes the
    # same values bit for bit: the comparisons are exact.
    for key in ("loss", "mir", "mir_class", "nc1"):
        np.testing.assert_array_equal(history[key], expected_history[key][2:], err_msg=key)
    weights, metric_states = _state(model)
    for got, want in zip(weights, expected_weights, strict=True):
        np.testing.assert_array_equal(got, want)
    # Metric states (sample-pairing sums, class-statistics accumulators) of the last epoch.
    for got, want in zip(metric_states, expected_metric_states, strict=True):
        np.testing.assert_array_equal(got, want)
