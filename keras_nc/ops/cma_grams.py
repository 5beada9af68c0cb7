"""The CMA entropy's layouts that normalise the rows on the groups' Grams.

`K_ij = G_ij s_i s_j` with `s_i` the inverse row norm (with `normalize_rows`'
floor, times the root of the sample weight): the `n x d` features are read
by one gather and no pass more. Two layouts (see `keras_nc.ops.cma`):

- `eager_entropy` (concrete labels, PyTorch and TensorFlow): each group's
  Gram at its own size, groups of similar sizes in runs sharing one product
  and one `eigh` (`keras_nc.ops.cma_plan.eager_runs`);
- `per_group_entropy` (JAX under `jit`, few classes): a loop over the
  groups, each padded to the smallest of a few static sizes that holds it.
"""

import numpy as np
from keras import ops

from keras_nc.ops._spectral import (
    eigenvalues_only,
    entropy_from_spectrum,
    matmul,
    maximum,
    needs_gradient,
    outer_gram,
)
from keras_nc.ops.cma_layouts import class_slots, group_entropies, normalised_mean
from keras_nc.ops.cma_plan import eager_runs

# Largest squared row norm for which the raw rows' Grams are computed without
# the scaling of `normalize_rows`: no product overflows, and the round-off of
# underflowing products (at most d * 2**-149 per entry) is below 1e-10 of the
# smallest norm that is not floored. Outside it the normalised rows are used.
SAFE_SQUARED_NORM = (2.0**-60, 2.0**60)


def eager_groups(labels, sample_weight, num_classes):
    """NumPy: the member rows of each class present, the largest groups first.

    Ties are broken by class index, as `class_slots` does.
    """
    labels = np.asarray(ops.convert_to_numpy(labels)).astype("int64").reshape(-1)
    if sample_weight is None:
        rows = np.arange(labels.shape[0], dtype="int32")
    else:
        rows = np.flatnonzero(np.asarray(ops.convert_to_numpy(sample_weight)) > 0).astype("int32")
    counts = np.bincount(labels[rows], minlength=num_classes)
    classes = np.flatnonzero(counts)
    classes = classes[np.argsort(-counts[classes], kind="stable")]
    by_class = rows[np.argsort(labels[rows], kind="stable")]
    starts = np.cumsum(counts) - counts
    members = [by_class[starts[c] : starts[c] + counts[c]] for c in classes]
    return classes, members


def _member_index(members, size):
    """NumPy `(index, valid)` `(k, size - 1)`: each group's member rows, padded with row 0."""
    index = np.zeros((len(members), size - 1), "int32")
    valid = np.zeros((len(members), size - 1), bool)
    for j, rows in enumerate(members):
        index[j, : len(rows)] = rows
        valid[j, : len(rows)] = True
    return index, valid


def _raw_grams(features, anchors, index):
    """Raw Grams `(k, s, s)`: each group's anchor `(k, d)`, then its rows `index` `(k, s - 1)`."""
    rows = ops.take(features, ops.convert_to_tensor(index), axis=0)  # (k, s - 1, d)
    inner = outer_gram(rows)
    # (k, 1, d) x (k, d, s - 1): PyTorch's bmm with one column is many times slower.
    cross = matmul(ops.expand_dims(anchors, 1), ops.swapaxes(rows, -1, -2))
    own = ops.sum(ops.square(anchors), axis=-1)[:, None, None]  # (k, 1, 1)
    top = ops.concatenate([own, cross], axis=-1)
    bottom = ops.concatenate([ops.swapaxes(cross, -1, -2), inner], axis=-1)
    return ops.concatenate([top, bottom], axis=-2)


def _padded_to(x, size, axes):
    """`x` zero-padded at the end of `axes` to `size` (`ops.pad` costs more per call)."""
    for axis in axes:
        shape = list(x.shape)
        if shape[axis] < size:
            shape[axis] = size - shape[axis]
            x = ops.concatenate([x, ops.zeros(shape, dtype=x.dtype)], axis=axis)
    return x


