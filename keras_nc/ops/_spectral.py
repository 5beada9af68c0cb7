"""Spectral helpers of `keras_nc.ops`: normalised rows, Gram sides, eigenvalues, entropies.

No validation here: callers pass tensors that `keras_nc.ops._guards` checked.

Numerics, in one place:

- Eigenvalues of `rho = K / tr K` below `EIG_RTOL * max(eigenvalue)` are treated
  as zero: `eigh` has absolute errors of order `eps * lambda_max` (machine
  epsilon, 1.2e-7 in float32), so anything smaller is round-off. Orders
  alpha >= 1 weigh an eigenvalue `l` by `-l log l` or `l^alpha`, so the
  round-off eigenvalues that survive this cut (at most `m eps lambda_max` each
  for an m x m matrix, backward-stable `eigh`) change the entropy by at most
  about `m * delta * log(1/delta)`, `delta = m eps`. Orders alpha < 1 raise them
  to the power alpha (1e-7 becomes 3e-4 at alpha = 0.5): there the cut is the
  numerical-rank tolerance `m * eps * lambda_max` (NumPy's `matrix_rank`), above
  every round-off eigenvalue of a rank-deficient matrix, so that the result does
  not depend on which round-off a machine's LAPACK kernel produced.
- A MIR or HDR denominator at or below `ENTROPY_FLOOR * log(n)` nats is treated
  as zero: the float32 entropy of an exactly rank-1 n x n Gram is round-off of
  up to ~2e-4 nats at n = 2048 (below 1e-4 * log n for every n measured).

Why one module: every helper here follows the numerics notes above (one
cut, one floor), which a split would scatter.
"""

import math

from keras import ops

from keras_nc import compat
from keras_nc.ops._checks import dtype_name

EIG_RTOL = {"float32": 1.2e-7, "float64": 2e-15}
ENTROPY_FLOOR = {"float32": 1e-4, "float64": 1e-10}


def machine_eps(dtype):
    """Machine epsilon of `"float32"` or `"float64"`."""
    return 2.0**-52 if dtype == "float64" else 2.0**-23


# `ops.minimum`/`ops.maximum` return float32 for float64 torch tensors in
# Keras 3.15 (their dtype promotion reads torch dtypes as float32), so the
# float64 path takes the elementwise min/max through `ops.where`.
def minimum(a, b):
    """Elementwise minimum that keeps float64 on every backend."""
    return ops.where(a < b, a, b)


def maximum(a, b):
    """Elementwise maximum that keeps float64 on every backend."""
    return ops.where(a > b, a, b)


def matmul(a, b):
    """`ops.matmul` that keeps float64 as float64 on every backend.

    Keras 3.15's PyTorch backend promotes `float64 @ float64` to float32
    (`keras.backend.result_type("float64", "float64")` is float32 there), which
    would silently turn the float64 paths (float64 inputs, the epoch-end class
    measures) into float32 ones; `einsum` keeps the dtype.
    """
    if dtype_name(a) == "float64" and len(a.shape) >= 2 and len(b.shape) >= 2:
        return ops.einsum("...ij,...jk->...ik", a, b)
    return ops.matmul(a, b)


def outer_gram(x):
    """`x x^T` over the last two axes."""
    return matmul(x, ops.swapaxes(x, -1, -2))


def largest(x, axis=None, keepdims=False):
    """`max` of `x` over `axis` (an int or a tuple), 0 for an empty `x`.

    `ops.amax` rather than `ops.max`: Keras 3.15's PyTorch `max` inspects its
    result with `isinstance`, a graph break under `torch.compile` on every call.
    """
    shape = tuple(x.shape)
    if 0 not in shape:
        return ops.amax(x, axis=axis, keepdims=keepdims)
    ndim = len(shape)
    axes = range(ndim) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    axes = {a % ndim for a in axes}
    kept = (
        [1 if i in axes else shape[i] for i in range(ndim)]
        if keepdims
        else [shape[i] for i in range(ndim) if i not in axes]
    )
    return ops.zeros(kept, dtype=x.dtype)


def num_rows(x):
    """Static number of rows of `x` (axis -2), or a scalar tensor when unknown."""
    n = x.shape[-2]
    return n if n is not None else ops.shape(x)[-2]


def normalize_rows(x, eps):
    """`x_i / max(||x_i||, eps * max_j ||x_j||)` over the rows of each matrix of `x`.

    Scale-invariant: `x` is first divided by its largest absolute entry (a
    constant for the gradient, which the result does not depend on), so no
    square overflows or underflows for finite features of any magnitude
    (1e-30 or 1e30 in float32). Rows whose norm is below `eps` times the
    largest row norm are divided by that floor instead (zero rows stay zero,
    with finite gradients).
    """
    scale = ops.stop_gradient(largest(ops.abs(x), axis=(-2, -1), keepdims=True))
    x = x / ops.where(scale > 0, scale, 1.0)
    sq = ops.sum(ops.square(x), axis=-1, keepdims=True)
    top = ops.stop_gradient(largest(sq, axis=-2, keepdims=True))
    floor = eps * eps * ops.where(top > 0, top, 1.0)
    return x * ops.rsqrt(maximum(sq, floor))


