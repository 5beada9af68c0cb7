"""Matrix information theory on `keras.ops`: Gram matrices, entropies, MI, MIR, HDR.

Every function here is pure, backend-agnostic (TensorFlow, JAX, PyTorch through
`keras.ops`), batched over leading dimensions and safe under `jit_compile`.
Metrics, losses and recipes call these functions; the mathematics lives here
once. See the Concepts page of the documentation for the definitions.

Numerics, in one place:

- Computation happens in float32 at least: float16 and bfloat16 inputs are cast
  up, float64 inputs stay float64.
- Eigenvalues below a relative tolerance (`tol * max eigenvalue`) are treated as
  exact zeros, so the tiny negative or repeated eigenvalues that `eigh` returns
  for rank-deficient matrices give neither NaN values nor NaN gradients.
- Rows are normalised by `max(||z||, eps)`: zero rows stay zero and keep finite
  gradients.
- Degenerate denominators return documented, finite values (see `mir`, `hdr`).
"""

import math

import keras
from keras import ops

# Eigenvalues of `rho = K / tr K` below `_EIG_RTOL * max(eigenvalue)` are
# treated as zero: `eigh` has absolute errors of order `eps * lambda_max`
# (machine epsilon, 1.2e-7 in float32), so anything smaller is round-off.
# Measured against float64 (n up to 1024): this keeps the float32 entropy of
# rank-deficient and near-collinear Grams within about 5e-5 nats.
_EIG_RTOL = {"float32": 1.2e-7, "float64": 2e-15}
# A MIR or HDR denominator at or below `_ENTROPY_FLOOR * log(n)` nats is treated
# as zero: the float32 entropy of an exactly rank-1 n x n Gram is round-off of
# up to ~2e-4 nats at n = 2048 (below 1e-4 * log n for every n measured).
_ENTROPY_FLOOR = {"float32": 1e-4, "float64": 1e-10}


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _as_float(x):
    """Converts `x` to a tensor of float32 or float64 (never half precision)."""
    x = ops.convert_to_tensor(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    target = "float64" if dtype == "float64" else "float32"
    if dtype != target:
        x = ops.cast(x, target)
    return x


def _dtype_name(x):
    return keras.backend.standardize_dtype(x.dtype)


# `ops.minimum`/`ops.maximum` return float32 for float64 torch tensors in
# Keras 3.15 (their dtype promotion reads torch dtypes as float32), so the
# float64 path takes the elementwise min/max through `ops.where`.
def _minimum(a, b):
    return ops.where(a < b, a, b)


def _maximum(a, b):
    return ops.where(a > b, a, b)


def _check_matrix(x, name, square):
    shape = tuple(x.shape)
    if len(shape) < 2:
        raise ValueError(
            f"`{name}` must have rank >= 2 (shape (..., n, {'n' if square else 'd'})); "
            f"received shape {shape}."
        )
    if square and shape[-1] is not None and shape[-2] is not None and shape[-1] != shape[-2]:
        raise ValueError(
            f"`{name}` must be a square matrix or a batch of square matrices with shape "
            f"(..., n, n); received shape {shape}."
        )
    return shape


def _check_same_shape(k1, k2):
    s1, s2 = tuple(k1.shape), tuple(k2.shape)
    if len(s1) != len(s2) or any(
        a is not None and b is not None and a != b for a, b in zip(s1, s2, strict=True)
    ):
        raise ValueError(
            "`k1` and `k2` must have the same shape (..., n, n) (one Gram matrix per "
            f"sample set, same samples in the same order); received {s1} and {s2}."
        )


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"`alpha` must be a number > 0 (1 for von Neumann); received {alpha!r}.")
    if math.isinf(alpha):
        raise ValueError("`alpha` must be finite; received inf.")
    return float(alpha)


def _log_n(n, name):
    """`log(n)` for normalisation; `n` is a static int or a scalar tensor."""
    if isinstance(n, int):
        if n < 2:
            raise ValueError(
                f"`normalize=True` divides by log(n) and needs n >= 2 rows in `{name}`; "
                f"received n={n}."
            )
        return math.log(n)
    return ops.log(ops.cast(n, "float32"))


def _ratio_of_entropies(numerator, denominator, k):
    """`numerator / denominator` for entropies of the n x n matrices `k`.

    Returns 0 where the denominator is at round-off level (rank-1 matrices),
    with finite gradients.
    """
    n = k.shape[-1] if k.shape[-1] is not None else ops.shape(k)[-1]
    log_n = math.log(max(n, 2)) if isinstance(n, int) else ops.log(ops.cast(n, k.dtype))
    floor = _ENTROPY_FLOOR[_dtype_name(k)] * log_n
    ok = denominator > floor
    return ops.where(ok, numerator / ops.where(ok, denominator, 1.0), 0.0)


