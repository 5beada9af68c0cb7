"""The Cross-Modal Alignment entropy, with the layout of its class groups picked by shape.

The value is the mean over the classes present of the normalised entropy of
each class group (the class's features and its anchor). Three exact layouts
compute the groups' spectra; `cma_entropy_of(layout="auto")` picks one from
the static shapes (and, where only the data can tell, the size of the largest
group, through `keras.ops.switch` under compilation):

- `"block"`: the groups as the diagonal blocks of one `(n + P) x (n + P)`
  matrix, `P = min(C, n)` slots (one `eigh` with eigenvectors, which attribute
  each eigenvalue to its group). Its cost does not depend on how the samples
  fall into classes: the layout for many classes (`P` close to `n`).
- `"padded"`: each group's Gram in its own `s x s` matrix, `s` a static size
  at least the largest group (zero rows pad the smaller ones; zero rows add
  eigenvalues 0, which count as `0 log 0 = 0`), in one batched `eigh` of
  `(P, s, s)`. Valid only when every group fits, hence a few candidate sizes
  chosen by the data at run time, the other layouts as the fallback.
- `"width"`: each group from its `d x d` side `G_c^T G_c` (same non-zero
  spectrum), `(P, d, d)`: for few classes with more members than `d`.

Two more, which `"auto"` takes for groups narrower than `d`, normalise the
rows on the groups' Grams (`K_ij = G_ij s_i s_j`, `s_i` the inverse row
norm), so the `n x d` features are read by one gather and no pass more:

- eagerly (concrete labels, PyTorch and TensorFlow): each group's Gram at its
  own size, groups of similar sizes in runs sharing one product and one
  `eigh` where padding them costs less than separate calls (`eager_runs`);
- under JAX's `jit` with few classes (`PER_GROUP_SLOTS`): a loop over the
  groups, each padded to the smallest of a few static sizes that holds it
  (`group_sizes`; one `keras.ops.switch` per group), not to the largest group.

Gradients flow through each eigenvalue as the Rayleigh quotient of its
eigenvector (no eigenvector derivative), exact also for repeated eigenvalues.
"""

import functools
import math

import numpy as np
from keras import ops

from keras_nc import compat
from keras_nc.ops._guards import is_concrete, labelled_batch, nan_unless
from keras_nc.ops._spectral import (
    eigenvalues_only,
    eigh_batch,
    entropy_from_spectrum,
    kept_probabilities,
    matmul,
    maximum,
    needs_gradient,
    normalize_rows,
    outer_gram,
)

LAYOUTS = ("auto", "block", "padded", "width")


# --------------------------------------------------------------------------- #
# Groups
# --------------------------------------------------------------------------- #


def _groups(batch, eps):
    """Normalised (weighted) sample rows, anchors, membership and group sizes.

    Returns `(zhat, what, member, counts)`: `zhat` `(n, d)` rows scaled by
    `sqrt(w_i / mean positive w)` (zero for weight 0), `what` `(C, d)`,
    `member` `(n, C)` 0/1 (rows of weight 0 belong to no group), `counts`
    `(C,)` the members of each group besides its anchor.
    """
    features, labels, num_classes = batch.features, batch.labels, batch.num_classes
    weight = batch.sample_weight
    member = ops.one_hot(labels, num_classes, dtype=features.dtype)
    if weight is None:
        zhat = normalize_rows(features, eps)
    else:
        weight = ops.stop_gradient(ops.cast(weight, features.dtype))
        active = weight > 0
        num_active = ops.sum(ops.cast(active, features.dtype))
        mean = ops.sum(weight) / ops.where(num_active > 0, num_active, 1.0)
        relative = weight / ops.where(mean > 0, mean, 1.0)
        rows = ops.where(ops.expand_dims(active, -1), features, 0.0)
        zhat = normalize_rows(rows, eps) * ops.expand_dims(ops.sqrt(relative), -1)
        member = member * ops.expand_dims(ops.cast(active, features.dtype), -1)
    return zhat, normalize_rows(batch.head, eps), member, ops.sum(member, axis=0)


