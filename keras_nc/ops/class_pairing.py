"""The class pairing of MIR and HDR: class means against head rows, from class statistics.

Per epoch, from statistics accumulated over batches (`class_statistics`):
the Gram `K_M` of the centred class means against the Gram `K_W` of the
head rows, with the entropies from the cheapest exact side of each matrix.
"""

from keras import ops

from keras_nc.ops._checks import as_float, check_alpha, check_rank
from keras_nc.ops._guards import nan_unless
from keras_nc.ops._spectral import (
    cosine_gram,
    entropy_of_psd,
    matmul,
    min_side_gram,
    normalize_rows,
    num_rows,
)
from keras_nc.ops._tiles import block_layout, pair_sum
from keras_nc.ops.information import ratios_from_entropies
from keras_nc.ops.statistics import class_means, present_classes


def class_pairing_grams(counts, sums, head_weights, center=True):
    """Gram matrices of the class pairing: class means against head rows.

    Classes absent from the data get zero rows in both Grams, so they take no
    part in the entropies. Means are centred by the global mean of the samples
    when `center=True`.

    Args:
        counts: `(C,)` per-class counts.
        sums: `(C, d)` per-class feature sums.
        head_weights: `(C, d)` classifier rows (a `Dense` kernel transposed).
        center: centre the class means by the global mean.

    Returns:
        `(K_M, K_W)`, two `(C, C)` Gram matrices for `mir`/`hdr`; NaN when the
        statistics or the head hold non-finite values.
    """
    rows_m, rows_w = _class_pairing_rows(counts, sums, head_weights, center)
    return cosine_gram(rows_m, 1e-6), cosine_gram(rows_w, 1e-6)


def _class_pairing_rows(counts, sums, head_weights, center):
    """The rows whose cosine Grams the class pairing compares: `(means, head rows)`."""
    means, global_mean, present = class_means(counts, sums)
    head = as_float(head_weights)
    check_rank(head, "head_weights", 2, "(num_classes, d)")
    finite = ops.all(ops.isfinite(head))
    head = nan_unless(finite, ops.cast(ops.where(finite, head, 0.0), means.dtype))
    mask = ops.expand_dims(ops.cast(present, means.dtype), -1)
    centred_means = (means - global_mean) * mask if center else means
    return centred_means, head * mask


def _hadamard_entropy(mhat, what, alpha, block_size=None):
    """`H(K_M o K_W)` of two sets of `(C', d)` rows from the cheapest exact side.

    `K_M o K_W = X X^T` with rows `x_c = mhat_c (x) what_c` (`d^2` wide): with
    `C' > d^2` the `d^2 x d^2` matrix `X^T X` (same non-zero spectrum), summed
    over blocks of rows;
    otherwise, for `alpha = 2`, `||K_M o K_W||_F^2` summed over tiles of
    pairs; else the `C' x C'` product, built from blocks of rows (two
    `C' x C'` matrices at the peak, not three).
    """
    rows, width = tuple(mhat.shape)
    trace = ops.sum(ops.sum(ops.square(mhat), axis=-1) * ops.sum(ops.square(what), axis=-1))
    _, block = block_layout(rows, block_size)
    if width * width < rows:
        gram = 0.0
        for start in range(0, rows, block):  # X^T X by blocks of rows: never all of X
            kron = ops.expand_dims(mhat[start : start + block], -1) * ops.expand_dims(
                what[start : start + block], -2
            )
            kron = ops.reshape(kron, (-1, width * width))
            gram = gram + matmul(ops.transpose(kron), kron)
        return entropy_of_psd(gram, alpha, trace=trace)
    if alpha == 2.0:

        def tile(rows_i, rows_j, same):
            (m_i, w_i), (m_j, w_j) = rows_i, rows_j
            joint = matmul(m_i, ops.transpose(m_j)) * matmul(w_i, ops.transpose(w_j))
            return ops.sum(ops.square(joint))

        frob = pair_sum([mhat, what], tile, block_size)
        has_mass = trace > 0
        safe = ops.where(has_mass, trace, 1.0)
        ratio = ops.where(has_mass, frob / ops.square(safe), 1.0)
        return ops.where(has_mass, -ops.log(ratio), 0.0)
    joint = [
        matmul(mhat[start : start + block], ops.transpose(mhat))
        * matmul(what[start : start + block], ops.transpose(what))
        for start in range(0, rows, block)
    ]
    joint = joint[0] if len(joint) == 1 else ops.concatenate(joint, axis=0)
    return entropy_of_psd(joint, alpha, trace=trace)


