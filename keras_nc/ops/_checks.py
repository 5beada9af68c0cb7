"""Argument checks of `keras_nc.ops`: shapes, ranks, dtypes and options, checked on every call.

These checks are static (they read shapes and Python values, never the data),
so they raise in eager and compiled calls alike. The value checks (NaN,
labels outside `[0, C)`) are `keras_nc.ops._guards`'.
"""

import math

import keras
import numpy as np
from keras import ops


def as_float(x):
    """Converts `x` to a tensor of float32 or float64 (never half precision)."""
    x = ops.convert_to_tensor(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    target = "float64" if dtype == "float64" else "float32"
    return x if dtype == target else ops.cast(x, target)


def dtype_name(x):
    """The standardised dtype name of a tensor (`"float32"`, `"int64"`, ...)."""
    return keras.backend.standardize_dtype(x.dtype)


def check_alpha(alpha):
    """A valid entropy order as a float (a number > 0, finite)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"`alpha` must be a number > 0 (1 for von Neumann); received {alpha!r}.")
    if math.isinf(alpha):
        raise ValueError("`alpha` must be finite; received inf.")
    return float(alpha)


def check_flag(value, name):
    """`value` as a bool when it is one (Python or NumPy bool), else a `ValueError` naming it.

    Strings are refused: `bool("no")` and `bool("False")` are `True`.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"`{name}` must be True or False; received {value!r}.")


def check_rank(x, name, rank, layout):
    """Static check that `x` has `rank` dimensions (`layout` names them in the error)."""
    shape = tuple(x.shape)
    if len(shape) != rank:
        raise ValueError(f"`{name}` must have shape {layout}; received shape {shape}.")
    return shape


def check_matrix(x, name, square):
    """Static check of a batch of matrices `(..., n, n)` (square) or `(..., n, d)`."""
    shape = tuple(x.shape)
    if len(shape) < 2:
        raise ValueError(
            f"`{name}` must have rank >= 2 (shape (..., n, {'n' if square else 'd'})); "
            f"received shape {shape}."
        )
    if square and shape[-1] is not None and shape[-2] is not None and shape[-1] != shape[-2]:
        raise ValueError(
            f"`{name}` must be a square matrix or a batch of square matrices with shape "
            f"(..., n, n); received shape {shape}."
        )
    return shape


def check_same_shape(k1, k2):
    """Static check that two Gram batches have one shape (same samples, same order)."""
    s1, s2 = tuple(k1.shape), tuple(k2.shape)
    if len(s1) != len(s2) or any(
        a is not None and b is not None and a != b for a, b in zip(s1, s2, strict=True)
    ):
        raise ValueError(
            "`k1` and `k2` must have the same shape (..., n, n) (one Gram matrix per "
            f"sample set, same samples in the same order); received {s1} and {s2}."
        )


def check_width(x, name, width, other):
    """Static check that the last dimension of `x` equals `width` (that of `other`)."""
    d = x.shape[-1]
    if d is not None and width is not None and d != width:
        raise ValueError(
            f"`{name}` must have {width} columns, the width of `{other}`; "
            f"received shape {tuple(x.shape)}."
        )


def features_tensor(features, name="features"):
    """`(n, d)` float features (static checks only)."""
    features = as_float(features)
    check_rank(features, name, 2, "(n, d)")
    return features


def head_tensor(head_weights, features, name="head_weights"):
    """`(C, d)` float head rows matching the width of `features` (static checks only)."""
    head = as_float(head_weights)
    check_rank(head, name, 2, "(num_classes, d)")
    check_width(head, name, features.shape[-1], "features")
    if head.shape[0] is None:
        raise ValueError(f"`{name}` must have a static number of rows (num_classes).")
    return head


def label_indices(labels, num_classes, name="labels", num_samples=None):
    """Labels as a `(n,)` tensor of class indices (static checks only).

    Accepts integer (or integral float) indices of shape `(n,)` or `(n, 1)`,
    and one-hot or soft labels of shape `(n, num_classes)` (reduced to their
    argmax). Values are checked by `guard`.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer; received {num_classes!r}.")
    try:
        labels = ops.convert_to_tensor(labels)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{name}` must be a tensor of integer class indices; received {type(labels).__name__} "
            f"that does not convert to a numeric tensor ({error})."
        ) from error
    shape = tuple(labels.shape)
    if len(shape) == 2 and shape[-1] == 1:
        labels = ops.squeeze(labels, -1)
    elif len(shape) == 2 and shape[-1] == num_classes:
        labels = ops.argmax(labels, axis=-1)  # one-hot or soft labels
    if len(labels.shape) != 1:
        raise ValueError(
            f"`{name}` must hold integer class indices of shape (n,) or (n, 1), or one-hot "
            f"rows of shape (n, {num_classes}); received shape {shape}."
        )
    if num_samples is not None and labels.shape[0] is not None and labels.shape[0] != num_samples:
        raise ValueError(
            f"`{name}` must hold one label per row of the features ({num_samples}); "
            f"received {labels.shape[0]} labels."
        )
    dtype = dtype_name(labels)
    if dtype == "bool":
        return ops.cast(labels, "int32")
    if "float" in dtype:
        return ops.cast(labels, "float32")
    if "int" not in dtype:
        raise ValueError(
            f"`{name}` must be a tensor of integer class indices; received dtype {dtype}."
        )
    return labels


def sample_weight_tensor(sample_weight, num_samples):
    """`(n,)` float sample weights (static checks; values by `guard`)."""
    weight = as_float(sample_weight)
    if len(weight.shape) == 2 and weight.shape[-1] == 1:
        weight = ops.squeeze(weight, -1)
    if len(weight.shape) != 1 or (
        num_samples is not None and weight.shape[0] not in (None, num_samples)
    ):
        raise ValueError(
            f"`sample_weight` must have shape (n,) with n = {num_samples}, one weight per "
            f"sample; received shape {tuple(ops.shape(sample_weight))}."
        )
    return weight
