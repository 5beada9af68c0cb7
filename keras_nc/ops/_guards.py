"""Value checks of `keras_nc.ops`: one guard, and the labelled batch it checks.

Shapes, ranks and dtypes are static and checked on every call
(`keras_nc.ops._checks`). Values
(NaN or infinite entries, labels outside `[0, C)`, fractional float labels)
are checked by `guard`, the one place that implements the policy of the
package: eager calls raise a `ValueError` naming the user's argument; traced
calls (`jax.jit`, `tf.function`, `torch.compile`, the train step of `fit`)
cannot raise on data, so they get sanitised tensors (no backend kernel sees a
bad value) and an `ok` flag, and return NaN where it is False (`nan_unless`).
Within `invalid_values_as_nan()` eager calls take the traced path too: that is
how `fit` and `evaluate` end a diverged run the same way on every backend,
eager PyTorch steps included (NaN in the logs; callbacks decide).
"""

import collections
import contextlib
import threading

import keras
from keras import ops

from keras_nc.compat.backend import values_known, widest_float
from keras_nc.ops._checks import (
    dtype_name,
    features_tensor,
    head_tensor,
    label_indices,
    sample_weight_tensor,
)


def is_concrete(x):
    """Whether the values of `x` are known now, so a data-dependent check can raise.

    False while a function is traced for compilation (`jax.jit`, `tf.function`,
    `torch.compile`) and for symbolic `keras.KerasTensor`s.
    """
    if isinstance(x, keras.KerasTensor):
        return False
    return values_known(x)


_LENIENT = threading.local()


@contextlib.contextmanager
def invalid_values_as_nan():
    """Within this context, value checks give NaN results instead of raising.

    Eager calls of `keras_nc.ops` (and of the metrics and losses built on
    them) raise a `ValueError` on NaN or infinite features, labels outside
    `[0, C)` or negative sample weights; compiled calls cannot raise on data
    and return NaN instead. Inside this context eager calls behave like
    compiled ones, so that a training loop ends a diverged run the same way on
    every backend: `CollapseClassifier`'s train and test steps run in it, and
    a NaN loss or metric reaches the logs, where
    `keras.callbacks.TerminateOnNaN` (or any callback) decides. Shapes and
    argument types are still checked and still raise. The context is
    per-thread and may be nested.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> from keras_nc.ops.guards import invalid_values_as_nan
    >>> with invalid_values_as_nan():
    ...     value = nc_ops.feature_entropy(np.full((4, 3), np.nan, "float32"))
    >>> bool(np.isnan(value))
    True
    """
    depth = getattr(_LENIENT, "depth", 0)
    _LENIENT.depth = depth + 1
    try:
        yield
    finally:
        _LENIENT.depth = depth


def values_raise(x):
    """Whether a value check of `x` raises now: eager `x`, outside `invalid_values_as_nan`."""
    return getattr(_LENIENT, "depth", 0) == 0 and is_concrete(x)


def statistics_dtype():
    """The widest float the backend computes in: float64, or float32 on JAX without x64."""
    return widest_float()


Guarded = collections.namedtuple("Guarded", ["tensors", "labels", "ok"])
Guarded.__doc__ = """What `guard` returns.

`tensors`: the float tensors (a dict, same keys); `labels`: int32 class
indices clipped into `[0, C)` (or None); `ok`: None after eager validation,
else a scalar boolean tensor, False when some value was invalid.
"""


def guard(
    tensors, labels=None, num_classes=None, labels_name="labels", strict=True, nonnegative=()
):
    """The one value check of the package: raise when eager, flag and sanitise when traced.

    Args:
        tensors: a dict `{argument name: float tensor}`; the names are the
            user's (e.g. `"y_true"`, `"head_weights"`), used in the errors.
        labels: optional class indices from `label_indices`.
        num_classes: the number of classes `C` (with `labels`).
        labels_name: the name of `labels` in the errors.
        strict: `False` for consumers of accumulated statistics, which never
            raise: they always get sanitised tensors and a (concrete) flag.
            Within `invalid_values_as_nan()` no check raises.
        nonnegative: names of `tensors` whose values must also be `>= 0`
            (sample weights).

    Returns:
        A `Guarded` tuple. Traced (or not strict), non-finite tensors are
        replaced by zeros, all of them when any is bad, and `ok` says so.
    """
    first = next(iter(tensors.values()), labels)
    if strict and first is not None and values_raise(first):
        for name, value in tensors.items():
            _raise_if_not_finite(value, name, name in nonnegative)
        if labels is not None:
            _raise_if_bad_labels(labels, num_classes, labels_name)
        return Guarded(tensors, _clipped(labels, num_classes), None)
    ok = None
    for name, value in tensors.items():
        finite = ops.all(ops.isfinite(value))
        if name in nonnegative:
            finite = finite & ops.all(value >= 0)
        ok = finite if ok is None else ok & finite
    if labels is not None:
        valid = _labels_valid(labels, num_classes)
        ok = valid if ok is None else ok & valid
    if ok is not None:
        tensors = {name: ops.where(ok, value, 0.0) for name, value in tensors.items()}
    return Guarded(tensors, _clipped(labels, num_classes), ok)