def class_pairing_ratios(counts, sums, head_weights, center=True, alpha=1.0, block_size=None):
    """`(MIR, HDR)` of the class pairing, from class statistics and head rows.

    Equal to `information_ratios(*class_pairing_grams(counts, sums, head_weights,
    center))`, for statistics accumulated over an epoch (e.g. by the
    class-pairing metrics). Like `neural_collapse_measures`, it never raises on
    the values: statistics or head rows holding NaN or inf (a compiled step
    that saw bad input) give NaN; it computes in float64 where the backend has
    it and, called eagerly, on the `C'` classes present only.

    Cost, from the cheapest exact side of each matrix: `H(K_M)` and `H(K_W)`
    (rank at most `d`) from their `min(C', d)` sides, so HDR never needs a
    `C' x C'` matrix. MIR also needs `H(K_M o K_W)`, whose rank is at most
    `min(C', d^2)`: it is the Gram of the rows `mhat_c (x) what_c` (Kronecker
    products, `d^2` wide), so with `C' > d^2` (few features, many classes) it
    comes from the `d^2 x d^2` matrix of those rows; otherwise from the
    `C' x C'` product itself, its eigenvalues only (no eigenvectors), still
    `C'^3` work (about a minute at C' = 10,000 on one CPU core: the
    Performance page has timings). Order
    `alpha = 2` needs no eigendecomposition: `||K_M o K_W||_F^2` is summed
    over tiles of at most `block_size x block_size` pairs of classes
    (`C'^2 d` work, no `C' x C'` matrix), so `alpha=2` gives MIR at C' = 10,000
    in seconds.

    Args:
        counts: `(C,)` per-class counts.
        sums: `(C, d)` per-class feature sums.
        head_weights: `(C, d)` classifier rows.
        center: centre the class means by the global mean.
        alpha: entropy order.
        block_size: rows per tile of the order-2 sum (default 2048).

    Returns:
        A tuple of two scalar tensors, `(mir, hdr)`.
    """
    alpha = check_alpha(alpha)
    mhat, what, entropies, ok = _class_pairing_entropies(counts, sums, head_weights, center, alpha)
    # Only the Hadamard product needs a C' x C' eigendecomposition (one, not
    # three; and none of a C' x C' matrix of rank d < C', whose repeated zero
    # eigenvalues some LAPACK kernels fail to converge on).
    h_mw = _hadamard_entropy(mhat, what, alpha, block_size)
    ratios = ratios_from_entropies(*entropies, h_mw, num_rows(mhat))
    return tuple(nan_unless(ok, value) for value in ratios)


def _class_pairing_entropies(counts, sums, head_weights, center, alpha):
    """Normalised class-mean and head rows of the classes present, `H(K_M)`, `H(K_W)`, flag."""
    arrays, _, ok = present_classes({"counts": counts, "sums": sums, "head_weights": head_weights})
    rows_m, rows_w = _class_pairing_rows(
        arrays["counts"], arrays["sums"], arrays["head_weights"], center=center
    )
    # From their min(C', d) sides: no C' x C' matrix.
    mhat, what = normalize_rows(rows_m, 1e-6), normalize_rows(rows_w, 1e-6)
    entropies = []
    for rows in (mhat, what):
        k, trace = min_side_gram(rows)
        entropies.append(entropy_of_psd(k, alpha, trace=trace))
    return mhat, what, entropies, ok


def class_pairing_hdr(counts, sums, head_weights, center=True, alpha=1.0):
    """HDR of the class pairing alone: `class_pairing_ratios(...)[1]` without MIR's cost.

    HDR needs only `H(K_M)` and `H(K_W)`, each from the `min(C', d)` side of
    its matrix: a `d x d` eigendecomposition at most, whatever the number of
    classes (seconds at C = 100,000), where MIR also needs the entropy of the
    `C' x C'` Hadamard product.

    Args:
        counts: `(C,)` per-class counts.
        sums: `(C, d)` per-class feature sums.
        head_weights: `(C, d)` classifier rows.
        center: centre the class means by the global mean.
        alpha: entropy order.

    Returns:
        A scalar tensor.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> rng = np.random.default_rng(0)
    >>> counts, sums = np.full(5, 4.0), rng.normal(size=(5, 3))
    >>> head = rng.normal(size=(5, 3))
    >>> hdr = nc_ops.class_pairing_hdr(counts, sums, head)
    >>> bool(abs(float(hdr) - float(nc_ops.class_pairing_ratios(counts, sums, head)[1])) < 1e-6)
    True
    """
    alpha = check_alpha(alpha)
    mhat, _, (h_m, h_w), ok = _class_pairing_entropies(counts, sums, head_weights, center, alpha)
    # ratios_from_entropies' HDR does not read the joint entropy.
    _, hdr = ratios_from_entropies(h_m, h_w, h_m + h_w, num_rows(mhat))
    return nan_unless(ok, hdr)