def _class_slots(counts, slots):
    """The classes present, packed into `slots` (static count), largest groups first.

    Returns `(slot_class, slot_count)`; slots beyond the classes present get
    classes with count 0.
    """
    num_classes = counts.shape[0]
    dtype = counts.dtype
    # Ties broken by class index (a strict order: top_k needs no stable sort).
    order = counts - ops.arange(num_classes, dtype=dtype) / (2.0 * num_classes)
    _, slot_class = ops.top_k(order, k=slots)
    return slot_class, ops.take(counts, slot_class)


def _normalised_mean(entropy, slot_count):
    """Mean over the present groups of `entropy / log(m)`, `m = count + 1`."""
    valid = ops.cast(slot_count > 0, entropy.dtype)
    log_m = ops.log(ops.where(slot_count >= 1.0, slot_count + 1.0, 2.0))
    num_valid = ops.sum(valid)
    return ops.sum(entropy / log_m * valid) / ops.where(num_valid > 0, num_valid, 1.0)


def _surrogate_entropy(eigenvalues, eigenvectors, matrices, trace):
    """Von Neumann entropy of each matrix `(k, m, m)`, gradients by Rayleigh quotients.

    `eigenvalues`/`eigenvectors` carry no gradient; the eigenvalue `l_j`'s
    gradient is that of `v_j^T A v_j` (exact, also for repeated eigenvalues:
    the slope `-(log p + 1) / tr` is the same within an eigenspace).
    """
    trace_safe = ops.where(trace > 0, trace, 1.0)
    _, keep, p_safe = kept_probabilities(eigenvalues, ops.expand_dims(trace_safe, -1), 1.0)
    log_p = ops.log(p_safe)
    value = ops.sum(ops.where(keep, -p_safe * log_p, 0.0), axis=-1)
    slope = ops.where(keep, -(log_p + 1.0) / ops.expand_dims(trace_safe, -1), 0.0)
    quotient = ops.sum(eigenvectors * matmul(matrices, eigenvectors), axis=-2)
    surrogate = ops.stop_gradient(slope) * (quotient - ops.stop_gradient(quotient))
    return ops.where(trace > 0, value, 0.0) + ops.sum(surrogate, axis=-1)


def _entropies(matrices, trace):
    """Entropies of a batch of PSD matrices `(k, m, m)` with the given traces `(k,)`.

    Without a gradient to take (eager PyTorch under `no_grad` or on inputs
    that do not require one) the eigenvectors are not computed.
    """
    if not needs_gradient(matrices):
        return entropy_from_spectrum(eigenvalues_only(matrices), trace, 1.0)
    eigenvalues, eigenvectors = eigh_batch(ops.stop_gradient(matrices))
    return _surrogate_entropy(eigenvalues, eigenvectors, matrices, trace)


# --------------------------------------------------------------------------- #
# Layouts
# --------------------------------------------------------------------------- #


def _block(zhat, what, member, counts):
    """One `eigh` of the block-diagonal matrix of all groups (`P = min(C, n)` slots)."""
    n = zhat.shape[0]
    slots = counts.shape[0] if n is None else min(counts.shape[0], n)
    slot_class, slot_count = _class_slots(counts, slots)
    dtype = zhat.dtype
    rows = ops.concatenate([zhat, ops.take(what, slot_class, axis=0)], axis=0)
    sample_blocks = ops.take(member, slot_class, axis=1)  # (n, P)
    blocks = ops.concatenate([sample_blocks, ops.eye(slots, dtype=dtype)], axis=0)
    matrix = outer_gram(rows) * outer_gram(blocks)
    eigenvalues, eigenvectors = ops.eigh(ops.stop_gradient(matrix))
    # share[k, p]: the part of eigenvector k in block p (0 or 1 unless groups
    # share the eigenvalue); quotient[k, p]: its Rayleigh quotient on block p.
    share = matmul(ops.transpose(ops.square(eigenvectors)), blocks)  # (n+P, P)
    quotient = matmul(ops.transpose(eigenvectors * matmul(matrix, eigenvectors)), blocks)
    trace = matmul(ops.expand_dims(ops.diagonal(matrix), 0), blocks)[0]  # (P,)
    trace_safe = ops.where(trace > 0, trace, 1.0)
    _, keep, p_safe = kept_probabilities(
        ops.expand_dims(eigenvalues, -1), trace_safe, alpha=1.0, share=share
    )
    log_p = ops.log(p_safe)
    value = ops.where(keep, -share * p_safe * log_p, 0.0)
    slope = ops.stop_gradient(ops.where(keep, -(log_p + 1.0) / trace_safe, 0.0))
    surrogate = slope * (quotient - ops.stop_gradient(quotient))
    entropy = ops.where(trace > 0, ops.sum(value + surrogate, axis=0), 0.0)
    return _normalised_mean(entropy, slot_count)


