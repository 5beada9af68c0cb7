"""One batch's terms of accumulated class statistics, for one scatter-add per step.

The fused step update of `keras_nc.metrics.ClassStatistics`
(`class_sum_terms`), and the blocked second moment: its upper block
triangle (`moment_block_bounds`) and the symmetric matrix assembled from it
(`moment_from_block_rows`). Re-exported by `keras_nc.ops.statistics`.
"""

import itertools

from keras import ops

from keras_nc.ops._checks import dtype_name, features_tensor, label_indices, sample_weight_tensor
from keras_nc.ops._guards import guard, values_raise
from keras_nc.ops._spectral import largest, matmul, maximum


def class_sum_terms(
    features,
    labels,
    num_classes,
    shift,
    sample_weight=None,
    second_moment=True,
    dtype="float64",
    labels_name="labels",
    moment_blocks=None,
):
    """One batch's terms of accumulated class statistics, for one scatter-add.

    The fused step update of `keras_nc.metrics.ClassStatistics`: with
    `y = features - shift`, the rows `[w, w ||y||^2, w y]` `(n, d + 2)` whose
    sums over the rows of each class are the `counts`, `sq_norms` and `sums` of
    `class_statistics(..., shift=shift)`, and the `(d, d)` second moment
    `sum w y y^T`; adding `rows` into a `(C, d + 2)` state at `indices` costs
    `n d`, not the `C d` of a dense update. No value check raises unless
    called eagerly outside `keras_nc.ops.guards.invalid_values_as_nan`; there
    an invalid row (a label outside `[0, C)`, a fractional float label, a
    negative or NaN weight) gets a NaN count, so the accumulated statistics
    are non-finite and the measures read from them NaN, and non-finite
    features propagate as they are.

    **Blocked second moment.** The moment is symmetric: with `moment_blocks=k`
    the columns are split at `moment_block_bounds(d, k)` and only the upper
    block triangle is computed, as `k` products of the block rows (`(k + 1) /
    2k` of the full product's multiply-adds: 62.5% for `k = 4`), returned
    as float32 products of the scaled features; `moment_from_block_rows`
    assembles the symmetric matrix from them (or from their sums), exactly.

    Args:
        features: `(n, d)` features.
        labels: `(n,)` class indices (or `(n, 1)`, or one-hot `(n, C)`).
        num_classes: `C`.
        shift: `(d,)` vector subtracted from the features.
        sample_weight: optional `(n,)` non-negative weights.
        second_moment: also return the second moment.
        dtype: `"float64"`: rows in float64, in the features' units (the
            second moment is a float32 product of the scaled features, scaled
            back exactly); `"float32"`: rows and moment of `y * 2**-e`,
            `e = scale_exponent(y)`, which never overflow.
        labels_name: the name of `labels` in errors.
        moment_blocks: `None` (default): the full `second_moment`, in the
            units of the rows; an int `k`: its upper block triangle instead,
            as `moment_rows` (see above).

    Returns:
        A dict: `indices` `(n,)` int32 in `[0, C)`, `rows`, `exponent` (`e`,
        0 for `dtype="float64"`) and, when asked, either `second_moment` or
        `moment_rows` (a list of `k` float32 tensors, the `i`-th of shape
        `(s[i+1] - s[i], d - s[i])`, `s = moment_block_bounds(d, k)`: rows
        `s[i]` to `s[i+1]` of the moment from column `s[i]` on, float32
        products of the scaled features: in the units of the rows' squared
        norms once multiplied by `moment_scale`, a float64 power of two
        returned for `dtype="float64"`).
    """
    features = ops.stop_gradient(features_tensor(features))
    labels = label_indices(labels, num_classes, labels_name, num_samples=features.shape[0])
    weight = None
    if sample_weight is not None:
        weight = ops.cast(sample_weight_tensor(sample_weight, features.shape[0]), features.dtype)
    counts = _row_counts(features, labels, num_classes, weight, labels_name)
    y = features - ops.cast(shift, features.dtype)
    wide = dtype == "float64"
    # The scale 2**-e that keeps float32 squares in range. Float64 rows: e from
    # the largest squared row norm, which float64 holds (an entry is at most
    # its row's norm; n values, not n d), needed by the moment only; float32
    # rows: from the largest entry.
    if wide:
        terms = ops.cast(y, "float64")
        sq_norms = ops.sum(terms * terms, axis=-1)
        exponent = None
        if second_moment:  # e, an integer, in float64: 2**2e may be out of float32's range
            top = largest(sq_norms)
            top = maximum(top, ops.full_like(top, 2.0**-252))
            exponent = ops.cast(ops.ceil(0.5 * ops.log2(top)), "float64")
    else:
        top = ops.maximum(largest(ops.abs(y)), 2.0**-126)
        exponent = ops.ceil(ops.log2(ops.cast(top, "float32")))
        terms = y * ops.exp2(-exponent)
        sq_norms = ops.sum(terms * terms, axis=-1)
    scaled = terms  # float32: the scaled features, also the moment's
    if weight is not None:
        column = ops.cast(ops.expand_dims(weight, -1), dtype)
        terms, sq_norms = terms * column, sq_norms * ops.cast(weight, dtype)
    columns = [ops.expand_dims(ops.cast(counts, dtype), -1), ops.expand_dims(sq_norms, -1),
               terms]  # fmt: skip
    result = {"indices": ops.cast(ops.clip(labels, 0, num_classes - 1), "int32")}
    result["rows"] = ops.concatenate(columns, axis=-1)
    if second_moment:
        if wide:
            scaled = y * ops.cast(_exp2(-exponent), y.dtype)
        right = scaled if weight is None else scaled * ops.expand_dims(weight, -1)
        # Float64 rows: the float32 moment of y 2**-e, times 2**2e (exact, a power
        # of two, in range in float64), is in the features' units.
        scale = _exp2(2.0 * exponent) if wide else None
        if moment_blocks is None:
            moment = matmul(ops.transpose(scaled), right)
            if wide:
                moment = ops.cast(moment, "float64") * scale
            result["second_moment"] = moment
        else:
            bounds = moment_block_bounds(int(features.shape[-1]), moment_blocks)
            left = ops.transpose(scaled)
            result["moment_rows"] = [
                matmul(left[start:stop], right[:, start:])
                for start, stop in itertools.pairwise(bounds)
            ]
            if wide:
                result["moment_scale"] = scale
    result["exponent"] = ops.zeros((), "float32") if wide else exponent
    return result


