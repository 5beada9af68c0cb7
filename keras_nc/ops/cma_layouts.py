"""The CMA entropy's layouts of normalised rows: block, padded, runs of padded groups, width.

Each takes the normalised rows `zhat` `(n, d)`, the normalised head rows
`what` `(C, d)`, the membership `member` `(n, C)` and the group sizes
`counts` `(C,)` of `normalised_groups`, and returns the mean over the classes
present of the groups' normalised entropies (see `keras_nc.ops.cma`).
Gradients flow through each eigenvalue as the Rayleigh quotient of its
eigenvector (`group_entropies`).
"""

from keras import ops

from keras_nc.ops._spectral import (
    eigenvalues_only,
    eigh_batch,
    entropy_from_spectrum,
    kept_probabilities,
    matmul,
    needs_gradient,
    normalize_rows,
    outer_gram,
)
from keras_nc.ops.cma_plan import tiers


def normalised_groups(batch, eps):
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


def class_slots(counts, slots):
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


def normalised_mean(entropy, slot_count):
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


def group_entropies(matrices, trace):
    """Entropies of a batch of PSD matrices `(k, m, m)` with the given traces `(k,)`.

    Without a gradient to take (eager PyTorch under `no_grad` or on inputs
    that do not require one) the eigenvectors are not computed.
    """
    if not needs_gradient(matrices):
        return entropy_from_spectrum(eigenvalues_only(matrices), trace, 1.0)
    eigenvalues, eigenvectors = eigh_batch(ops.stop_gradient(matrices))
    return _surrogate_entropy(eigenvalues, eigenvectors, matrices, trace)


def block_entropy(zhat, what, member, counts):
    """One `eigh` of the block-diagonal matrix of all groups (`P = min(C, n)` slots)."""
    n = zhat.shape[0]
    slots = counts.shape[0] if n is None else min(counts.shape[0], n)
    slot_class, slot_count = class_slots(counts, slots)
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
    return normalised_mean(entropy, slot_count)


def _padded_rows(zhat, what, labels, member, counts, size, slot_class=None):
    """`(P, size, d)`: each slot's members (zero-padded to `size - 1`) and its anchor.

    `slot_class` optionally names the slots' classes (default: the `min(C, n)`
    classes with the most members, largest first).
    """
    n = zhat.shape[0]
    num_classes = counts.shape[0]
    if slot_class is None:
        slot_class, slot_count = class_slots(counts, min(num_classes, n))
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
    return group_entropies(matrices, trace), slot_count


def padded_entropy(zhat, what, labels, member, counts, size):
    """Each group in its own `size x size` Gram (or `d x d` side), one batched `eigh`."""
    return normalised_mean(*_padded_entropies(zhat, what, labels, member, counts, size))


def tiered_entropy(zhat, what, labels, member, counts):
    """Eager only: the present groups sorted by size, padded within `tiers`, one `eigh` each."""
    n, num_classes = zhat.shape[0], counts.shape[0]
    slot_class, slot_count = class_slots(counts, min(num_classes, n))
    sizes = [int(c) + 1 for c in ops.convert_to_numpy(slot_count) if c > 0]
    entropies = [
        _padded_entropies(zhat, what, labels, member, counts, size, slot_class[start:stop])[0]
        for start, stop, size in tiers(sizes)
    ]
    present = len(sizes)
    entropy = ops.concatenate(entropies, axis=0) if present else ops.zeros((0,), zhat.dtype)
    return normalised_mean(entropy, slot_count[:present])


def width_entropy(zhat, what, member, counts):
    """Each group from its `d x d` side `sum_i zhat_i zhat_i^T + a a^T` (any group sizes)."""
    n = zhat.shape[0]
    slots = min(counts.shape[0], n)
    slot_class, slot_count = class_slots(counts, slots)
    slot_member = ops.transpose(ops.take(member, slot_class, axis=1))  # (P, n)
    weighted = ops.expand_dims(ops.transpose(zhat), 0) * ops.expand_dims(slot_member, 1)
    anchors = ops.take(what, slot_class, axis=0)  # (P, d)
    matrices = matmul(weighted, zhat) + ops.expand_dims(anchors, -1) * ops.expand_dims(anchors, 1)
    trace = matmul(slot_member, ops.expand_dims(ops.sum(ops.square(zhat), axis=-1), -1))[:, 0]
    trace = trace + ops.sum(ops.square(anchors), axis=-1)
    return normalised_mean(group_entropies(matrices, trace), slot_count)