def _normalize_rows(x, eps):
    """`x_i / max(||x_i||, eps)`; zero rows stay zero with finite gradients."""
    sq = ops.sum(ops.square(x), axis=-1, keepdims=True)
    return x * ops.rsqrt(_maximum(sq, eps * eps))


def _prepare_features(x, center, mean, eps):
    x = _as_float(x)
    _check_matrix(x, "x", square=False)
    if mean is not None:
        mean = ops.cast(ops.convert_to_tensor(mean), x.dtype)
        x = x - ops.expand_dims(mean, -2)
    elif center:
        x = x - ops.mean(x, axis=-2, keepdims=True)
    return _normalize_rows(x, eps)


def _entropy_from_spectrum(eigenvalues, trace, alpha):
    """Entropy of `rho` whose eigenvalues are `eigenvalues / trace`.

    `eigenvalues` has shape (..., m), `trace` shape (...). A zero trace (all-zero
    matrix) gives entropy 0.
    """
    dtype = _dtype_name(eigenvalues)
    has_mass = trace > 0
    trace = ops.where(has_mass, trace, 1.0)
    # Eigenvalues of rho lie in [0, 1]; clipping removes round-off outside.
    p = ops.clip(eigenvalues / ops.expand_dims(trace, -1), 0.0, 1.0)
    tol = _EIG_RTOL[dtype] * ops.max(p, axis=-1, keepdims=True)
    keep = p > tol
    p_safe = ops.where(keep, p, 1.0)
    if alpha == 1.0:
        terms = ops.where(keep, -p_safe * ops.log(p_safe), 0.0)
        entropy = ops.sum(terms, axis=-1)
    else:
        power_sum = ops.sum(ops.where(keep, ops.power(p_safe, alpha), 0.0), axis=-1)
        power_sum = ops.where(has_mass, power_sum, 1.0)
        entropy = ops.log(power_sum) / (1.0 - alpha)
    return ops.where(has_mass, entropy, 0.0)


def _renyi2_entropy(k, trace):
    """Order-2 entropy `-log(||K||_F^2 / (tr K)^2)` without an eigendecomposition."""
    has_mass = trace > 0
    trace = ops.where(has_mass, trace, 1.0)
    frob = ops.sum(ops.square(k), axis=(-2, -1))
    ratio = ops.where(has_mass, frob / ops.square(trace), 1.0)
    return ops.where(has_mass, -ops.log(ratio), 0.0)


def _trace(k):
    return ops.trace(k, axis1=-2, axis2=-1)


def _entropy_of_psd(k, alpha, trace=None):
    """Entropy of a batch of PSD matrices (..., m, m) with the given traces."""
    if trace is None:
        trace = _trace(k)
    if alpha == 2.0:
        return _renyi2_entropy(k, trace)
    eigenvalues, _ = ops.eigh(k)
    return _entropy_from_spectrum(eigenvalues, trace, alpha)


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def gram(x, center=False, mean=None, eps=1e-6):
    """Cosine Gram matrix of the rows of `x`.

    Optionally centres the rows (`z_i - mu`), then normalises each row to unit
    length (`z_i / max(||z_i||, eps)`) and returns `K = Zhat Zhat^T`: symmetric,
    positive semi-definite, with ones on the diagonal (zeros for zero rows).

    Args:
        x: features of shape `(..., n, d)`, one row per sample.
        center: if `True`, subtract the mean row of each batch (axis `-2`)
            before normalising. Centring makes the Gram of features after a
            ReLU able to reach the Neural Collapse geometry.
        mean: optional explicit mean of shape `(d,)` or `(..., d)` (e.g. a
            global feature mean) to subtract instead of the batch mean.
            Overrides `center`.
        eps: rows with a norm below `eps` are divided by `eps`, so zero rows
            stay zero.

    Returns:
        A tensor of shape `(..., n, n)` in float32 (float64 for float64 input).

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> k = nc_ops.gram(np.eye(3, 4))
    >>> k.shape
    (3, 3)
    """
    xhat = _prepare_features(x, center, mean, eps)
    return ops.matmul(xhat, ops.swapaxes(xhat, -1, -2))