def _padded_rows(zhat, what, labels, member, counts, size, slot_class=None):
    """`(P, size, d)`: each slot's members (zero-padded to `size - 1`) and its anchor.

    `slot_class` optionally names the slots' classes (default: the `min(C, n)`
    classes with the most members, largest first).
    """
    n = zhat.shape[0]
    num_classes = counts.shape[0]
    if slot_class is None:
        slot_class, slot_count = _class_slots(counts, min(num_classes, n))
    else:
        slot_count = ops.take(counts, slot_class)
    # Rows sorted by group (rows of no group last); a group's members are then
    # contiguous from its start, the sum of the counts of the groups before it.
    in_group = ops.sum(member, axis=1) > 0
    key = ops.where(in_group, ops.cast(labels, "int32"), num_classes)
    order = ops.argsort(key)
    int_counts = ops.cast(counts, "int32")
    starts = ops.cumsum(int_counts) - int_counts
    offset = ops.arange(size - 1, dtype="int32")  # (s - 1,)
    start = ops.expand_dims(ops.take(starts, slot_class), -1)
    position = ops.clip(start + ops.expand_dims(offset, 0), 0, n - 1)  # (P, s - 1)
    valid = ops.expand_dims(offset, 0) < ops.expand_dims(ops.cast(slot_count, "int32"), -1)
    rows = ops.take(zhat, ops.take(order, position), axis=0)  # (P, s - 1, d)
    rows = rows * ops.expand_dims(ops.cast(valid, zhat.dtype), -1)
    anchors = ops.expand_dims(ops.take(what, slot_class, axis=0), 1)
    return ops.concatenate([rows, anchors], axis=1), slot_count


def _padded_entropies(zhat, what, labels, member, counts, size, slot_class=None):
    """Entropies of the slots' groups padded to `size` rows, and the slots' counts."""
    group, slot_count = _padded_rows(zhat, what, labels, member, counts, size, slot_class)
    trace = ops.sum(ops.square(group), axis=(-2, -1))
    if size <= zhat.shape[1]:
        matrices = outer_gram(group)
    else:
        matrices = matmul(ops.swapaxes(group, -1, -2), group)
    return _entropies(matrices, trace), slot_count


def _padded(zhat, what, labels, member, counts, size):
    """Each group in its own `size x size` Gram (or `d x d` side), one batched `eigh`."""
    return _normalised_mean(*_padded_entropies(zhat, what, labels, member, counts, size))


def tiers(sizes, ratio=0.9, small=16):
    """Consecutive runs of `sizes` (descending) padded together: `[(start, stop, size)]`.

    A run ends where a group is smaller than `ratio` times the run's largest
    (padding wastes at most `1 / ratio**3` of a run's `eigh` work); groups of
    at most `small` rows share one run (their cost is the calls', not the
    arithmetic).
    """
    runs, start = [], 0
    for i, size in enumerate(sizes):
        if size < ratio * sizes[start] and sizes[start] > small:
            runs.append((start, i, sizes[start]))
            start = i
    if sizes:
        runs.append((start, len(sizes), sizes[start]))
    return runs


