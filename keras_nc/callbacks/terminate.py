"""`TerminateOnNonFiniteWeights`: stops training when a weight holds NaN or inf."""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="keras_nc")
class TerminateOnNonFiniteWeights(keras.callbacks.Callback):
    """Stops training when a weight of the model holds NaN or inf.

    `keras.callbacks.TerminateOnNaN` watches the loss. A diverged run can
    keep a finite loss: on TensorFlow with oneDNN's fused CPU kernels (the x86
    default), NaN weights can come out of a layer as zero activations, so the
    loss sits at `log(C)` and the collapse metrics report total collapse while
    the weights are NaN; no NaN ever reaches the loss or the metrics. This
    callback looks at the weights themselves, after every epoch (and every
    `every_n_batches` batches when given), and stops training with a message
    naming the first bad weight.

    Args:
        every_n_batches: optional; also check every this many training
            batches (each check reads every weight: cheap next to a step for
            ordinary models, but not free).

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[keras_nc.callbacks.TerminateOnNonFiniteWeights()])
    ```
    """

    def __init__(self, every_n_batches=None):
        super().__init__()
        if every_n_batches is not None and (
            isinstance(every_n_batches, bool)
            or not isinstance(every_n_batches, int)
            or every_n_batches < 1
        ):
            raise ValueError(
                f"`every_n_batches` must be None or a positive integer; received "
                f"{every_n_batches!r}."
            )
        self.every_n_batches = every_n_batches
        self.stopped_on = None

    def _check(self, where):
        for weight in self.model.weights:
            if not bool(np.all(np.isfinite(keras.ops.convert_to_numpy(weight.value)))):
                self.stopped_on = weight.path
                print(
                    f"\n{where}: weight {weight.path!r} holds NaN or infinite values; "
                    "terminating training (the run diverged: check the learning rate and "
                    "the loss)."
                )
                self.model.stop_training = True
                return

    def on_train_batch_end(self, batch, logs=None):
        if self.every_n_batches and (batch + 1) % self.every_n_batches == 0:
            self._check(f"Batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(f"Epoch {epoch + 1}")

    def get_config(self):
        return {"every_n_batches": self.every_n_batches}