def nan_unless(ok, value):
    """`value` where `ok`, NaN elsewhere (the traced-mode signal of bad input).

    `ok=None` (eager input, validated by `guard`) returns `value` unchanged.
    """
    return value if ok is None else ops.where(ok, value, float("nan"))


def both(ok1, ok2):
    """The conjunction of two `ok` flags (None means valid)."""
    if ok1 is None:
        return ok2
    return ok1 if ok2 is None else ok1 & ok2


def _labels_valid(labels, num_classes):
    valid = ops.all((labels >= 0) & (labels < num_classes))
    if "float" in dtype_name(labels):
        valid = valid & ops.all(ops.floor(labels) == labels)
    return valid


def _clipped(labels, num_classes):
    if labels is None:
        return None
    return ops.cast(ops.clip(labels, 0, num_classes - 1), "int32")


def _raise_if_not_finite(x, name, nonnegative=False):
    if nonnegative and not bool(ops.all(ops.isfinite(x) & (x >= 0))):
        raise ValueError(f"`{name}` must hold finite, non-negative numbers.")
    # One reduction first (no temporary of x's size): a sum of finite numbers
    # is finite unless it overflows, and only then is every entry checked.
    if bool(ops.isfinite(ops.sum(x))) or bool(ops.all(ops.isfinite(x))):
        return
    bad = int(ops.sum(ops.cast(ops.logical_not(ops.isfinite(x)), "int32")))
    raise ValueError(
        f"`{name}` must hold finite numbers; received {bad} NaN or infinite value(s) "
        f"in a tensor of shape {tuple(x.shape)}. Non-finite features usually mean "
        "that training diverged (check the learning rate and the loss)."
    )


def _raise_if_bad_labels(labels, num_classes, name):
    dtype = dtype_name(labels)
    if "float" in dtype and not bool(ops.all(ops.floor(labels) == labels)):
        raise ValueError(
            f"`{name}` must hold integer class indices; received fractional values in a "
            f"float tensor."
        )
    if not bool(ops.all((labels >= 0) & (labels < num_classes))):
        low, high = ops.convert_to_numpy(ops.min(labels)), ops.convert_to_numpy(ops.max(labels))
        raise ValueError(
            f"`{name}` must hold class indices in [0, {num_classes}); received values from "
            f"{low} to {high}."
        )


LabelledBatch = collections.namedtuple(
    "LabelledBatch", ["features", "labels", "head", "sample_weight", "ok", "num_classes"]
)
LabelledBatch.__doc__ = """A batch of features, labels and head rows that passed `guard`.

`features` `(n, d)`, `labels` int32 `(n,)` in `[0, C)`, `head` `(C, d)` or
None, `sample_weight` `(n,)` or None, `ok` the guard's flag (None after eager
validation), `num_classes` `C`. Built by `keras_nc.ops.labelled_batch`.
"""


def labelled_batch(
    features,
    labels,
    head_weights=None,
    num_classes=None,
    sample_weight=None,
    labels_name="labels",
    head_name="head_weights",
):
    """Checks a labelled batch once: shapes always, values through `guard`.

    The measures that read labels take a `LabelledBatch`, so one training step
    validates its labels once, however many measures read them, and errors
    name the caller's arguments (`labels_name="y_true"` in metrics and losses).

    Args:
        features: `(n, d)` features.
        labels: `(n,)` class indices (or `(n, 1)`, or one-hot `(n, C)`).
        head_weights: optional `(C, d)` head rows (or class anchors).
        num_classes: `C`; default: the number of head rows.
        sample_weight: optional `(n,)` non-negative weights.
        labels_name: the name of `labels` in errors.
        head_name: the name of `head_weights` in errors.

    Returns:
        A `LabelledBatch`.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> batch = nc_ops.labelled_batch(np.ones((4, 3)), np.array([0, 1, 1, 2]), num_classes=3)
    >>> batch.num_classes, tuple(batch.labels.shape)
    (3, (4,))
    """
    features = features_tensor(features)
    tensors = {"features": features}
    head = None
    if head_weights is not None:
        head = head_tensor(head_weights, features, name=head_name)
        tensors[head_name] = head
        num_classes = head.shape[0] if num_classes is None else num_classes
    if num_classes is None:
        raise ValueError("`labelled_batch` needs `head_weights` or `num_classes`.")
    labels = label_indices(labels, num_classes, labels_name, num_samples=features.shape[0])
    if sample_weight is not None:
        tensors["sample_weight"] = sample_weight_tensor(sample_weight, features.shape[0])
    checked = guard(tensors, labels, num_classes, labels_name, nonnegative=("sample_weight",))
    return LabelledBatch(
        checked.tensors["features"],
        checked.labels,
        checked.tensors.get(head_name),
        checked.tensors.get("sample_weight"),
        checked.ok,
        int(num_classes),
    )