def _stacked_grams(features, anchors, members, runs, size):
    """Raw Grams of all groups `(P, size, size)`, computed run by run, zero-padded."""
    alone = [start for start, stop, _ in runs if stop - start == 1]
    if alone:  # their members in one gather, a group's rows contiguous
        rows = ops.take(features, ops.convert_to_tensor(np.concatenate(members)), axis=0)
        offsets = np.cumsum([0] + [len(r) for r in members]).tolist()
    grams = []
    for start, stop, run_size in runs:
        if stop - start == 1:  # one group: its anchor and rows, one product
            own = rows[offsets[start] : offsets[stop]]
            gram = outer_gram(ops.concatenate([anchors[start:stop], own], axis=0))[None]
        else:
            index, _ = _member_index(members[start:stop], run_size)
            gram = _raw_grams(features, anchors[start:stop], index)
        grams.append(_padded_to(gram, size, (-2, -1)))
    return ops.concatenate(grams, axis=0) if len(grams) > 1 else grams[0]


def _row_scales(batch, dtype):
    """`sqrt(w_i / mean positive w)` of each row (None without weights), no gradient."""
    if batch.sample_weight is None:
        return None
    weight = ops.stop_gradient(ops.cast(batch.sample_weight, dtype))
    active = ops.cast(weight > 0, dtype)
    num_active = ops.sum(active)
    mean = ops.sum(weight) / ops.where(num_active > 0, num_active, 1.0)
    return ops.sqrt(weight / ops.where(mean > 0, mean, 1.0))


def _run_entropies(matrices, trace, runs):
    """Entropies of the stacked groups, one `eigh` per run on its own size."""
    if needs_gradient(matrices):
        parts = [
            group_entropies(matrices[start:stop, :size, :size], trace[start:stop])
            for start, stop, size in runs
        ]
        return ops.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    width = matrices.shape[-1]
    parts = []
    for start, stop, size in runs:
        values = eigenvalues_only(matrices[start:stop, :size, :size])
        parts.append(_padded_to(values, width, (-1,)))
    spectrum = ops.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    return entropy_from_spectrum(spectrum, trace, 1.0)


def eager_entropy(batch, eps, classes, members):
    """Eager: each group's Gram from the raw rows, no padding wasted on the wide side.

    The rows are normalised on the Grams (`K_ij = G_ij s_i s_j`, `s_i` the
    inverse row norm with `normalize_rows`' floor, times the root of the
    weight): no pass over the `n x d` features besides one gather. Groups of
    similar sizes share one Gram product and one `eigh` (`eager_runs`).
    `classes`, `members`: from `eager_groups`. Returns None where a squared
    row norm leaves `SAFE_SQUARED_NORM` (the normalised rows are used then).
    """
    features, anchors = batch.features, batch.head
    dtype = features.dtype
    if not members:
        return ops.zeros((), dtype=dtype)
    sizes = [len(rows) + 1 for rows in members]
    size = sizes[0]
    runs = eager_runs(sizes, features.shape[1])
    slot_anchors = ops.take(anchors, ops.convert_to_tensor(classes.astype("int32")), axis=0)
    gram = _stacked_grams(features, slot_anchors, members, runs, size)
    diagonal = ops.diagonal(gram, axis1=-2, axis2=-1)  # (P, size)
    index, valid = _member_index(members, size)
    valid = ops.convert_to_tensor(valid)
    norms = ops.where(valid, diagonal[:, 1:], 0.0)
    top = ops.stop_gradient(ops.amax(norms))
    top_anchor = ops.stop_gradient(ops.amax(ops.sum(ops.square(anchors), axis=-1)))
    low, high = SAFE_SQUARED_NORM
    if not all(low <= float(t) <= high for t in (top, top_anchor)):
        return None
    scale = ops.where(valid, ops.rsqrt(maximum(norms, eps * eps * top)), 0.0)
    weight = _row_scales(batch, dtype)
    if weight is not None:
        scale = scale * ops.take(weight, ops.convert_to_tensor(index), axis=0)
    own = ops.rsqrt(maximum(diagonal[:, :1], eps * eps * top_anchor))
    scale = ops.concatenate([own, scale], axis=-1)
    matrices = gram * ops.expand_dims(scale, -1) * ops.expand_dims(scale, -2)
    trace = ops.sum(diagonal * ops.square(scale), axis=-1)
    counts = ops.convert_to_tensor(np.asarray(sizes, "float64") - 1.0, dtype=dtype)
    return normalised_mean(_run_entropies(matrices, trace, runs), counts)


