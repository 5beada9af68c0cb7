"""The argument and value checks of `keras_nc.ops`, for the layers built on it.

Eager calls raise a `ValueError` naming the argument on NaN or infinite
features, labels outside `[0, C)` or negative sample weights; compiled calls
(`jax.jit`, `tf.function`, `torch.compile`) cannot raise on data and return
NaN. `invalid_values_as_nan()` gives eager calls the compiled behaviour; the
train and test steps of `keras_nc.models.CollapseClassifier` run in it, so a
diverged run ends the same way on every backend.

The metrics, losses and callbacks of keras-nc check their arguments with the
same functions, so an argument has one error message across the package:

- `check_alpha(alpha)`: an entropy order, a number > 0;
- `check_flag(value, name)`: a Python or NumPy bool (strings refused);
- `features_tensor(features, name)`: `(n, d)` float features (static checks);
- `labelled_batch(...)`: features, labels and head weights checked once per step;
- `is_concrete(x)`: whether values are known now (not traced), so a check can raise;
- `values_raise(x)`: whether a value check of `x` raises now;
- `statistics_dtype()`: the widest float the backend computes in.

Example:

>>> from keras_nc.ops.guards import check_alpha
>>> check_alpha(2)
2.0
"""

from keras_nc.ops._checks import check_alpha, check_flag, features_tensor
from keras_nc.ops._guards import (
    invalid_values_as_nan,
    is_concrete,
    labelled_batch,
    statistics_dtype,
    values_raise,
)

__all__ = [
    "check_alpha",
    "check_flag",
    "features_tensor",
    "invalid_values_as_nan",
    "is_concrete",
    "labelled_batch",
    "statistics_dtype",
    "values_raise",
]