def _tiered(zhat, what, labels, member, counts):
    """Eager only: the present groups sorted by size, padded within `tiers`, one `eigh` each."""
    n, num_classes = zhat.shape[0], counts.shape[0]
    slot_class, slot_count = _class_slots(counts, min(num_classes, n))
    sizes = [int(c) + 1 for c in ops.convert_to_numpy(slot_count) if c > 0]
    entropies = [
        _padded_entropies(zhat, what, labels, member, counts, size, slot_class[start:stop])[0]
        for start, stop, size in tiers(sizes)
    ]
    present = len(sizes)
    entropy = ops.concatenate(entropies, axis=0) if present else ops.zeros((0,), zhat.dtype)
    return _normalised_mean(entropy, slot_count[:present])


def _width(zhat, what, member, counts):
    """Each group from its `d x d` side `sum_i zhat_i zhat_i^T + a a^T` (any group sizes)."""
    n = zhat.shape[0]
    slots = min(counts.shape[0], n)
    slot_class, slot_count = _class_slots(counts, slots)
    slot_member = ops.transpose(ops.take(member, slot_class, axis=1))  # (P, n)
    weighted = ops.expand_dims(ops.transpose(zhat), 0) * ops.expand_dims(slot_member, 1)
    anchors = ops.take(what, slot_class, axis=0)  # (P, d)
    matrices = matmul(weighted, zhat) + ops.expand_dims(anchors, -1) * ops.expand_dims(anchors, 1)
    trace = matmul(slot_member, ops.expand_dims(ops.sum(ops.square(zhat), axis=-1), -1))[:, 0]
    trace = trace + ops.sum(ops.square(anchors), axis=-1)
    return _normalised_mean(_entropies(matrices, trace), slot_count)


# --------------------------------------------------------------------------- #
# Eager layout: the groups' Grams from the raw rows
# --------------------------------------------------------------------------- #

# Largest squared row norm for which the raw rows' Grams are computed without
# the scaling of `normalize_rows`: no product overflows, and the round-off of
# underflowing products (at most d * 2**-149 per entry) is below 1e-10 of the
# smallest norm that is not floored. Outside it the normalised rows are used.
SAFE_SQUARED_NORM = (2.0**-60, 2.0**60)
# What running one group's own Gram calls (about eight eager ops) costs, in
# multiply-adds: a group is computed alone when padding it wastes more.
GROUP_OVERHEAD = 2e6


def _eager_groups(labels, sample_weight, num_classes):
    """NumPy: the member rows of each class present, the largest groups first.

    Ties are broken by class index, as `_class_slots` does.
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


def eager_runs(sizes, d):
    """The eager layout's runs: `tiers`, a run split into single groups where padding wastes more.

    Padding a run to its largest group wastes `(s^2 - m^2) d` multiply-adds of
    each group's Gram and `9 (s^3 - m^3)` of its `eigh`; a group alone costs
    `GROUP_OVERHEAD` in calls.

    Args:
        sizes: the groups' sizes (anchor included), descending.
        d: feature width.

    Returns:
        A list of `(start, stop, size)`: one Gram product and one `eigh` each.
    """
    runs = []
    for start, stop, size in tiers(sizes):
        own = sizes[start:stop]
        padded = len(own) * (size * size * d + EIGH_FLOPS * size**3)
        alone = sum(m * m * d + EIGH_FLOPS * m**3 + GROUP_OVERHEAD for m in own)
        if padded <= alone:
            runs.append((start, stop, size))
        else:
            runs.extend((j, j + 1, sizes[j]) for j in range(start, stop))
    return runs


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
            _entropies(matrices[start:stop, :size, :size], trace[start:stop])
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


def _eager(batch, eps, classes, members):
    """Eager: each group's Gram from the raw rows, no padding wasted on the wide side.

    The rows are normalised on the Grams (`K_ij = G_ij s_i s_j`, `s_i` the
    inverse row norm with `normalize_rows`' floor, times the root of the
    weight): no pass over the `n x d` features besides one gather. Groups of
    similar sizes share one Gram product and one `eigh` (`eager_runs`).
    `classes`, `members`: from `_eager_groups`. Returns None where a squared
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
    return _normalised_mean(_run_entropies(matrices, trace, runs), counts)


