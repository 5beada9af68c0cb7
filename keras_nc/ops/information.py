"""Matrix mutual information and its ratios: MI, MIR and HDR of two Gram matrices.

`I(K1; K2) = H(K1) + H(K2) - H(K1 o K2)` for Gram matrices of the same
samples (arXiv 2409.16767, Section 3); MIR divides it by the smaller entropy,
HDR compares the two entropies. The entropies are `keras_nc.ops.entropy`'s.
"""

from keras import ops

from keras_nc.ops._checks import as_float, check_alpha, check_matrix, check_same_shape, dtype_name
from keras_nc.ops._guards import guard, nan_unless
from keras_nc.ops._spectral import entropy_of_psd, maximum, minimum, num_rows, ratio_of_entropies


def ratios_from_entropies(h1, h2, h12, n):
    """`(MIR, HDR)` from the entropies `H(K1), H(K2), H(K1 o K2)` of Grams of `n` samples.

    `MIR = (H1 + H2 - H12) / min(H1, H2)` and `HDR = |H1 - H2| / max(H1, H2)`,
    each 0 when its denominator is at round-off level (see `mir`, `hdr`).

    Args:
        h1: entropy of the first Gram matrix.
        h2: entropy of the second.
        h12: entropy of their Hadamard product.
        n: number of samples (a static int or a scalar tensor).

    Returns:
        A tuple of two tensors `(mir, hdr)`.

    Example:

    >>> from keras_nc import ops as nc_ops
    >>> m, h = nc_ops.ratios_from_entropies(1.0, 0.5, 1.2, n=8)
    >>> round(float(m), 4), round(float(h), 4)
    (0.6, 0.5)
    """
    h1, h2, h12 = (as_float(h) for h in (h1, h2, h12))
    return (
        ratio_of_entropies(h1 + h2 - h12, minimum(h1, h2), n),
        ratio_of_entropies(ops.abs(h1 - h2), maximum(h1, h2), n),
    )


def _validated_pair(k1, k2):
    """Two Gram batches of the same samples in one dtype, and the guard's flag."""
    k1, k2 = as_float(k1), as_float(k2)
    check_matrix(k1, "k1", square=True)
    check_matrix(k2, "k2", square=True)
    check_same_shape(k1, k2)
    if dtype_name(k1) != dtype_name(k2):
        k1, k2 = ops.cast(k1, "float64"), ops.cast(k2, "float64")
    checked = guard({"k1": k1, "k2": k2})
    return checked.tensors["k1"], checked.tensors["k2"], checked.ok


def _pair_entropies(k1, k2, alpha, joint=True):
    """`H(k1), H(k2)` (and `H(k1 o k2)`) of validated Grams, one batched `eigh`."""
    stack = [k1, k2, k1 * k2] if joint else [k1, k2]
    entropies = entropy_of_psd(ops.stack(stack, axis=0), check_alpha(alpha))
    return tuple(entropies[i] for i in range(len(stack)))


def matrix_mutual_information(k1, k2, alpha=1.0):
    """Matrix mutual information `I = H(k1) + H(k2) - H(k1 o k2)`.

    `k1 o k2` is the Hadamard (entrywise) product of the two Gram matrices of
    the same `n` samples, which is PSD by the Schur product theorem. For
    unit-diagonal PSD inputs, `0 <= I <= min(H(k1), H(k2))`. The three
    entropies share one batched eigendecomposition.

    Args:
        k1: PSD matrices of shape `(..., n, n)`.
        k2: PSD matrices of the same shape.
        alpha: entropy order (see `matrix_entropy`).

    Returns:
        A tensor of shape `(...)`, in nats.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> k = nc_ops.gram(np.random.default_rng(0).normal(size=(8, 4)))
    >>> i = nc_ops.matrix_mutual_information(k, k)  # equals H(k) - H(k o k)
    """
    k1, k2, ok = _validated_pair(k1, k2)
    h1, h2, h12 = _pair_entropies(k1, k2, alpha)
    return nan_unless(ok, h1 + h2 - h12)


def mir(k1, k2, alpha=1.0):
    """Matrix Mutual Information Ratio `I(k1; k2) / min(H(k1), H(k2))`.

    In `[0, 1]` for unit-diagonal PSD inputs; at Neural Collapse with `C`
    balanced classes it equals `keras_nc.theory.mir_at_collapse(C)`.

    Degenerate case: when `min(H(k1), H(k2))` is zero (a rank-1 Gram, e.g. a
    batch of a single class), the mutual information is zero too and `mir`
    returns 0. "Zero" means at most `1e-4 * log n` nats in float32 (`1e-10 *
    log n` in float64), the round-off level of a rank-1 Gram's entropy.

    Args:
        k1: PSD matrices of shape `(..., n, n)`.
        k2: PSD matrices of the same shape.
        alpha: entropy order (see `matrix_entropy`).

    Returns:
        A tensor of shape `(...)`.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops, theory
    >>> etf = theory.simplex_etf(4)
    >>> k = nc_ops.gram(etf)
    >>> round(float(nc_ops.mir(k, k)), 4) == round(theory.mir_at_collapse(4), 4)
    True
    """
    return information_ratios(k1, k2, alpha)[0]


def information_ratios(k1, k2, alpha=1.0):
    """`(mir(k1, k2), hdr(k1, k2))` from one batched eigendecomposition.

    Args:
        k1: PSD matrices of shape `(..., n, n)`.
        k2: PSD matrices of the same shape.
        alpha: entropy order.

    Returns:
        A tuple of two tensors of shape `(...)`, as `mir` and `hdr` return them.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> k = nc_ops.gram(np.random.default_rng(0).normal(size=(8, 4)))
    >>> m, h = nc_ops.information_ratios(k, k)
    """
    k1, k2, ok = _validated_pair(k1, k2)
    ratios = ratios_from_entropies(*_pair_entropies(k1, k2, alpha), num_rows(k1))
    return tuple(nan_unless(ok, value) for value in ratios)


def hdr(k1, k2, alpha=1.0):
    """Matrix Entropy Difference Ratio `|H(k1) - H(k2)| / max(H(k1), H(k2))`.

    In `[0, 1]`; 0 at Neural Collapse. Degenerate case: when both entropies are
    zero (both Grams rank 1; at most `1e-4 * log n` nats in float32) the
    difference is zero and `hdr` returns 0.

    Args:
        k1: PSD matrices of shape `(..., n, n)`.
        k2: PSD matrices of the same shape.
        alpha: entropy order (see `matrix_entropy`).

    Returns:
        A tensor of shape `(...)`.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> float(nc_ops.hdr(np.eye(3), np.eye(3)))
    0.0
    """
    k1, k2, ok = _validated_pair(k1, k2)
    h1, h2 = _pair_entropies(k1, k2, alpha, joint=False)
    return nan_unless(ok, ratio_of_entropies(ops.abs(h1 - h2), maximum(h1, h2), num_rows(k1)))
