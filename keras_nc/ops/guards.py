"""When the value checks of `keras_nc.ops` raise, and when they give NaN.

Eager calls raise a `ValueError` naming the argument on NaN or infinite
features, labels outside `[0, C)` or negative sample weights; compiled calls
(`jax.jit`, `tf.function`, `torch.compile`) cannot raise on data and return
NaN. `invalid_values_as_nan()` gives eager calls the compiled behaviour; the
train and test steps of `keras_nc.models.CollapseClassifier` run in it, so a
diverged run ends the same way on every backend.
"""

from keras_nc.ops._guards import invalid_values_as_nan

__all__ = ["invalid_values_as_nan"]
