"""The Cross-Modal Alignment entropy (SPEC 2.8), one eigendecomposition per batch."""

from keras import ops

from keras_nc.ops._guards import labelled_batch, nan_unless
from keras_nc.ops._spectral import kept_probabilities, matmul, normalize_rows, outer_gram


def _class_slots(labels, num_classes, slots, dtype):
    """The classes present, packed into `slots` (static count): `(slot_class, slot_valid)`."""
    counts = ops.sum(ops.one_hot(labels, num_classes, dtype=dtype), axis=0)  # (C,)
    present = counts > 0
    order = ops.cast(present, dtype) * 2.0 - ops.arange(num_classes, dtype=dtype) / num_classes
    _, slot_class = ops.top_k(order, k=slots)  # present classes first
    return slot_class, ops.take(ops.cast(present, dtype), slot_class)


def _block_matrix(features, anchors, labels, slot_class):
    """The group Grams as diagonal blocks of one matrix, and each row's block.

    Rows: the `n` samples, then the `P` slot anchors; `blocks[i, p]` is 1 when
    row `i` belongs to group `p`. Returns `(matrix, blocks)`.
    """
    dtype = features.dtype
    slots = slot_class.shape[0]
    rows = ops.concatenate([features, ops.take(anchors, slot_class, axis=0)], axis=0)
    sample_blocks = ops.cast(ops.expand_dims(labels, 1) == ops.expand_dims(slot_class, 0), dtype)
    blocks = ops.concatenate([sample_blocks, ops.eye(slots, dtype=dtype)], axis=0)  # (n+P, P)
    return outer_gram(rows) * outer_gram(blocks), blocks


def _block_entropies(matrix, blocks):
    """Von Neumann entropy of each diagonal block, with Rayleigh-quotient gradients.

    `share[k, p]` is the part of eigenvector `k` in block `p` (0 or 1 unless
    groups share the eigenvalue); `quotient[k, p]` its Rayleigh quotient on
    block `p`, whose gradient is the eigenvalue's gradient restricted to the
    block; no derivative of the eigenvectors is taken. Returns `(entropy,
    trace)` per block.
    """
    eigenvalues, eigenvectors = ops.eigh(matrix)
    eigenvalues = ops.stop_gradient(eigenvalues)
    eigenvectors = ops.stop_gradient(eigenvectors)
    share = matmul(ops.transpose(ops.square(eigenvectors)), blocks)  # (n+P, P)
    quotient = matmul(ops.transpose(eigenvectors * matmul(matrix, eigenvectors)), blocks)
    trace = matmul(ops.expand_dims(ops.diagonal(matrix), 0), blocks)[0]  # (P,)
    trace_safe = ops.where(trace > 0, trace, 1.0)
    _, keep, p_safe = kept_probabilities(
        ops.expand_dims(eigenvalues, -1), trace_safe, alpha=1.0, share=share
    )
    log_p = ops.log(p_safe)
    value = ops.where(keep, -share * p_safe * log_p, 0.0)
    # d(-p log p)/d(eigenvalue) = -(log p + 1) / trace, applied to the quotient.
    slope = ops.stop_gradient(ops.where(keep, -(log_p + 1.0) / trace_safe, 0.0))
    surrogate = slope * (quotient - ops.stop_gradient(quotient))
    return ops.sum(value + surrogate, axis=0), trace


def cma_entropy(features, anchors, labels, eps=1e-6):
    """Cross-modal alignment entropy (the CMA term of SPEC 2.8).

    For every class `c` present in the batch, the group
    `G_c = {zhat_i : y_i = c} U {that_c}` of `m_c = n_c + 1` unit vectors has the
    normalised entropy `H(Gram(G_c)) / log(m_c)`; the result is their mean over
    the classes present. It is 0 when every class's features and its anchor point
    the same way, and at most 1.

    Jit-compatible with static shapes and one eigendecomposition: the classes
    present are packed into `P = min(C, n)` slots (all `C` when `n` is not known
    statically) and the `P` group Grams are laid out as the diagonal blocks of
    one `(n + P) x (n + P)` matrix (each sample's row and its class anchor's row
    in one block). Its eigenvalues are the union of the blocks', and each
    eigenvector lies within one block, which attributes every eigenvalue to its
    group. This replaces a Python loop over classes (and `P` eigendecompositions
    of size `n + 1`). Gradients flow through the eigenvalues as Rayleigh
    quotients restricted to each block, which is exact also when two groups
    share an eigenvalue; no derivative of the eigenvectors is taken.

    Args:
        features: `(n, d)` features of one modality (e.g. image embeddings).
        anchors: `(C, d)` class anchors of the other (e.g. text embeddings of the
            class prompts; the head rows of a CLIP zero-shot classifier).
        labels: `(n,)` integer labels in `[0, C)`.
        eps: row-norm floor (see `gram`).

    Returns:
        A scalar tensor in `[0, 1]`; 0 for an empty batch. Non-finite inputs
        and labels outside `[0, C)` raise in eager calls and give NaN inside
        compiled functions.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> features = np.tile([[1.0, 0.0]], (4, 1))  # every sample on its anchor
    >>> anchors = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(nc_ops.cma_entropy(features, anchors, np.zeros(4, "int32"))), 6)
    0.0
    """
    batch = labelled_batch(features, labels, anchors, head_name="anchors")
    return cma_entropy_of(batch, eps)


def cma_entropy_of(batch, eps=1e-6):
    """`cma_entropy` of a `LabelledBatch` whose head rows are the class anchors.

    Args:
        batch: a `LabelledBatch` (`keras_nc.ops.labelled_batch`) with `head`.
        eps: row-norm floor (see `gram`).

    Returns:
        A scalar tensor (see `cma_entropy`).
    """
    n = batch.features.shape[0]
    if n == 0:
        return ops.zeros((), dtype=batch.features.dtype)
    features = normalize_rows(batch.features, eps)
    anchors = normalize_rows(batch.head, eps)
    num_classes, dtype = batch.num_classes, features.dtype
    slots = num_classes if n is None else min(num_classes, n)
    slot_class, slot_valid = _class_slots(batch.labels, num_classes, slots, dtype)
    matrix, blocks = _block_matrix(features, anchors, batch.labels, slot_class)
    entropy, trace = _block_entropies(matrix, blocks)
    group_size = ops.sum(blocks, axis=0)
    log_m = ops.log(ops.where(group_size >= 2, group_size, 2.0))
    normalized = ops.where(trace > 0, entropy / log_m, 0.0) * slot_valid
    num_valid = ops.sum(slot_valid)
    return nan_unless(batch.ok, ops.sum(normalized) / ops.where(num_valid > 0, num_valid, 1.0))