def group_sizes(sizes):
    """The per-group layout's static sizes: `sizes` and up to three below the first.

    Args:
        sizes: the candidate padded sizes of `plan` (ascending).

    Returns:
        A tuple of ascending sizes: `sizes[0] / 1.1**k` (k = 3, 2, 1, rounded
        up, at least 2) then `sizes`.
    """
    below = {max(2, math.ceil(sizes[0] / 1.1**k)) for k in (3, 2, 1)}
    return tuple(sorted(below - set(sizes))) + tuple(sizes)


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


def _per_group(batch, eps, member, counts, sizes):
    """JAX under `jit`: each group padded to its own static size, one group at a time.

    A loop over the slots (`keras.ops.map`, as the batched `eigh` runs on JAX
    anyway) takes for each group the smallest of `sizes` that holds it
    (`keras.ops.switch`: one branch runs), else `n + 1` rows (or its `d x d`
    side): a group's `eigh` is about its own size, not the largest group's.
    Each group's rows are gathered from the features once, scaled by the
    batch's largest entry, and normalised on their Gram (as `_eager`).
    """
    features, anchors, labels = batch.features, batch.head, batch.labels
    n, d = features.shape
    num_classes = counts.shape[0]
    dtype = features.dtype
    slot_class, slot_count = _class_slots(counts, min(num_classes, n))
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
            return _entropies(matrices[None], trace)[0]

        return fn

    branches = [entropy_of(size) for size in sizes]

    def one(slot):
        return ops.switch(slot[0], branches, slot[1], slot[2], slot[3])

    entropy = ops.map(one, (branch, start, count, slot_anchors))
    return _normalised_mean(entropy, slot_count)


# --------------------------------------------------------------------------- #
# Dispatcher
# --------------------------------------------------------------------------- #

# Cost model of an `eigh` with eigenvectors of a batch of k matrices of size m,
# in units of one multiply-add: LAPACK's divide and conquer takes about 9 m^3
# of them; each matrix of a batch and each kernel call cost a fixed overhead
# (dispatch, workspace), measured as that of m of about 12 and 40 on 2 cores.
EIGH_FLOPS = 9.0
MATRIX_OVERHEAD = 9.0 * 12.0**3
CALL_OVERHEAD = 9.0 * 40.0**3
MAX_CANDIDATES = 7
# JAX: with at most this many slots each group is padded to its own size.
PER_GROUP_SLOTS = 32


def _eigh_cost(k, m):
    return k * (EIGH_FLOPS * m**3 + MATRIX_OVERHEAD) + CALL_OVERHEAD


def layout_costs(n, num_classes, d):
    """Modelled costs of the layouts that fit any labels: `{"block": ..., "width": ...}`.

    Args:
        n: number of samples (static).
        num_classes: number of classes `C`.
        d: feature width.

    Returns:
        A dict of relative costs (multiply-adds of the model above).
    """
    slots = min(num_classes, n)
    size = n + slots
    return {
        # eigh, the (n+P) x (n+P) x d Gram, two (n+P)^2 x (n+P) products.
        "block": _eigh_cost(1, size) + size**2 * d + 2 * size**3,
        # eigh of P d x d, the P x d x n x d Grams.
        "width": _eigh_cost(slots, d) + slots * n * d * d,
    }


def padded_cost(n, num_classes, d, size):
    """Modelled cost of the padded layout with groups of `size` rows (anchor included)."""
    slots = min(num_classes, n)
    side = min(size, d)
    gram = slots * size * size * d if size <= d else slots * size * d * d
    return _eigh_cost(slots, side) + gram + 2 * slots * side**3 + n * math.log2(max(n, 2))