def centred(x, center, mean):
    """`x` minus `mean` (if given), else minus its batch mean when `center`."""
    if mean is not None:
        mean = ops.cast(ops.convert_to_tensor(mean), x.dtype)
        return x - ops.expand_dims(mean, -2)
    if center:
        # A sum divided by n: Keras 3.15's `ops.mean` on torch reduces float64
        # input in float32 (the mean of [1e8 + 1, 1e8 + 2, 1e8 + 3] is 1e8).
        n = ops.cast(ops.shape(x)[-2], x.dtype)
        return x - ops.sum(x, axis=-2, keepdims=True) / n
    return x


def weighted_rows(x, sample_weight, center, mean, eps):
    """Rows `sqrt(w_i) * xhat_i` of the weighted cosine Gram `D^1/2 K D^1/2`.

    Without weights: `normalize_rows(centred(x, center, mean), eps)`. With
    `sample_weight` `w` (`(..., n)`, `w >= 0`, no gradient), `center` subtracts
    the weighted mean `sum_i w_i x_i / sum_i w_i`, rows of weight 0 are set to
    zero before normalising (so they take no part in the norm floor either)
    and each normalised row is scaled by `sqrt(w_i)`: rows of weight 0 are zero
    rows, whose Gram rows and columns are zero (eigenvalues 0, `0 log 0 = 0`).
    """
    if sample_weight is None:
        return normalize_rows(centred(x, center, mean), eps)
    w = ops.stop_gradient(ops.cast(sample_weight, x.dtype))
    active = ops.expand_dims(w > 0, -1)
    if mean is None and center:
        total = ops.sum(w, axis=-1, keepdims=True)
        weighted = ops.sum(ops.expand_dims(w, -1) * x, axis=-2)
        mean = weighted / ops.where(total > 0, total, 1.0)
    x = ops.where(active, centred(x, False, mean), 0.0)
    return normalize_rows(x, eps) * ops.expand_dims(ops.sqrt(w), -1)


def active_rows(sample_weight, n):
    """The number of rows with positive weight (a tensor), or the static `n` without weights."""
    if sample_weight is None:
        return n
    return ops.sum(ops.cast(ops.convert_to_tensor(sample_weight) > 0, "int32"), axis=-1)


def cosine_gram(x, eps):
    """`Xhat Xhat^T` of the row-normalised `x`."""
    return outer_gram(normalize_rows(x, eps))


def min_side_gram(xhat):
    """The smaller of `Xhat Xhat^T` (n x n) and `Xhat^T Xhat` (d x d), and their trace.

    Both have the same non-zero eigenvalues, hence the same entropy. With `n`
    unknown statically the `d x d` side is used.
    """
    n, d = tuple(xhat.shape)[-2:]
    trace = ops.sum(ops.square(xhat), axis=(-2, -1))
    if n is not None and d is not None and n <= d:
        return outer_gram(xhat), trace
    return matmul(ops.swapaxes(xhat, -1, -2), xhat), trace


def eigenvalue_cut(dtype, alpha, size):
    """Relative cut below which eigenvalues of an m x m matrix count as zero.

    `eps` for orders `alpha >= 1`, the numerical-rank tolerance `m * eps` for
    `alpha < 1` (see the module notes).
    """
    if alpha >= 1.0:
        return EIG_RTOL[dtype]
    return EIG_RTOL[dtype] * max(int(size or 1), 1)


def kept_probabilities(eigenvalues, trace, alpha, share=None):
    """The eigenvalues of `rho = K / tr K` that count, and which they are.

    `eigenvalues` `(..., m)` divided by `trace` (broadcast against them),
    clipped into `[0, 1]` (round-off outside), and the mask of those above the
    cut (`eigenvalue_cut`, relative to the largest; `share` optionally weighs
    each eigenvalue's part in its matrix, as CMA's block layout does).

    Returns:
        `(p, keep, p_safe)`: `p_safe` is `p` where kept and 1 elsewhere (safe
        for logarithms and powers, with finite gradients).
    """
    p = ops.clip(eigenvalues / trace, 0.0, 1.0)
    weighted = p if share is None else share * p
    cut = eigenvalue_cut(dtype_name(p), alpha, eigenvalues.shape[-1] if share is None else 1)
    axis = -1 if share is None else 0
    keep = p > cut * largest(weighted, axis=axis, keepdims=True)
    if share is not None:
        keep = keep & (share > 0)
    return p, keep, ops.where(keep, p, 1.0)


def entropy_from_spectrum(eigenvalues, trace, alpha):
    """Entropy of `rho` whose eigenvalues are `eigenvalues / trace`.

    `eigenvalues` has shape (..., m), `trace` shape (...). A zero trace (all-zero
    matrix) gives entropy 0.
    """
    has_mass = trace > 0
    trace = ops.where(has_mass, trace, 1.0)
    _, keep, p_safe = kept_probabilities(eigenvalues, ops.expand_dims(trace, -1), alpha)
    if alpha == 1.0:
        entropy = ops.sum(ops.where(keep, -p_safe * ops.log(p_safe), 0.0), axis=-1)
    else:
        power_sum = ops.sum(ops.where(keep, ops.power(p_safe, alpha), 0.0), axis=-1)
        power_sum = ops.where(has_mass, power_sum, 1.0)
        entropy = ops.log(power_sum) / (1.0 - alpha)
    return ops.where(has_mass, entropy, 0.0)