def matrix_entropy(k, alpha=1.0, normalize=False):
    """Matrix (von Neumann or Renyi) entropy of a PSD matrix, in nats.

    With `rho = k / tr(k)` and eigenvalues `l_i` of `rho`:

    - `alpha=1` (default): `H = -sum_i l_i log l_i`;
    - `alpha != 1`: Renyi entropy `log(sum_i l_i^alpha) / (1 - alpha)`;
      `alpha=2` is computed as `-log(||k||_F^2 / tr(k)^2)` without an
      eigendecomposition.

    `0 <= H <= log n`; `H = log n` iff `k` is proportional to the identity and
    `H = 0` iff `k` has rank 1. Defined values for edge cases: an all-zero
    matrix has entropy 0; eigenvalues below `1.2e-7 * max eigenvalue` (float32
    machine epsilon; `2e-15` in float64) count as zeros, so rank-deficient
    matrices give finite values and finite gradients. Orders `alpha < 1` weigh
    tiny eigenvalues heavily and are the most sensitive to this round-off.

    Args:
        k: PSD matrices of shape `(..., n, n)` (e.g. from `gram`).
        alpha: entropy order, a number > 0.
        normalize: if `True`, divide by `log n` (requires `n >= 2`), giving a
            value in `[0, 1]`.

    Returns:
        A tensor of shape `(...)`.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> float(nc_ops.matrix_entropy(np.eye(4)))  # log 4
    1.386...
    """
    alpha = _check_alpha(alpha)
    k = _as_float(k)
    shape = _check_matrix(k, "k", square=True)
    entropy = _entropy_of_psd(k, alpha)
    if normalize:
        n = shape[-1] if shape[-1] is not None else ops.shape(k)[-1]
        entropy = entropy / _log_n(n, "k")
    return entropy


def feature_entropy(x, center=False, mean=None, alpha=1.0, normalize=False, eps=1e-6):
    """Matrix entropy of the cosine Gram of `x`, computed from the cheaper side.

    Equal to `matrix_entropy(gram(x, center, mean, eps), alpha, normalize)`, but
    the eigendecomposition is of size `min(n, d)`: the non-zero eigenvalues of
    `Zhat Zhat^T` (n x n) and `Zhat^T Zhat` (d x d) coincide. When the number of
    rows `n` is not known statically, the `d x d` side is used.

    Args:
        x: features of shape `(..., n, d)`.
        center: subtract the batch mean row first (see `gram`).
        mean: explicit mean of shape `(d,)` or `(..., d)` to subtract instead.
        alpha: entropy order, a number > 0 (`matrix_entropy`).
        normalize: divide by `log n` (requires `n >= 2`).
        eps: row-norm floor (see `gram`).

    Returns:
        A tensor of shape `(...)`.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> z = np.random.default_rng(0).normal(size=(1024, 64))
    >>> h = nc_ops.feature_entropy(z)  # one 64 x 64 eigh instead of 1024 x 1024
    """
    alpha = _check_alpha(alpha)
    xhat = _prepare_features(x, center, mean, eps)
    n, d = tuple(xhat.shape)[-2:]
    trace = ops.sum(ops.square(xhat), axis=(-2, -1))
    if n is not None and d is not None and n <= d:
        k = ops.matmul(xhat, ops.swapaxes(xhat, -1, -2))
    else:
        k = ops.matmul(ops.swapaxes(xhat, -1, -2), xhat)
    entropy = _entropy_of_psd(k, alpha, trace=trace)
    if normalize:
        entropy = entropy / _log_n(n if n is not None else ops.shape(xhat)[-2], "x")
    return entropy


def effective_rank(k, alpha=1.0):
    """Effective rank `exp(H(k))` of a PSD matrix (between 1 and `n`).

    Args:
        k: PSD matrices of shape `(..., n, n)`.
        alpha: entropy order (see `matrix_entropy`).

    Returns:
        A tensor of shape `(...)`; 1 for an all-zero matrix.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> round(float(nc_ops.effective_rank(np.diag([1.0, 1.0, 0.0]))), 4)
    2.0
    """
    return ops.exp(matrix_entropy(k, alpha=alpha))


def _validated_pair(k1, k2):
    """Checks two Gram batches of the same samples and casts them to one dtype."""
    k1, k2 = _as_float(k1), _as_float(k2)
    _check_matrix(k1, "k1", square=True)
    _check_matrix(k2, "k2", square=True)
    _check_same_shape(k1, k2)
    if _dtype_name(k1) != _dtype_name(k2):
        k1, k2 = ops.cast(k1, "float64"), ops.cast(k2, "float64")
    return k1, k2


def _joint_entropies(k1, k2, alpha):
    """`H(k1), H(k2), H(k1 o k2)` of a validated pair, with one batched `eigh`."""
    entropies = _entropy_of_psd(ops.stack([k1, k2, k1 * k2], axis=0), _check_alpha(alpha))
    return entropies[0], entropies[1], entropies[2]


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
    h1, h2, h12 = _joint_entropies(*_validated_pair(k1, k2), alpha)
    return h1 + h2 - h12


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
    k1, k2 = _validated_pair(k1, k2)
    h1, h2, h12 = _joint_entropies(k1, k2, alpha)
    return _ratio_of_entropies(h1 + h2 - h12, _minimum(h1, h2), k1)


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
    alpha = _check_alpha(alpha)
    k1, k2 = _validated_pair(k1, k2)
    entropies = _entropy_of_psd(ops.stack([k1, k2], axis=0), alpha)
    h1, h2 = entropies[0], entropies[1]
    return _ratio_of_entropies(ops.abs(h1 - h2), _maximum(h1, h2), k1)
