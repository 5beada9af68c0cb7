"""The training program's callbacks: test evaluation with the averaged weights, step budget, notice.

- `EMATestEvaluation`: a `keras_nc.callbacks.EpochEndEvaluator` that logs
  `test_*` of a test set with the averaged weights at every epoch end.
- `StopAtStep`: ends training after exactly `--steps` optimizer steps.
- `FirstStepNotice`: says that the first step traces and compiles.

Example:

```python
callbacks = [StopAtStep(1000), keras.callbacks.SwapEMAWeights(), EMATestEvaluation(test),
             keras.callbacks.CSVLogger("history.csv"), FirstStepNotice("freematch on wrn28_2")]
```
"""

import time

import keras

from keras_nc.callbacks import EpochEndEvaluator


class EMATestEvaluation(EpochEndEvaluator):
    """Evaluates a test set at every epoch end with the averaged weights; logs `test_*`.

    A `keras_nc.callbacks.EpochEndEvaluator` without data: its `measure` is a
    `model.evaluate` of the test set with its own
    `keras.callbacks.SwapEMAWeights` (the weight average in, the live weights
    back after), so the model's `SwapEMAWeights` must not swap on epochs (its
    default). The values (`test_loss`, `test_accuracy`, ...) are added to the
    epoch's logs and to `history`: place this callback before `CSVLogger`.

    Args:
        dataset: the test set, a finite dataset of `(images, labels)` batches.
        prefix: prefix of the logged keys.

    Example:

    ```python
    callbacks = [keras.callbacks.SwapEMAWeights(), EMATestEvaluation(test),
                 keras.callbacks.CSVLogger("history.csv")]
    ```
    """

    def __init__(self, dataset, prefix="test_"):
        super().__init__(prefix=prefix)
        self.dataset = dataset

    def measure(self):
        """The compiled loss and metrics of the test set, with the averaged weights."""
        swap = [keras.callbacks.SwapEMAWeights()] if self.model.optimizer.use_ema else []
        results = self.model.evaluate(self.dataset, callbacks=swap, verbose=0, return_dict=True)
        return {key: float(value) for key, value in results.items()}


class StopAtStep(keras.callbacks.Callback):
    """Stops training after `steps` optimizer steps in all (resumed runs included).

    Keras runs the epoch's end as usual after the stop (validation, logs), so a
    last, shorter evaluation period closes the run.
    """

    def __init__(self, steps):
        super().__init__()
        self.steps = steps
        self.done = 0

    def on_train_begin(self, logs=None):
        self.done = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        if self.done >= self.steps:
            self.model.stop_training = True


class FirstStepNotice(keras.callbacks.Callback):
    """Says, before the progress bar's first update, that the first step compiles.

    The first training step traces the train step and compiles it (XLA on JAX
    and TensorFlow): for WRN-28-2 on a CPU that alone takes a minute or more,
    and Keras' progress bar first appears when that step ends. This callback
    prints a line when training starts and another with the first step's time
    once it ends; the progress bar then advances at every step.

    Args:
        description: what is being compiled (e.g. `"freematch on wrn28_2 x1.0"`).

    Example:

    ```python
    model.fit(dataset, epochs=2, callbacks=[FirstStepNotice("freematch on wrn10_2 x0.25")])
    ```
    """

    def __init__(self, description):
        super().__init__()
        self.description = description
        self.first_step_seconds = None
        self._start = None

    def on_train_begin(self, logs=None):
        self.first_step_seconds, self._start = None, time.time()
        print(
            f"Compiling the training step of {self.description} ({keras.backend.backend()}): "
            "the first step traces and compiles it (a minute or more for WRN-28-2 on a CPU); "
            "the progress bar then advances at every step.",
            flush=True,
        )

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step_seconds is None:
            self.first_step_seconds = time.time() - self._start
            print(
                f"First step (tracing and compilation included) done in "
                f"{self.first_step_seconds:.1f} s.",
                flush=True,
            )