def renyi2_entropy(k, trace):
    """Order-2 entropy `-log(||K||_F^2 / (tr K)^2)` without an eigendecomposition."""
    has_mass = trace > 0
    trace = ops.where(has_mass, trace, 1.0)
    frob = ops.sum(ops.square(k), axis=(-2, -1))
    ratio = ops.where(has_mass, frob / ops.square(trace), 1.0)
    return ops.where(has_mass, -ops.log(ratio), 0.0)


def eigenvalues(k):
    """Ascending eigenvalues of a batch of symmetric matrices `(..., m, m)`.

    Without eigenvectors where the backend allows (`keras_nc.compat.eigvalsh`:
    `torch.linalg.eigvalsh`, `tf.linalg.eigvalsh`, NumPy's LAPACK for large
    concrete CPU input): a third to a half of the work of `eigh`, the same
    accuracy (backward-stable; absolute errors of order `eps * lambda_max`),
    differentiable on every backend.

    Where batched decompositions deadlock (traced JAX input,
    `keras_nc.compat.decomposes_one_matrix_per_call`), `eigh` of each matrix
    in its own 2-D call.
    """
    shape = tuple(k.shape)
    if not compat.decomposes_one_matrix_per_call() or compat.host_eigenvalues_apply(k):
        return compat.eigvalsh(k)
    if len(shape) == 2:
        return ops.eigh(k)[0]
    batch = math.prod(shape[:-2])
    flat = ops.reshape(k, (batch, *shape[-2:]))
    values = [ops.eigh(flat[i])[0] for i in range(batch)]
    return ops.reshape(ops.stack(values, axis=0), (*shape[:-1],))


def eigh_batch(k):
    """`(eigenvalues, eigenvectors)` of a batch of symmetric matrices `(k, m, m)`.

    Where batched decompositions deadlock (JAX, see `eigenvalues`) a batch is
    decomposed one matrix at a time in a `keras.ops.map` loop; elsewhere in
    one batched call.
    """
    if not compat.decomposes_one_matrix_per_call() or len(k.shape) == 2:
        return ops.eigh(k)
    if k.shape[0] == 1:
        values, vectors = ops.eigh(k[0])
        return ops.expand_dims(values, 0), ops.expand_dims(vectors, 0)
    return ops.map(ops.eigh, k)


def needs_gradient(x):
    """False only where a gradient of `x` surely will not be taken (eager torch, no grad).

    Under tracing (JAX, TensorFlow) it cannot be known: True
    (`keras_nc.compat.gradient_may_be_taken`).
    """
    return compat.gradient_may_be_taken(x)


def eigenvalues_only(k):
    """Eigenvalues of a batch of symmetric matrices, without eigenvectors where possible."""
    return eigenvalues(k)


def entropy_of_psd(k, alpha, trace=None):
    """Entropy of a batch of finite PSD matrices `(..., m, m)` with the given traces.

    Empty matrices (m = 0) have entropy 0. Order 2 needs no eigendecomposition.
    """
    if trace is None:
        trace = ops.trace(k, axis1=-2, axis2=-1)
    if k.shape[-1] == 0:
        return ops.zeros(tuple(k.shape)[:-2], dtype=k.dtype)
    if alpha == 2.0:
        return renyi2_entropy(k, trace)
    return entropy_from_spectrum(eigenvalues(k), trace, alpha)


def ratio_of_entropies(numerator, denominator, n):
    """`numerator / denominator` for entropies of Gram matrices of `n` samples.

    Returns 0 where the denominator is at round-off level (rank-1 matrices),
    with finite gradients; NaN inputs stay NaN. `n` is a static int or a scalar
    tensor.
    """
    dtype = dtype_name(denominator)
    if isinstance(n, int):
        log_n = math.log(max(n, 2))
    else:  # a traced count (e.g. rows of positive weight): at least 2, like the static case
        n = ops.cast(n, dtype)
        log_n = ops.log(ops.where(n > 2.0, n, 2.0))
    ok = denominator > ENTROPY_FLOOR[dtype] * log_n
    value = ops.where(ok, numerator / ops.where(ok, denominator, 1.0), 0.0)
    nan = ops.isnan(numerator) | ops.isnan(denominator)
    return ops.where(nan, float("nan"), value)


def log_n(n, name):
    """`log(n)` for normalisation; `n` is a static int or a scalar tensor."""
    if isinstance(n, int):
        if n < 2:
            raise ValueError(
                f"`normalize=True` divides by log(n) and needs n >= 2 rows in `{name}`; "
                f"received n={n}."
            )
        return math.log(n)
    n = ops.cast(n, "float32")
    return ops.log(ops.where(n > 2.0, n, 2.0))  # a traced count below 2 has entropy 0