def _exp2(x):
    """`2 ** x` in the dtype of `x` (float64 stays float64 on every backend)."""
    return ops.power(ops.full_like(x, 2.0), x)


def moment_block_bounds(d, blocks):
    """The column bounds `[0, s_1, ..., d]` of a `(d, d)` moment split in `blocks` blocks.

    Blocks of `d / blocks` columns (rounded), at most `d` of them.

    Args:
        d: the width of the features.
        blocks: the number of blocks `k` (at least 1).

    Returns:
        A list of `k + 1` increasing ints from 0 to `d`.
    """
    blocks = max(1, min(int(blocks), int(d)))
    return [(i * int(d)) // blocks for i in range(blocks + 1)]


def moment_from_block_rows(rows):
    """The symmetric `(d, d)` matrix whose upper block triangle `rows` hold.

    The inverse of the blocked moment of `class_sum_terms`: `rows[i]` holds
    rows `s[i]` to `s[i+1]` from column `s[i]` on; the blocks below the
    diagonal are the transposes of those above it. No arithmetic: exact.

    Args:
        rows: a list of `k` tensors, the `i`-th of shape `(s[i+1] - s[i], d - s[i])`.

    Returns:
        The `(d, d)` tensor.
    """
    if len(rows) == 1:
        return rows[0]
    d = int(rows[0].shape[-1])
    starts = [d - int(row.shape[-1]) for row in rows] + [d]
    bands = []
    for i, row in enumerate(rows):
        below = [
            ops.transpose(rows[j][:, starts[i] - starts[j] : starts[i + 1] - starts[j]])
            for j in range(i)
        ]
        bands.append(ops.concatenate([*below, row], axis=-1) if below else row)
    return ops.concatenate(bands, axis=0)


def _row_counts(features, labels, num_classes, weight, labels_name):
    """The count column: the weights (or ones); NaN on invalid rows outside eager checks."""
    if values_raise(features):
        tensors = {"features": features}
        if weight is not None:
            tensors["sample_weight"] = weight
        guard(tensors, labels, num_classes, labels_name, nonnegative=("sample_weight",))
        return weight if weight is not None else ops.ones_like(features[:, 0])
    valid = (labels >= 0) & (labels < num_classes)
    if "float" in dtype_name(labels):
        valid = valid & (ops.floor(labels) == labels)
    if weight is None:
        return ops.where(valid, ops.cast(1.0, features.dtype), float("nan"))
    return ops.where(valid & (weight >= 0), weight, float("nan"))