def _unit_scale(x, rows=None):
    """`(1 / max |x|, top)`: the rows of `x` times the first have entries at most 1.

    `top` is their largest squared norm over `rows` (a mask; 1 if all are
    zero), without gradient: `normalize_rows`' floor is `eps^2 top`.
    """
    scale = ops.stop_gradient(ops.amax(ops.abs(x)))
    inverse = 1.0 / ops.where(scale > 0, scale, 1.0)
    squares = ops.sum(ops.square(x * inverse), axis=-1)
    if rows is not None:
        squares = ops.where(rows, squares, 0.0)
    top = ops.stop_gradient(ops.amax(squares))
    return inverse, ops.where(top > 0, top, 1.0)


def per_group_entropy(batch, eps, member, counts, sizes):
    """JAX under `jit`: each group padded to its own static size, one group at a time.

    A loop over the slots (`keras.ops.map`, as the batched `eigh` runs on JAX
    anyway) takes for each group the smallest of `sizes` that holds it
    (`keras.ops.switch`: one branch runs), else `n + 1` rows (or its `d x d`
    side): a group's `eigh` is about its own size, not the largest group's.
    Each group's rows are gathered from the features once, scaled by the
    batch's largest entry, and normalised on their Gram (as `eager_entropy`).
    """
    features, anchors, labels = batch.features, batch.head, batch.labels
    n, d = features.shape
    num_classes = counts.shape[0]
    dtype = features.dtype
    slot_class, slot_count = class_slots(counts, min(num_classes, n))
    in_group = ops.sum(member, axis=1) > 0
    inverse, top = _unit_scale(features, in_group)
    inverse_anchor, top_anchor = _unit_scale(anchors)
    weight = _row_scales(batch, dtype)
    order = ops.argsort(ops.where(in_group, ops.cast(labels, "int32"), num_classes))
    int_counts = ops.cast(counts, "int32")
    start = ops.take(ops.cumsum(int_counts) - int_counts, slot_class)
    count = ops.cast(slot_count, "int32")
    sizes = (*sizes, n + 1)
    limits = ops.convert_to_tensor(sizes[:-1])
    branch = ops.sum(ops.cast(ops.expand_dims(count + 1, -1) > limits, "int32"), axis=-1)
    slot_anchors = ops.take(anchors, slot_class, axis=0) * inverse_anchor

    def entropy_of(size):
        def fn(first, members, anchor):
            offset = ops.arange(size - 1, dtype="int32")
            index = ops.take(order, ops.clip(first + offset, 0, n - 1))
            kept = ops.cast(offset < members, dtype)
            rows = ops.take(features, index, axis=0) * ops.expand_dims(kept * inverse, -1)
            group = ops.concatenate([ops.expand_dims(anchor, 0), rows], axis=0)
            squares = ops.sum(ops.square(group), axis=-1)
            scale = ops.rsqrt(maximum(squares, eps * eps * top)) * ops.concatenate(
                [ops.zeros((1,), dtype), kept], axis=0
            )
            if weight is not None:
                scale = scale * ops.concatenate([ops.ones((1,), dtype), ops.take(weight, index)], 0)
            own = ops.rsqrt(maximum(squares[:1], eps * eps * top_anchor))
            scale = ops.concatenate([own, scale[1:]], axis=0)
            trace = ops.sum(squares * ops.square(scale))[None]
            if size <= d:
                matrices = outer_gram(group) * ops.expand_dims(scale, -1) * scale
            else:
                scaled = group * ops.expand_dims(scale, -1)
                matrices = matmul(ops.transpose(scaled), scaled)
            return group_entropies(matrices[None], trace)[0]

        return fn

    branches = [entropy_of(size) for size in sizes]

    def one(slot):
        return ops.switch(slot[0], branches, slot[1], slot[2], slot[3])

    entropy = ops.map(one, (branch, start, count, slot_anchors))
    return normalised_mean(entropy, slot_count)