def plan(n, num_classes, d):
    """The static part of the `"auto"` choice: `(fallback, candidate sizes)`.

    `fallback` is the cheaper of `"block"` and `"width"` (both exact for any
    labels); `candidate sizes` are the padded group sizes `s` (rows, anchor
    included) cheaper than it, at most `MAX_CANDIDATES`, from the smallest a
    batch can need (`n / C` members when every class has as many, plus the
    anchor) by factors of about 1.1 then 1.5. At run time the smallest
    candidate that holds the largest group is taken, else the fallback.

    Args:
        n: number of samples (static).
        num_classes: number of classes `C`.
        d: feature width.

    Returns:
        A tuple `(fallback, sizes)`.
    """
    costs = layout_costs(n, num_classes, d)
    fallback = min(costs, key=costs.get)
    limit = 0.8 * costs[fallback]
    size = max(2, math.ceil(n / num_classes) + 1)
    sizes = []
    while size <= n + 1 and len(sizes) < MAX_CANDIDATES:
        if padded_cost(n, num_classes, d, size) >= limit:
            break
        sizes.append(size)
        factor = 1.1 if len(sizes) < 5 else 1.5
        size = min(n + 1, max(size + 1, math.ceil(size * factor)))
        if size == sizes[-1]:
            break
    return fallback, tuple(sizes)


def _auto_eager(batch, eps):
    """The `"auto"` choice with concrete labels: `_eager` where padded groups win, else None."""
    n, d = batch.features.shape
    fallback, sizes = plan(n, batch.num_classes, d)
    if not sizes:
        return None
    classes, members = _eager_groups(batch.labels, batch.sample_weight, batch.num_classes)
    largest = max((len(rows) + 1 for rows in members), default=1)
    costs = layout_costs(n, batch.num_classes, d)
    if largest > d or padded_cost(n, batch.num_classes, d, largest) >= costs[fallback]:
        return None  # the layouts of normalised rows (groups wider than d: their d x d sides)
    return _eager(batch, eps, classes, members)


def _takes_per_group(batch, counts):
    """Whether `"auto"` takes `_per_group`: JAX under `jit`, few slots, padded sizes planned."""
    n, d = batch.features.shape
    return (
        compat.decomposes_one_matrix_per_call()
        and not is_concrete(counts)
        and min(batch.num_classes, n) <= PER_GROUP_SLOTS
        and bool(plan(n, batch.num_classes, d)[1])
    )


def _largest_group(counts):
    return ops.amax(counts) + 1.0


def _auto(zhat, what, labels, member, counts):
    n, d = zhat.shape
    fallback, sizes = plan(n, counts.shape[0], d)
    layouts = {
        "block": lambda: _block(zhat, what, member, counts),
        "width": lambda: _width(zhat, what, member, counts),
    }
    if not sizes:
        return layouts[fallback]()
    largest = _largest_group(counts)
    if is_concrete(largest) and not compat.eager_ops_compile_per_shape():
        # Eager: the data is known; groups of similar sizes padded together.
        needed = int(ops.convert_to_numpy(largest))
        if (
            padded_cost(n, counts.shape[0], d, needed)
            < layout_costs(n, counts.shape[0], d)[fallback]
        ):
            return _tiered(zhat, what, labels, member, counts)
        return layouts[fallback]()
    if not compat.compiled_branches_on_data():  # torch.compile
        return layouts[fallback]()
    index = ops.sum(ops.cast(largest > ops.convert_to_tensor(sizes, counts.dtype), "int32"))
    branches = [functools.partial(_padded, zhat, what, labels, member, counts, s) for s in sizes]
    branches.append(layouts[fallback])
    return ops.switch(index, branches)


# --------------------------------------------------------------------------- #
# Public functions
# --------------------------------------------------------------------------- #


