"""The labelled data an epoch-end evaluator measures: checks, integer labels and batches.

Shared by `keras_nc.callbacks.EpochEndEvaluator` and its subclasses: arrays
with labels, or a re-iterable, finite dataset of `(inputs, labels)` or
`(inputs, labels, sample_weight)` batches.
"""

import collections.abc
import math

import keras
import numpy as np


def check_positive_int(value, name):
    """`value` when a positive Python integer (not a bool), else a `ValueError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; received {value!r}.")
    return value


def integer_labels(y, name, owner):
    """`(n,)` int32 labels from integer `(n,)`/`(n, 1)` or one-hot `(n, C)` labels.

    Args:
        y: the labels (any array Keras converts).
        name: how the error messages name them (e.g. "`y`").
        owner: the callback's name, for the error messages.

    Returns:
        A NumPy `(n,)` int32 array.

    Example:

    >>> integer_labels(np.eye(3)[[2, 0]], "`y`", "CollapseMonitor").tolist()
    [2, 0]
    """
    labels = np.asarray(keras.ops.convert_to_numpy(y))
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot (or class probabilities)
        labels = np.argmax(labels, axis=-1)
    elif labels.ndim == 2:
        labels = labels.reshape(-1)
    if labels.ndim != 1:
        raise ValueError(
            f"{owner}: {name} must be integer labels of shape (n,) or (n, 1), or "
            f"one-hot labels (n, num_classes); received shape {labels.shape}."
        )
    if labels.dtype.kind not in "iub":
        if labels.dtype.kind != "f" or not np.all(np.isfinite(labels) & (labels % 1 == 0)):
            raise ValueError(
                f"{owner}: {name} must hold integer class labels; received "
                f"{labels.dtype} values such as {labels[:3].tolist()}."
            )
    return labels.astype("int32")


def check_label_range(labels, num_classes, owner):
    """A `ValueError` when a label is outside `[0, num_classes)`."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{owner}: labels must be in [0, {num_classes}) for a model with "
            f"{num_classes} classes; received labels from {labels.min()} to {labels.max()}."
        )


def check_data(x, y, owner):
    """Checks `x` with integer labels `y`, or `x` alone as a re-iterable dataset of batches."""
    if y is not None:
        leaves = keras.tree.flatten(x)
        if not leaves or not all(hasattr(leaf, "shape") for leaf in leaves):
            raise ValueError(
                f"{owner}: with `y`, `x` must be an array (or a dict or list of arrays); "
                f"received {type(x).__name__}. Pass a dataset of batches as `x` with `y=None`."
            )
        sizes = {int(leaf.shape[0]) for leaf in leaves}
        if sizes != {len(y)}:
            raise ValueError(
                f"{owner}: `x` and `y` must hold the same number of samples; received "
                f"{sorted(sizes)} inputs and {len(y)} labels."
            )
        if not len(y):
            raise ValueError(f"{owner}: `x` and `y` are empty; it needs samples to measure.")
        return
    if hasattr(x, "shape"):
        raise ValueError(
            f"{owner}: `y` is required when `x` is an array; or pass a dataset of "
            "`(inputs, labels)` batches as `x`."
        )
    if isinstance(x, collections.abc.Iterator) or not isinstance(x, collections.abc.Iterable):
        raise ValueError(
            f"{owner}: `x` must be arrays with `y`, or a re-iterable dataset of "
            "`(inputs, labels)` batches (a tf.data.Dataset, a keras.utils.PyDataset, a torch "
            f"DataLoader, a list); received a {type(x).__name__}, which "
            + (
                "would be exhausted after the first evaluation."
                if isinstance(x, collections.abc.Iterator)
                else "is not iterable."
            )
        )


def labelled_batches(x, y, batch_size, owner):
    """`(inputs, integer labels)` batches: slices of arrays `x`, `y`, or the batches of `x`."""
    if y is not None:
        for start in range(0, len(y), batch_size):
            rows = slice(start, start + batch_size)
            yield keras.tree.map_structure(lambda a, r=rows: a[r], x), y[rows]
        return
    for batch in x:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            length = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
            raise ValueError(
                f"{owner}: each batch of `x` must be `(inputs, labels)` or "
                "`(inputs, labels, sample_weight)`; received a "
                f"{type(batch).__name__}{length}."
            )
        yield batch[0], integer_labels(batch[1], "the labels of `x`'s batches", owner)


def batch_count(x, y, batch_size):
    """Number of batches of the data, or `None` when a dataset does not say."""
    if y is not None:
        return math.ceil(len(y) / batch_size)
    try:
        return len(x)
    except TypeError:  # no __len__, or an unknown cardinality (tf.data)
        return None
