"""Mergeable per-class statistics of features: counts, sums, squared norms, second moment.

The fused step update of accumulated statistics (`class_sum_terms`,
`moment_block_bounds`, `moment_from_block_rows`) is in
`keras_nc.ops.class_sums`, re-exported here.
"""

import numpy as np
from keras import ops

from keras_nc.compat.keras_versions import scatter_update_add
from keras_nc.ops._checks import as_float, dtype_name
from keras_nc.ops._guards import guard, is_concrete, labelled_batch, nan_unless, statistics_dtype
from keras_nc.ops._spectral import largest, matmul
from keras_nc.ops.class_sums import (
    class_sum_terms,
    moment_block_bounds,
    moment_from_block_rows,
)

__all__ = [
    "class_means",
    "class_statistics",
    "class_statistics_of",
    "class_sum_terms",
    "moment_block_bounds",
    "moment_from_block_rows",
    "present_classes",
    "scale_exponent",
]


def scale_exponent(x):
    """The power-of-two exponent `e` that brings `x`'s largest magnitude into `(1/2, 1]`.

    `ceil(log2(max |x|))`, 0 for an all-zero (or empty) `x`. Dividing by `2**e`
    is exact in floating point and keeps squares of features of any finite
    magnitude (1e-30 to 1e30 in float32) in range; the measures of Neural
    Collapse are scale-invariant, so statistics of `x * 2**-e` give the same
    measures as those of `x`.

    Args:
        x: a tensor.

    Returns:
        A scalar float32 tensor holding an integer.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> float(nc_ops.scale_exponent(np.array([3.0, -5.0], "float32")))
    3.0
    """
    x = as_float(x)
    top = ops.cast(largest(ops.abs(x)), "float32")
    finite = ops.isfinite(top) & (top > 0)
    exponent = ops.ceil(ops.log2(ops.where(finite, top, 1.0)))
    return ops.stop_gradient(exponent)


def class_statistics(
    features,
    labels,
    num_classes,
    sample_weight=None,
    second_moment=True,
    exponent=None,
    shift=None,
):
    """Mergeable per-class sums of a batch of features.

    Sums over batches (or devices) give the statistics of the concatenated
    data, from which `class_means`, `neural_collapse_measures` and the class
    pairing of `mir`/`hdr` are computed. All of these are scale-invariant, so
    statistics of scaled features (`exponent`) give the same measures; in
    float32, squared norms of features beyond about 1e19 (or below 1e-19)
    overflow (underflow) unless the features are scaled.

    The classic measures (and the centred class pairing) are also
    translation-invariant, so statistics of shifted features (`shift`) give
    the same measures, and far more accurate ones when the features share a
    common part much larger than their spread (ReLU features do: all
    positive). The second moment and the squared norms of raw features carry
    that common part, and the within-class scatter is what remains after
    subtracting it: a relative rounding error `eps` of the raw sums becomes
    `eps * (offset / spread)**2` in NC1 and CDNV. With a shift near the
    features' mean (the first batch's mean, as `keras_nc.metrics.ClassStatistics`
    uses) the error is `eps` times the ratio of the class means' spread to the
    within-class spread instead (see the Performance page, "Precision of the
    class statistics"). Sums are mergeable only when taken with one `shift`.

    Args:
        features: `(n, d)` features.
        labels: `(n,)` integer labels in `[0, num_classes)` (or `(n, 1)`, or
            one-hot `(n, num_classes)`).
        num_classes: number of classes `C`.
        sample_weight: optional `(n,)` non-negative weights (default 1).
        second_moment: also return the `(d, d)` second moment (only NC1 needs
            it; it costs `n d^2`).
        exponent: `None` (statistics of the features as they are), a number
            or scalar tensor `e` (statistics of `features * 2**-e`), or
            `"auto"`: `e = scale_exponent(features)`, returned as the dict's
            `"exponent"`.
        shift: optional `(d,)` vector `p`: statistics of `features - p`
            (before the scaling by `2**-e`, which then applies to the shifted
            features).

    Returns:
        A dict of tensors: `counts` `(C,)`, `sums` `(C, d)`, `sq_norms` `(C,)`
        (per-class sums of `||z||^2`) and, when asked, `second_moment` `(d, d)`
        (sum of `z z^T` over all samples); with `exponent="auto"` also
        `exponent`. An empty batch gives zeros. Labels
        outside `[0, C)` raise in eager calls and make every statistic NaN
        inside compiled functions.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> stats = nc_ops.class_statistics(np.eye(4), np.array([0, 0, 1, 2]), 3)
    >>> stats["counts"]  # doctest: +SKIP
    [2., 1., 1.]
    """
    batch = labelled_batch(features, labels, num_classes=num_classes, sample_weight=sample_weight)
    return class_statistics_of(batch, second_moment=second_moment, exponent=exponent, shift=shift)