def cma_entropy(features, anchors, labels, eps=1e-6, sample_weight=None, layout="auto"):
    """Cross-modal alignment entropy (the CMA term of arXiv 2409.16767).

    For every class `c` present in the batch, the group
    `G_c = {zhat_i : y_i = c} U {that_c}` of `m_c = n_c + 1` unit vectors has the
    normalised entropy `H(Gram(G_c)) / log(m_c)`; the result is their mean over
    the classes present. It is 0 when every class's features and its anchor point
    the same way, and at most 1.

    Sample weights: a row of weight 0 leaves its class group, and a class whose
    rows all have weight 0 is absent. Positive weights weight the rows within a
    group: the group's Gram is `D^1/2 Gram(G_c) D^1/2` with `D` the rows'
    weights divided by the mean positive weight of the batch and 1 for the
    anchor (so the anchor counts as an average sample, and multiplying all
    weights by a constant changes nothing); `m_c` counts the rows of positive
    weight, and the mean over classes is unweighted.

    Jit-compatible with static shapes and exact whatever the layout: the
    groups' spectra come from one block-diagonal `eigh` of size `n + min(C, n)`
    (many classes), from per-group Grams padded to a common size in one batched
    `eigh` (few classes, large batches: the size is picked from a few static
    candidates by the largest group at run time), or from the groups' `d x d`
    sides; `layout="auto"` picks the cheapest by shape (see the Performance
    page). This replaces a Python loop over classes. Gradients flow through the
    eigenvalues as Rayleigh quotients, exact also when eigenvalues repeat; no
    derivative of the eigenvectors is taken.

    Args:
        features: `(n, d)` features of one modality (e.g. image embeddings).
        anchors: `(C, d)` class anchors of the other (e.g. text embeddings of the
            class prompts; the head rows of a CLIP zero-shot classifier).
        labels: `(n,)` integer labels in `[0, C)`.
        eps: row-norm floor (see `gram`).
        sample_weight: optional `(n,)` non-negative weights (see above).
        layout: `"auto"` (default), or one of `"block"`, `"padded"` (padded to
            `n + 1` rows: fits any labels), `"width"` to force one.

    Returns:
        A scalar tensor in `[0, 1]`; 0 for an empty batch (or all weights 0).
        Non-finite inputs, negative weights and labels outside `[0, C)` raise
        in eager calls and give NaN inside compiled functions.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> features = np.tile([[1.0, 0.0]], (4, 1))  # every sample on its anchor
    >>> anchors = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(nc_ops.cma_entropy(features, anchors, np.zeros(4, "int32"))), 6)
    0.0
    """
    batch = labelled_batch(
        features, labels, anchors, head_name="anchors", sample_weight=sample_weight
    )
    return cma_entropy_of(batch, eps, layout=layout)


def cma_entropy_of(batch, eps=1e-6, layout="auto"):
    """`cma_entropy` of a `LabelledBatch` whose head rows are the class anchors.

    Reads the batch's `sample_weight` (see `cma_entropy`).

    Args:
        batch: a `LabelledBatch` (`keras_nc.ops.labelled_batch`) with `head`.
        eps: row-norm floor (see `gram`).
        layout: `"auto"`, `"block"`, `"padded"` or `"width"` (see `cma_entropy`).

    Returns:
        A scalar tensor (see `cma_entropy`).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}; received {layout!r}.")
    n = batch.features.shape[0]
    if n == 0:
        return ops.zeros((), dtype=batch.features.dtype)
    if (
        layout == "auto"
        and n is not None
        and not compat.eager_ops_compile_per_shape()
        and is_concrete(batch.labels)
    ):
        value = _auto_eager(batch, eps)
        if value is not None:
            return nan_unless(batch.ok, value)
    zhat, what, member, counts = _groups(batch, eps)
    if n is None or layout == "block":
        value = _block(zhat, what, member, counts)
    elif layout == "width":
        value = _width(zhat, what, member, counts)
    elif layout == "padded":
        value = _padded(zhat, what, batch.labels, member, counts, n + 1)
    elif _takes_per_group(batch, counts):
        sizes = plan(n, batch.num_classes, batch.features.shape[1])[1]
        value = _per_group(batch, eps, member, counts, group_sizes(sizes))
    else:
        value = _auto(zhat, what, batch.labels, member, counts)
    return nan_unless(batch.ok, value)