def class_statistics_of(batch, second_moment=True, exponent=None, shift=None):
    """`class_statistics` of a `LabelledBatch` (see `keras_nc.ops.labelled_batch`).

    Args:
        batch: a `LabelledBatch`.
        second_moment: also return the `(d, d)` second moment.
        exponent: `None`, a number or scalar tensor `e`, or `"auto"` (see
            `class_statistics`).
        shift: optional `(d,)` vector subtracted from the features first.

    Returns:
        The dict `class_statistics` returns.
    """
    features, labels, num_classes = batch.features, batch.labels, batch.num_classes
    if shift is not None:
        features = features - ops.cast(shift, features.dtype)
    auto = isinstance(exponent, str)
    if auto:
        if exponent != "auto":
            raise ValueError(f'`exponent` must be None, a number or "auto"; received {exponent!r}.')
        exponent = scale_exponent(features)
    if exponent is not None:
        factor = ops.power(2.0, -ops.cast(exponent, "float32"))
        features = features * ops.cast(factor, features.dtype)
    if batch.sample_weight is None:
        weight = ops.ones((ops.shape(features)[0],), dtype=features.dtype)
    else:
        weight = ops.cast(batch.sample_weight, features.dtype)
    weighted = features * ops.expand_dims(weight, -1)
    # One scatter-add of [weight, ||z||^2 weight, z weight] (one kernel, not three;
    # cost n d, not the n C d of a one-hot matmul). `scatter_update(reduction="add")`
    # rather than `segment_sum`: 3x to 8x faster on eager PyTorch, same elsewhere.
    columns = ops.concatenate(
        [
            ops.expand_dims(weight, -1),
            ops.sum(weighted * features, axis=-1, keepdims=True),
            weighted,
        ],
        axis=-1,
    )
    per_class = scatter_update_add(  # Keras 3.12-3.13: segment_sum (compat.keras_versions)
        ops.zeros((num_classes, columns.shape[-1]), dtype=columns.dtype),
        ops.expand_dims(labels, -1),
        columns,
    )
    # Invalid input in a compiled step makes every statistic NaN (eager calls raise).
    per_class = nan_unless(batch.ok, per_class)
    stats = {"counts": per_class[:, 0], "sq_norms": per_class[:, 1], "sums": per_class[:, 2:]}
    if second_moment:
        stats["second_moment"] = nan_unless(batch.ok, matmul(ops.transpose(weighted), features))
    if auto:
        stats["exponent"] = exponent
    return stats


def class_means(counts, sums):
    """Class means `sums / counts` and the global mean; absent classes get a zero row.

    Args:
        counts: `(C,)` per-class sample counts (or weights).
        sums: `(C, d)` per-class feature sums.

    Returns:
        A tuple `(means, global_mean, present)`: `(C, d)`, `(d,)` and a `(C,)`
        boolean mask of the classes with a positive count. Non-finite
        statistics (from a compiled step that saw bad input) give NaN means.
    """
    checked = guard({"counts": as_float(counts), "sums": as_float(sums)}, strict=False)
    counts, sums, finite = checked.tensors["counts"], checked.tensors["sums"], checked.ok
    present = counts > 0
    safe = ops.where(present, counts, 1.0)
    means = sums / ops.expand_dims(safe, -1)
    means = ops.where(ops.expand_dims(present, -1), means, 0.0)
    total = ops.sum(counts)
    global_mean = ops.sum(sums, axis=0) / ops.where(total > 0, total, 1.0)
    return nan_unless(finite, means), nan_unless(finite, global_mean), present


def present_classes(statistics):
    """Accumulated statistics ready for the epoch measures, on the classes present.

    Non-finite content (a compiled step that saw bad input) is zeroed and
    flagged (`ok`), so no factorisation sees it and the measures return NaN;
    the arrays are cast to the widest float of the backend
    (`float64` where it has it). Called eagerly, only the rows of the classes
    present are kept (`C' x d` instead of `C x d`: a 10,000-class head seen
    for a few steps costs what its data costs, and no factorisation meets
    blocks of exactly repeated zeros); while traced (static shapes) every row is
    kept and the absent ones are masked.

    Args:
        statistics: a dict with `counts` `(C,)` and any of `sums` `(C, d)`,
            `sq_norms` `(C,)`, `head_weights` `(C, d)` (rows per class) and
            `second_moment` `(d, d)`.

    Returns:
        `(arrays, mask, ok)`: the dict with its per-class rows compacted, a
        float mask of the rows of present classes, and the finite flag.
    """
    checked = guard({name: as_float(value) for name, value in statistics.items()}, strict=False)
    dtype = statistics_dtype()
    arrays = {name: ops.cast(value, dtype) for name, value in checked.tensors.items()}
    counts = arrays["counts"]
    if not is_concrete(counts):
        return arrays, ops.cast(counts > 0, counts.dtype), checked.ok
    present = ops.convert_to_numpy(counts) > 0
    # At least two rows (absent ones, masked) so that every shape stays valid.
    padding = np.flatnonzero(~present)[: max(0, 2 - int(present.sum()))]
    rows = np.sort(np.concatenate([np.flatnonzero(present), padding]))
    arrays = {
        name: value if name == "second_moment" else ops.take(value, rows, axis=0)
        for name, value in arrays.items()
    }
    mask = ops.convert_to_tensor(present[rows].astype(dtype_name(counts)))
    return arrays, mask, checked.ok
