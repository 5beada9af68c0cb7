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
- Bad input: shapes, ranks and dtypes are checked whenever a function is
  called. Values (NaN or infinite entries, labels outside `[0, C)`, fractional
  float labels) raise a `ValueError` naming the argument in eager calls. Inside
  a compiled function (`jax.jit`, `tf.function`, the train step of `fit` on
  TensorFlow and JAX) no data-dependent error can be raised: there the results
  that depend on the bad values are NaN, the same signal a diverged loss gives
  (`keras.callbacks.TerminateOnNaN` stops on it), and the inputs are sanitised
  first so that no backend kernel fails on them.
"""

import math

import keras
from keras import ops

# Eigenvalues of `rho = K / tr K` below `_EIG_RTOL * max(eigenvalue)` are
# treated as zero: `eigh` has absolute errors of order `eps * lambda_max`
# (machine epsilon, 1.2e-7 in float32), so anything smaller is round-off.
# Orders alpha >= 1 weigh an eigenvalue `l` by `-l log l` or `l^alpha`, so the
# round-off eigenvalues that survive this cut (at most `m eps lambda_max` each
# for an m x m matrix, backward-stable `eigh`) change the entropy by at most
# about `m * delta * log(1/delta)`, `delta = m eps`. Orders alpha < 1 raise them
# to the power alpha (1e-7 becomes 3e-4 at alpha = 0.5): there the cut is the
# numerical-rank tolerance `m * eps * lambda_max` (NumPy's `matrix_rank`), above
# every round-off eigenvalue of a rank-deficient matrix, so that the result does
# not depend on which round-off a machine's LAPACK kernel produced.
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


def _matmul(a, b):
    """`ops.matmul` that keeps float64 as float64 on every backend.

    Keras 3.15's PyTorch backend promotes `float64 @ float64` to float32
    (`keras.backend.result_type("float64", "float64")` is float32 there), which
    would silently turn the float64 paths (float64 inputs, the epoch-end class
    measures) into float32 ones; `einsum` keeps the dtype.
    """
    if _dtype_name(a) == "float64" and len(a.shape) >= 2 and len(b.shape) >= 2:
        return ops.einsum("...ij,...jk->...ik", a, b)
    return ops.matmul(a, b)


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


def _is_concrete(x):
    """Whether the values of `x` are known now, so a data-dependent check can raise.

    False while a function is traced for compilation (`jax.jit`, `tf.function`,
    `torch.compile`) and for symbolic `keras.KerasTensor`s.
    """
    if isinstance(x, keras.KerasTensor):
        return False
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True


def _check_finite(x, name):
    """Raises a `ValueError` naming `name` when eager `x` holds NaN or inf values."""
    if not _is_concrete(x) or bool(ops.all(ops.isfinite(x))):
        return
    bad = int(ops.sum(ops.cast(ops.logical_not(ops.isfinite(x)), "int32")))
    if bad:
        raise ValueError(
            f"`{name}` must hold finite numbers; received {bad} NaN or infinite value(s) "
            f"in a tensor of shape {tuple(x.shape)}. Non-finite features usually mean "
            "that training diverged (check the learning rate and the loss)."
        )


def _all_finite(x, axis=None):
    return ops.all(ops.isfinite(x), axis=axis)


def _traced_finite(x, axis=None):
    """`_all_finite(x, axis)` while tracing; None for eager `x`, already validated."""
    return None if _is_concrete(x) else _all_finite(x, axis)


def _nan_where_not(ok, value):
    """`value` where `ok`, NaN elsewhere (the compiled-mode signal of bad input).

    `ok=None` (eager input, validated at the entry point) returns `value`.
    """
    return value if ok is None else ops.where(ok, value, float("nan"))


def _check_rank(x, name, rank, layout):
    shape = tuple(x.shape)
    if len(shape) != rank:
        raise ValueError(f"`{name}` must have shape {layout}; received shape {shape}.")
    return shape


def _check_width(x, name, width, other):
    """Static check that the last dimension of `x` equals `width` (that of `other`)."""
    d = x.shape[-1]
    if d is not None and width is not None and d != width:
        raise ValueError(
            f"`{name}` must have {width} columns, the width of `{other}`; "
            f"received shape {tuple(x.shape)}."
        )


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


def _ratio_of_entropies(numerator, denominator, n):
    """`numerator / denominator` for entropies of Gram matrices of `n` samples.

    Returns 0 where the denominator is at round-off level (rank-1 matrices),
    with finite gradients. `n` is a static int or a scalar tensor.
    """
    dtype = _dtype_name(denominator)
    log_n = math.log(max(n, 2)) if isinstance(n, int) else ops.log(ops.cast(n, dtype))
    floor = _ENTROPY_FLOOR[dtype] * log_n
    ok = denominator > floor
    value = ops.where(ok, numerator / ops.where(ok, denominator, 1.0), 0.0)
    if _is_concrete(value):  # eager inputs were validated: no NaN to pass on
        return value
    return _nan_where_not(ops.logical_not(ops.isnan(numerator) | ops.isnan(denominator)), value)


def _num_rows(x):
    """Static number of rows of `x` (axis -2), or a scalar tensor when unknown."""
    n = x.shape[-2]
    return n if n is not None else ops.shape(x)[-2]


def _information_ratios(h1, h2, h12, n):
    """`(MIR, HDR)` from the entropies `H(K1), H(K2), H(K1 o K2)` of `n` samples."""
    return (
        _ratio_of_entropies(h1 + h2 - h12, _minimum(h1, h2), n),
        _ratio_of_entropies(ops.abs(h1 - h2), _maximum(h1, h2), n),
    )


def _normalize_rows(x, eps):
    """`x_i / max(||x_i||, eps * max_j ||x_j||)` over the rows of each matrix of `x`.

    Scale-invariant: `x` is first divided by its largest absolute entry (a
    constant for the gradient, which the result does not depend on), so no
    square overflows or underflows for finite features of any magnitude
    (1e-30 or 1e30 in float32). Rows whose norm is below `eps` times the
    largest row norm are divided by that floor instead (zero rows stay zero,
    with finite gradients).
    """
    scale = ops.abs(x)
    scale = ops.stop_gradient(ops.max(scale, axis=(-2, -1), keepdims=True, initial=0.0))
    x = x / ops.where(scale > 0, scale, 1.0)
    sq = ops.sum(ops.square(x), axis=-1, keepdims=True)
    largest = ops.stop_gradient(ops.max(sq, axis=-2, keepdims=True, initial=0.0))
    floor = eps * eps * ops.where(largest > 0, largest, 1.0)
    return x * ops.rsqrt(_maximum(sq, floor))


def _centred(x, center, mean):
    if mean is not None:
        mean = ops.cast(ops.convert_to_tensor(mean), x.dtype)
        return x - ops.expand_dims(mean, -2)
    if center:
        return x - ops.mean(x, axis=-2, keepdims=True)
    return x


def _prepare_features(x, center, mean, eps, name="x"):
    x = _as_float(x)
    _check_matrix(x, name, square=False)
    _check_finite(x, name)
    return _normalize_rows(_centred(x, center, mean), eps)


def _cosine_gram(x, eps):
    """`Xhat Xhat^T` of the row-normalised `x` (no validation: internal callers)."""
    xhat = _normalize_rows(x, eps)
    return _matmul(xhat, ops.swapaxes(xhat, -1, -2))


def _min_side_gram(xhat):
    """The smaller of `Xhat Xhat^T` (n x n) and `Xhat^T Xhat` (d x d), and their trace.

    Both have the same non-zero eigenvalues, hence the same entropy. With `n`
    unknown statically the `d x d` side is used.
    """
    n, d = tuple(xhat.shape)[-2:]
    trace = ops.sum(ops.square(xhat), axis=(-2, -1))
    if n is not None and d is not None and n <= d:
        return _matmul(xhat, ops.swapaxes(xhat, -1, -2)), trace
    return _matmul(ops.swapaxes(xhat, -1, -2), xhat), trace


def _eigenvalue_cut(dtype, alpha, size):
    """Relative cut below which eigenvalues of an m x m matrix count as zero.

    `eps` for orders `alpha >= 1`, the numerical-rank tolerance `m * eps` for
    `alpha < 1` (see `_EIG_RTOL`).
    """
    if alpha >= 1.0:
        return _EIG_RTOL[dtype]
    return _EIG_RTOL[dtype] * max(int(size or 1), 1)


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
    tol = _eigenvalue_cut(dtype, alpha, eigenvalues.shape[-1]) * ops.max(p, axis=-1, keepdims=True)
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


def _eigenvalues(k):
    """Eigenvalues of a batch of symmetric matrices `(..., m, m)`.

    On JAX the batch is split into separate 2-D `eigh` calls. jaxlib's CPU
    kernel for a *batched* `eigh` farms the batch out to XLA's intra-op thread
    pool and blocks until it is done; two such calls running side by side in
    one XLA program (two collapse metrics in a train step) can then occupy every
    pool thread and wait for each other forever (seen with jax 0.10.2 on 2
    cores). Unbatched calls run inline and cannot deadlock.
    """
    shape = tuple(k.shape)
    if keras.backend.backend() != "jax" or len(shape) == 2:
        return ops.eigh(k)[0]
    batch = math.prod(shape[:-2])
    flat = ops.reshape(k, (batch, *shape[-2:]))
    values = [ops.eigh(flat[i])[0] for i in range(batch)]
    return ops.reshape(ops.stack(values, axis=0), (*shape[:-1],))


def _entropy_of_psd(k, alpha, trace=None):
    """Entropy of a batch of PSD matrices (..., m, m) with the given traces.

    Empty matrices (m = 0) have entropy 0. Matrices with non-finite entries
    (or a non-finite trace) get NaN; they are replaced by zeros before `eigh`,
    which fails or hangs on them in some backends.
    """
    if trace is None:
        trace = _trace(k)
    if k.shape[-1] == 0:
        return ops.zeros(tuple(k.shape)[:-2], dtype=k.dtype)
    finite = _traced_finite(k, axis=(-2, -1))
    if finite is not None:
        finite = finite & ops.isfinite(trace)
        k = ops.where(ops.expand_dims(ops.expand_dims(finite, -1), -1), k, 0.0)
        trace = ops.where(finite, trace, 0.0)
    if alpha == 2.0:
        entropy = _renyi2_entropy(k, trace)
    else:
        entropy = _entropy_from_spectrum(_eigenvalues(k), trace, alpha)
    return _nan_where_not(finite, entropy)


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def gram(x, center=False, mean=None, eps=1e-6):
    """Cosine Gram matrix of the rows of `x`.

    Optionally centres the rows (`z_i - mu`), then normalises each row to unit
    length (`z_i / max(||z_i||, eps * max_j ||z_j||)`) and returns
    `K = Zhat Zhat^T`: symmetric, positive semi-definite, with ones on the
    diagonal (zeros for zero rows). Scale-invariant: the rows are divided by
    the largest absolute entry first, so features of any finite magnitude
    (1e-30 to 1e30 in float32) give the same Gram.

    Args:
        x: features of shape `(..., n, d)`, one row per sample.
        center: if `True`, subtract the mean row of each batch (axis `-2`)
            before normalising. Centring makes the Gram of features after a
            ReLU able to reach the Neural Collapse geometry.
        mean: optional explicit mean of shape `(d,)` or `(..., d)` (e.g. a
            global feature mean) to subtract instead of the batch mean.
            Overrides `center`.
        eps: rows with a norm below `eps` times the largest row norm are
            divided by that floor instead, so zero rows stay zero.

    Returns:
        A tensor of shape `(..., n, n)` in float32 (float64 for float64 input).

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> k = nc_ops.gram(np.eye(3, 4))
    >>> tuple(k.shape)
    (3, 3)
    """
    return _cosine_gram(_prepare_features(x, center, mean, eps), eps)


def matrix_entropy(k, alpha=1.0, normalize=False):
    """Matrix (von Neumann or Renyi) entropy of a PSD matrix, in nats.

    With `rho = k / tr(k)` and eigenvalues `l_i` of `rho`:

    - `alpha=1` (default): `H = -sum_i l_i log l_i`;
    - `alpha != 1`: Renyi entropy `log(sum_i l_i^alpha) / (1 - alpha)`;
      `alpha=2` is computed as `-log(||k||_F^2 / tr(k)^2)` without an
      eigendecomposition.

    `0 <= H <= log n`; `H = log n` iff `k` is proportional to the identity and
    `H = 0` iff `k` has rank 1. Defined values for edge cases: an all-zero
    matrix and an empty `0 x 0` one have entropy 0; eigenvalues below
    `1.2e-7 * max eigenvalue` (float32 machine epsilon; `2e-15` in float64)
    count as zeros, so rank-deficient matrices give finite values and finite
    gradients. Orders `alpha < 1` raise round-off eigenvalues to the power
    `alpha` (`1e-7 ** 0.5 = 3e-4`), so for them the cut is the numerical-rank
    tolerance `n * 1.2e-7 * max eigenvalue`: round-off never counts, and true
    eigenvalues below the cut are lost (float32 accuracy of order
    `n * (n eps)**alpha / (1 - alpha)` nats in the worst case, far less for
    spectra without eigenvalues near the cut; see the Concepts page).
    Non-finite entries raise a `ValueError` in eager calls and give NaN inside
    compiled functions (see the module notes).

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
    _check_finite(k, "k")
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
    k, trace = _min_side_gram(xhat)
    entropy = _entropy_of_psd(k, alpha, trace=trace)
    if normalize:
        entropy = entropy / _log_n(_num_rows(xhat), "x")
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
    _check_finite(k1, "k1")
    _check_finite(k2, "k2")
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
    return _ratio_of_entropies(h1 + h2 - h12, _minimum(h1, h2), _num_rows(k1))


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
    k1, k2 = _validated_pair(k1, k2)
    h1, h2, h12 = _joint_entropies(k1, k2, alpha)
    return _information_ratios(h1, h2, h12, _num_rows(k1))


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
    return _ratio_of_entropies(ops.abs(h1 - h2), _maximum(h1, h2), _num_rows(k1))


# --------------------------------------------------------------------------- #
# Class statistics and the classic Neural Collapse measures
# --------------------------------------------------------------------------- #


def _check_labels(labels, num_classes, name="labels", num_samples=None):
    """Validated integer class indices `(n,)` and a scalar "all valid" flag.

    Accepts integer (or integral float) indices of shape `(n,)` or `(n, 1)`, and
    one-hot or soft labels of shape `(n, num_classes)` (reduced to their argmax).
    Shapes are checked always; values (outside `[0, num_classes)`, fractional)
    raise in eager calls. Returns the indices clipped into range, so that no
    gather or one-hot fails inside a compiled function, and a boolean flag that
    is False when some value was invalid (callers then return NaN).
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer; received {num_classes!r}.")
    try:
        labels = ops.convert_to_tensor(labels)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{name}` must be a tensor of integer class indices; received {type(labels).__name__} "
            f"that does not convert to a numeric tensor ({error})."
        ) from error
    shape = tuple(labels.shape)
    if len(shape) == 2 and shape[-1] == 1:
        labels = ops.squeeze(labels, -1)
    elif len(shape) == 2 and shape[-1] == num_classes:
        labels = ops.argmax(labels, axis=-1)  # one-hot or soft labels
    if len(labels.shape) != 1:
        raise ValueError(
            f"`{name}` must hold integer class indices of shape (n,) or (n, 1), or one-hot "
            f"rows of shape (n, {num_classes}); received shape {shape}."
        )
    if num_samples is not None and labels.shape[0] is not None and labels.shape[0] != num_samples:
        raise ValueError(
            f"`{name}` must hold one label per row of the features ({num_samples}); "
            f"received {labels.shape[0]} labels."
        )
    dtype = _dtype_name(labels)
    if dtype == "bool":
        labels = ops.cast(labels, "int32")
    elif "float" in dtype:
        labels = ops.cast(labels, "float32")
        integral = ops.all(ops.floor(labels) == labels)
        if _is_concrete(labels) and not bool(integral):
            raise ValueError(
                f"`{name}` must hold integer class indices; received fractional values in a "
                f"float tensor of dtype {dtype}."
            )
    elif "int" not in dtype:
        raise ValueError(
            f"`{name}` must be a tensor of integer class indices; received dtype {dtype}."
        )
    in_range = ops.all((labels >= 0) & (labels < num_classes))
    if _is_concrete(labels) and not bool(in_range):
        low, high = ops.convert_to_numpy(ops.min(labels)), ops.convert_to_numpy(ops.max(labels))
        raise ValueError(
            f"`{name}` must hold class indices in [0, {num_classes}); received values from "
            f"{low} to {high}."
        )
    valid = in_range & integral if "float" in dtype else in_range
    labels = ops.cast(ops.clip(labels, 0, num_classes - 1), "int32")
    return labels, valid


def _check_features(features, name="features"):
    features = _as_float(features)
    _check_rank(features, name, 2, "(n, d)")
    _check_finite(features, name)
    return features


def _check_head(head_weights, features, name="head_weights"):
    head = _as_float(head_weights)
    _check_rank(head, name, 2, "(num_classes, d)")
    _check_width(head, name, features.shape[-1], "features")
    _check_finite(head, name)
    if head.shape[0] is None:
        raise ValueError(f"`{name}` must have a static number of rows (num_classes).")
    return head


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
    x = _as_float(x)
    largest = ops.cast(ops.max(ops.abs(x), initial=0.0), "float32")
    finite = ops.isfinite(largest) & (largest > 0)
    exponent = ops.ceil(ops.log2(ops.where(finite, largest, 1.0)))
    return ops.stop_gradient(exponent)


def class_statistics(
    features, labels, num_classes, sample_weight=None, second_moment=True, exponent=None
):
    """Mergeable per-class sums of a batch of features.

    Sums over batches (or devices) give the statistics of the concatenated
    data, from which `class_means`, `neural_collapse_measures` and the class
    pairing of `mir`/`hdr` are computed. All of these are scale-invariant, so
    statistics of scaled features (`exponent`) give the same measures; in
    float32, squared norms of features beyond about 1e19 (or below 1e-19)
    overflow (underflow) unless the features are scaled.

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
    features = _check_features(features)
    labels, valid = _check_labels(labels, num_classes, num_samples=features.shape[0])
    auto = isinstance(exponent, str)
    if auto:
        if exponent != "auto":
            raise ValueError(f'`exponent` must be None, a number or "auto"; received {exponent!r}.')
        exponent = scale_exponent(features)
    if exponent is not None:
        factor = ops.power(2.0, -ops.cast(exponent, "float32"))
        features = features * ops.cast(factor, features.dtype)
    if sample_weight is None:
        weight = ops.ones((ops.shape(features)[0],), dtype=features.dtype)
    else:
        weight = ops.cast(_check_sample_weight(sample_weight, features.shape[0]), features.dtype)
    weighted = features * ops.expand_dims(weight, -1)
    # Invalid labels in a compiled step make every statistic NaN (eager calls raise).
    poison = ops.cast(ops.where(valid, 0.0, float("nan")), features.dtype)

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
    per_class = ops.scatter_update(
        ops.zeros((num_classes, columns.shape[-1]), dtype=columns.dtype),
        ops.expand_dims(labels, -1),
        columns,
        reduction="add",
    )
    per_class = per_class + poison
    stats = {"counts": per_class[:, 0], "sq_norms": per_class[:, 1], "sums": per_class[:, 2:]}
    if second_moment:
        stats["second_moment"] = _matmul(ops.transpose(weighted), features) + poison
    if auto:
        stats["exponent"] = exponent
    return stats


def _check_sample_weight(sample_weight, num_samples):
    weight = _as_float(sample_weight)
    if len(weight.shape) == 2 and weight.shape[-1] == 1:
        weight = ops.squeeze(weight, -1)
    if len(weight.shape) != 1 or (
        num_samples is not None and weight.shape[0] not in (None, num_samples)
    ):
        raise ValueError(
            f"`sample_weight` must have shape (n,) with n = {num_samples}, one weight per "
            f"sample; received shape {tuple(ops.shape(sample_weight))}."
        )
    if _is_concrete(weight) and not bool(ops.all(ops.isfinite(weight) & (weight >= 0))):
        raise ValueError("`sample_weight` must hold finite, non-negative numbers.")
    return weight


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
    counts, sums = _as_float(counts), _as_float(sums)
    finite = _all_finite(counts) & _all_finite(sums)
    present = counts > 0
    safe = ops.where(present, counts, 1.0)
    means = sums / ops.expand_dims(safe, -1)
    means = ops.where(ops.expand_dims(present, -1), means, 0.0)
    total = ops.sum(counts)
    global_mean = ops.sum(sums, axis=0) / ops.where(total > 0, total, 1.0)
    return _nan_where_not(finite, means), _nan_where_not(finite, global_mean), present


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
    return _cosine_gram(rows_m, 1e-6), _cosine_gram(rows_w, 1e-6)


def _class_pairing_rows(counts, sums, head_weights, center):
    """The rows whose cosine Grams the class pairing compares: `(means, head rows)`."""
    means, global_mean, present = class_means(counts, sums)
    head = _as_float(head_weights)
    _check_rank(head, "head_weights", 2, "(num_classes, d)")
    head = _nan_where_not(_all_finite(head), ops.cast(head, means.dtype))
    mask = ops.expand_dims(ops.cast(present, means.dtype), -1)
    centred = (means - global_mean) * mask if center else means
    return centred, head * mask


def class_pairing_ratios(counts, sums, head_weights, center=True, alpha=1.0):
    """`(MIR, HDR)` of the class pairing, from class statistics and head rows.

    Equal to `information_ratios(*class_pairing_grams(counts, sums, head_weights,
    center))`, with `H(K_M)` and `H(K_W)` from their `min(C', d)` sides, for
    statistics accumulated over an epoch (e.g. by the class-pairing metrics).
    Like `neural_collapse_measures`, it never raises on the values: statistics or
    head rows holding NaN or inf (a compiled step that saw bad input) give NaN;
    it computes in float64 where the backend has it and, called eagerly, on the
    classes present only (`C' x C'` eigendecompositions, not `C x C`).

    Args:
        counts: `(C,)` per-class counts.
        sums: `(C, d)` per-class feature sums.
        head_weights: `(C, d)` classifier rows.
        center: centre the class means by the global mean.
        alpha: entropy order.

    Returns:
        A tuple of two scalar tensors, `(mir, hdr)`.
    """
    arrays, finite = _finite_or_zero({"counts": counts, "sums": sums, "head_weights": head_weights})
    dtype = _statistics_dtype()
    arrays = {name: ops.cast(value, dtype) for name, value in arrays.items()}
    arrays, _ = _rows_of_present_classes(arrays["counts"], arrays)
    rows_m, rows_w = _class_pairing_rows(
        arrays["counts"], arrays["sums"], arrays["head_weights"], center=center
    )
    # H(K_M) and H(K_W) from their min(C', d) sides; only the Hadamard product
    # needs a C' x C' eigendecomposition (one, not three; and none of a C' x C'
    # matrix of rank d < C', whose repeated zero eigenvalues some LAPACK
    # kernels fail to converge on).
    alpha = _check_alpha(alpha)
    what = _normalize_rows(rows_w, 1e-6)
    mhat = _normalize_rows(rows_m, 1e-6)
    entropies = []
    for rows in (mhat, what):
        k, trace = _min_side_gram(rows)
        entropies.append(_entropy_of_psd(k, alpha, trace=trace))
    joint = _matmul(mhat, ops.transpose(mhat)) * _matmul(what, ops.transpose(what))
    h_mw = _entropy_of_psd(joint, alpha)
    mir_value, hdr_value = _information_ratios(*entropies, h_mw, _num_rows(mhat))
    return _nan_where_not(finite, mir_value), _nan_where_not(finite, hdr_value)


def _finite_or_zero(arrays):
    """Float tensors of `arrays` with non-finite content zeroed, and a finite flag.

    For statistics consumers (`class_pairing_ratios`, `neural_collapse_measures`):
    the zeros keep `eigh` away from NaN; callers return NaN where not finite.
    """
    arrays = {name: _as_float(value) for name, value in arrays.items()}
    finite = None
    for value in arrays.values():
        ok = _all_finite(value)
        finite = ok if finite is None else finite & ok
    return {name: ops.where(finite, value, 0.0) for name, value in arrays.items()}, finite


def _statistics_dtype():
    """The widest float the backend computes in: float64, or float32 on JAX without x64."""
    if keras.backend.backend() == "jax":
        import jax

        return "float64" if jax.config.jax_enable_x64 else "float32"
    return "float64"


def _eps(dtype):
    return 2.0**-52 if dtype == "float64" else 2.0**-23


def _rows_of_present_classes(counts, arrays):
    """Eager statistics: the rows of the classes present only (C' x d instead of C x d).

    Classes absent from the data take no part in any measure; dropping them
    keeps the factorisations at the size of the data (a 10,000-class head
    seen for a few steps) and away from blocks of exactly repeated zeros. While
    traced (static shapes) the rows are kept and masked instead.
    """
    if not _is_concrete(counts):
        return arrays, ops.cast(counts > 0, counts.dtype)
    import numpy as np

    present = ops.convert_to_numpy(counts) > 0
    # At least two rows (absent ones, masked) so that every shape stays valid.
    padding = np.flatnonzero(~present)[: max(0, 2 - int(present.sum()))]
    rows = np.sort(np.concatenate([np.flatnonzero(present), padding]))
    arrays = {name: ops.take(value, rows, axis=0) for name, value in arrays.items()}
    return arrays, ops.convert_to_tensor(present[rows].astype(_dtype_name(counts)))


def _nc1(centred, means, counts, second, total):
    """`tr(Sigma_W Sigma_B^+) / C'` from the singular vectors of the centred means `M`.

    `Sigma_B^+ = C' V S^-2 V^T` with `M = U S V^T`, so NC1 is
    `sum_k v_k^T Sigma_W v_k / s_k^2` over the singular values above the
    round-off cut `max(C', d) * eps * s_max` (NumPy's `pinv`/`matrix_rank`
    convention). Working with `M` itself, not `M M^T`, keeps the condition
    number from being squared (and squared again by a pseudo-inverse of
    `M M^T` taken twice).
    """
    dtype = _dtype_name(centred)
    _, singular, vt = ops.svd(centred, full_matrices=False)  # vt: (k, d)
    size = max(int(centred.shape[0] or 1), int(centred.shape[1] or 1))
    cut = size * _eps(dtype) * ops.max(singular)
    keep = singular > cut
    # v^T Sigma_W v = (v^T S2 v - sum_c N_c (v . mu_c)^2) / N
    along_second = ops.sum(_matmul(vt, second) * vt, axis=-1)
    along_means = _matmul(means, ops.transpose(vt))  # (C', k)
    between = ops.sum(ops.expand_dims(counts, -1) * ops.square(along_means), axis=0)
    within = _maximum((along_second - between) / total, ops.zeros_like(between))
    safe = ops.where(keep, singular, 1.0)
    return ops.sum(ops.where(keep, within / ops.square(safe), 0.0))


def neural_collapse_measures(statistics, head_weights=None):
    """The classic Neural Collapse measures from `class_statistics` sums.

    With `N` samples, class means `mu_c`, global mean `mu_G`, centred means
    `M` (rows `mu_c - mu_G` of the `C'` classes present), within-class covariance
    `Sigma_W = 1/N sum_i (z_i - mu_{y_i})(z_i - mu_{y_i})^T` and between-class
    covariance `Sigma_B = M^T M / C'`:

    - `nc1`: `tr(Sigma_W Sigma_B^+) / C'` (Papyan, Han and Donoho, 2020),
      from the singular value decomposition of `M` (no `d x d` pseudo-inverse,
      no squared condition number); only when the statistics hold
      `second_moment`. `Sigma_B^+` is the Moore-Penrose pseudo-inverse: between-class
      directions with a singular value at round-off level (below
      `max(C', d) * eps * s_max`) are left out, as NumPy's `pinv` does. A truly
      degenerate direction (class means that do not span it) then contributes
      nothing; a direction that is merely small contributes its full, large
      `within / s^2` ratio, which is why NC1 of ill-conditioned means is large;
    - `cdnv`: class-distance normalised variance (Galanti et al., 2022),
      the mean over pairs of classes of `(Var_c + Var_c') / (2 ||mu_c - mu_c'||^2)`;
    - `etf_error` (NC2): `|| M M^T / ||M M^T||_F - (I - 11^T/C') / sqrt(C'-1) ||_F`;
    - `equinorm` (NC2): coefficient of variation (std / mean) of `||mu_c - mu_G||`;
    - `self_duality` (NC3, needs `head_weights`):
      `|| W / ||W||_F - M / ||M||_F ||_F^2` over the classes present.

    All are 0 at Neural Collapse. With fewer than two classes present (a
    single-class or empty epoch) the measures are 0. When all centred class
    means are zero (e.g. all-zero features) `etf_error` is 1, the distance of
    the zero matrix from the normalised ETF, and the others are 0. Non-finite statistics or
    head rows (a compiled step that saw bad input) give NaN.

    Precision: computed in float64 where the backend has it (TensorFlow,
    PyTorch; JAX with `jax_enable_x64`), else float32. Called eagerly (as the
    metrics do at the end of an epoch), only the classes present are used, so
    the cost is that of the classes in the data: one SVD of `C' x d` for NC1
    and `C' x C'` products for the others.

    Args:
        statistics: a dict from `class_statistics` (or sums of several).
        head_weights: optional `(C, d)` classifier rows.

    Returns:
        A dict of scalar tensors.
    """
    # Non-finite statistics (a compiled step saw bad input) give NaN measures;
    # they are zeroed first so that no factorisation sees them.
    names = ["counts", "sums", "sq_norms"] + (
        ["second_moment"] if "second_moment" in statistics else []
    )
    arrays = {name: statistics[name] for name in names}
    if head_weights is not None:
        arrays["head_weights"] = head_weights
    arrays, finite = _finite_or_zero(arrays)
    dtype = _statistics_dtype()
    arrays = {name: ops.cast(value, dtype) for name, value in arrays.items()}
    per_class = {name: arrays[name] for name in ("counts", "sums", "sq_norms", "head_weights")
                 if name in arrays}  # fmt: skip
    per_class, mask = _rows_of_present_classes(arrays["counts"], per_class)
    counts, sums, sq_norms = per_class["counts"], per_class["sums"], per_class["sq_norms"]
    present = mask > 0
    num_present = ops.sum(mask)
    two_or_more = num_present >= 2
    c_safe = ops.where(two_or_more, num_present, 2.0)
    total = ops.sum(counts)
    total_safe = ops.where(total > 0, total, 1.0)
    safe_counts = ops.where(present, counts, 1.0)
    means = ops.where(ops.expand_dims(present, -1), sums / ops.expand_dims(safe_counts, -1), 0.0)
    global_mean = ops.sum(sums, axis=0) / total_safe
    centred = (means - global_mean) * ops.expand_dims(mask, -1)  # (C', d)

    result = {}
    if "second_moment" in arrays:
        nc1 = _nc1(centred, means, counts, arrays["second_moment"], total_safe)
        result["nc1"] = ops.where(two_or_more, nc1, 0.0)

    # CDNV over pairs of present classes. Distances from the centred means
    # (smaller norms than the raw means: less cancellation in sq + sq - 2 <,>).
    variances = sq_norms / safe_counts - ops.sum(ops.square(means), axis=-1)
    variances = ops.where(present, _maximum(variances, ops.zeros_like(variances)), 0.0)
    gram_m = _matmul(centred, ops.transpose(centred))  # M M^T
    sq = ops.diagonal(gram_m)
    dist2 = ops.expand_dims(sq, 0) + ops.expand_dims(sq, 1) - 2.0 * gram_m
    pair = ops.expand_dims(mask, 0) * ops.expand_dims(mask, 1)
    pair = pair * (1.0 - ops.eye(ops.shape(mask)[0], dtype=dtype))
    dist2 = _maximum(dist2, ops.zeros_like(dist2))
    ratio = (ops.expand_dims(variances, 0) + ops.expand_dims(variances, 1)) / (
        2.0 * ops.where(dist2 > 0, dist2, 1.0)
    )
    ratio = ops.where((pair > 0) & (dist2 > 0), ratio, 0.0)
    num_pairs = ops.sum(pair)
    cdnv = ops.where(two_or_more, ops.sum(ratio) / ops.where(num_pairs > 0, num_pairs, 1.0), 0.0)

    # NC2: ETF error and equinorm.
    frob = ops.sqrt(ops.sum(ops.square(gram_m)))
    target = (
        (ops.eye(ops.shape(mask)[0], dtype=dtype) - ops.ones_like(gram_m) / c_safe)
        * ops.expand_dims(mask, 0)
        * ops.expand_dims(mask, 1)
        / ops.sqrt(c_safe - 1.0)
    )
    etf = ops.sqrt(ops.sum(ops.square(gram_m / ops.where(frob > 0, frob, 1.0) - target)))
    etf = ops.where(two_or_more, etf, 0.0)
    norms = ops.sqrt(_maximum(sq, ops.zeros_like(sq)))
    mean_norm = ops.sum(norms) / c_safe
    std_norm = ops.sqrt(ops.sum(mask * ops.square(norms - mean_norm)) / c_safe)
    equinorm = ops.where(
        two_or_more & (mean_norm > 0), std_norm / ops.where(mean_norm > 0, mean_norm, 1.0), 0.0
    )

    result.update(cdnv=cdnv, etf_error=etf, equinorm=equinorm)
    if head_weights is not None:
        head = per_class["head_weights"] * ops.expand_dims(mask, -1)
        w_norm = ops.sqrt(ops.sum(ops.square(head)))
        m_norm = ops.sqrt(ops.sum(ops.square(centred)))
        diff = head / ops.where(w_norm > 0, w_norm, 1.0) - centred / ops.where(
            m_norm > 0, m_norm, 1.0
        )
        result["self_duality"] = ops.where(two_or_more, ops.sum(ops.square(diff)), 0.0)
    return {name: _nan_where_not(finite, value) for name, value in result.items()}


def ncc_agreement(features, logits, means, present=None, means_exponent=None):
    """Fraction of samples whose classifier argmax equals the nearest class mean (NC4).

    Args:
        features: `(n, d)` features.
        logits: `(n, C)` classifier outputs.
        means: `(C, d)` class means (e.g. from `class_means`).
        present: optional `(C,)` boolean mask; absent classes are never nearest.
        means_exponent: optional `e` when `means` are those of
            `features * 2**-e` (statistics taken with `class_statistics(...,
            exponent=e)`).

    Returns:
        A scalar tensor in `[0, 1]` (1 at Neural Collapse); 0 for an empty batch.
        Non-finite features or logits raise in eager calls and give NaN inside
        compiled functions, as do non-finite means.
    """
    features = _check_features(features)
    logits = _as_float(logits)
    _check_rank(logits, "logits", 2, "(n, num_classes)")
    _check_finite(logits, "logits")
    means = _as_float(means)
    _check_rank(means, "means", 2, "(num_classes, d)")
    _check_width(means, "means", features.shape[-1], "features")
    finite = _traced_finite(features)
    if finite is not None or not bool(_all_finite(means)):
        finite = _all_finite(features) & _all_finite(logits) & _all_finite(means)
        features, logits, means = (ops.where(finite, x, 0.0) for x in (features, logits, means))
    means = ops.cast(means, features.dtype)
    if means_exponent is not None:  # means of features * 2**-means_exponent
        features = features * ops.cast(ops.power(2.0, -means_exponent), features.dtype)
    # One power-of-two scale for both, so that no square overflows (scale-invariant).
    scale = ops.maximum(scale_exponent(features), scale_exponent(means))
    factor = ops.cast(ops.power(2.0, -scale), features.dtype)
    features, means = features * factor, means * factor
    dist = ops.sum(ops.square(means), axis=-1) - 2.0 * _matmul(features, ops.transpose(means))
    if present is not None:
        dist = ops.where(ops.expand_dims(present, 0), dist, float("inf"))
    agree = ops.cast(ops.argmin(dist, axis=-1) == ops.argmax(logits, axis=-1), features.dtype)
    n = ops.cast(ops.shape(features)[0], features.dtype)
    return _nan_where_not(finite, ops.sum(agree) / _maximum(n, ops.ones_like(n)))


def sample_head_grams(features, labels, head_weights, center=True, mean=None):
    """Gram matrices of the sample-head pairing.

    `K_Z` is the cosine Gram of the (centred) batch features and `K_W` that of
    the head rows picked by the labels, `w_{y_1}, ..., w_{y_n}`.

    Args:
        features: `(n, d)` features.
        labels: `(n,)` integer labels in `[0, C)` (or `(n, 1)`, or one-hot).
        head_weights: `(C, d)` classifier rows (a `Dense` kernel transposed).
        center: centre the features by the batch mean.
        mean: explicit feature mean to subtract instead.

    Returns:
        `(K_Z, K_W)`, two `(n, n)` Gram matrices. Labels outside `[0, C)` raise
        in eager calls and make `K_W` NaN inside compiled functions.
    """
    features = _check_features(features)
    head = _check_head(head_weights, features)
    labels, valid = _check_labels(labels, head.shape[0], num_samples=features.shape[0])
    if _is_concrete(labels):
        valid = None  # eager: validated above
    k_z = _cosine_gram(_centred(features, center, mean), 1e-6)
    return k_z, _nan_where_not(valid, _cosine_gram(ops.take(head, labels, axis=0), 1e-6))


def _sample_head_inputs(features, labels, head_weights, center, mean):
    """Validated inputs of the sample-head pairing: `(zhat, what, labels, valid)`.

    `zhat` are the (centred) row-normalised features, `what` the row-normalised
    head rows, `labels` clipped indices and `valid` the compiled-mode flag
    (None for eager calls, validated here).
    """
    features = _check_features(features)
    head = _check_head(head_weights, features)
    labels, valid = _check_labels(labels, head.shape[0], num_samples=features.shape[0])
    if _is_concrete(labels):
        valid = None
    zhat = _normalize_rows(_centred(features, center, mean), 1e-6)
    return zhat, _normalize_rows(head, 1e-6), labels, valid


def _label_head_gram(what, labels):
    """A matrix with the non-zero spectrum of `K_W`, on its smallest side, and its trace.

    `K_W = S What What^T S^T` (`S` the n x C one-hot labels) shares its non-zero
    eigenvalues with `D^1/2 What What^T D^1/2` (C x C, `D` the class counts) and
    with `What^T D What` (d x d): the smallest of n, C and d is used.
    """
    num_classes, d = tuple(what.shape)
    n = labels.shape[0]
    counts = ops.sum(ops.one_hot(labels, num_classes, dtype=what.dtype), axis=0)
    trace = ops.sum(counts * ops.sum(ops.square(what), axis=-1))
    sides = {"classes": num_classes, "width": d, "samples": math.inf if n is None else n}
    side = min(sides, key=sides.get)
    if side == "classes":
        root = ops.sqrt(counts)  # labels carry no gradient
        gram = _matmul(what, ops.transpose(what))
        return gram * ops.expand_dims(root, -1) * ops.expand_dims(root, 0), trace
    if side == "width":
        return _matmul(ops.transpose(what) * ops.expand_dims(counts, 0), what), trace
    picked = ops.take(what, labels, axis=0)
    return _matmul(picked, ops.transpose(picked)), trace


def _sample_head_entropies(zhat, what, labels, valid, alpha, h_z=None):
    """`H(K_Z), H(K_W), H(K_Z o K_W)` from `_sample_head_inputs`; `h_z` if known.

    Only the Hadamard product needs an n x n eigendecomposition: `K_Z` uses
    its min(n, d) side and `K_W` its min(n, C, d) side.
    """
    if h_z is None:
        k_z, trace_z = _min_side_gram(zhat)
        h_z = _entropy_of_psd(k_z, alpha, trace=trace_z)
    k_w, trace_w = _label_head_gram(what, labels)
    h_w = _entropy_of_psd(k_w, alpha, trace=trace_w)
    picked = ops.take(what, labels, axis=0)
    joint = _matmul(zhat, ops.transpose(zhat)) * _matmul(picked, ops.transpose(picked))
    h_zw = _entropy_of_psd(joint, alpha)
    return h_z, _nan_where_not(valid, h_w), _nan_where_not(valid, h_zw)


def sample_head_entropies(features, labels, head_weights, center=True, mean=None, alpha=1.0):
    """Entropies `H(K_Z), H(K_W), H(K_Z o K_W)` of the sample-head pairing.

    The same values as `matrix_entropy` of the two matrices of
    `sample_head_grams` and of their Hadamard product, computed from the cheapest
    side of each: `K_Z` from its `min(n, d)` side, `K_W` (rank at most `C`) from
    the class Gram of the head rows weighted by the class counts in the batch
    (`min(n, C, d)` side); only `K_Z o K_W` needs an n x n eigendecomposition.

    Args:
        features: `(n, d)` features.
        labels: `(n,)` integer labels in `[0, C)` (or `(n, 1)`, or one-hot).
        head_weights: `(C, d)` classifier rows.
        center: centre the features by the batch mean.
        mean: explicit feature mean to subtract instead.
        alpha: entropy order (see `matrix_entropy`).

    Returns:
        A tuple of three scalar tensors, in nats.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> rng = np.random.default_rng(0)
    >>> z, w = rng.normal(size=(64, 16)), rng.normal(size=(10, 16))
    >>> h_z, h_w, h_zw = nc_ops.sample_head_entropies(z, rng.integers(0, 10, 64), w)
    """
    alpha = _check_alpha(alpha)
    zhat, what, labels, valid = _sample_head_inputs(features, labels, head_weights, center, mean)
    return _sample_head_entropies(zhat, what, labels, valid, alpha)


def sample_head_ratios(features, labels, head_weights, center=True, mean=None, alpha=1.0):
    """`(MIR, HDR)` of the sample-head pairing, from `sample_head_entropies`.

    Equal to `information_ratios(*sample_head_grams(features, labels,
    head_weights, center, mean), alpha)`, with one n x n eigendecomposition
    instead of three. This is what the `MIR`/`HDR` metrics and the
    `InformationRegularizer` compute.

    Args:
        features: `(n, d)` features.
        labels: `(n,)` integer labels in `[0, C)` (or `(n, 1)`, or one-hot).
        head_weights: `(C, d)` classifier rows.
        center: centre the features by the batch mean.
        mean: explicit feature mean to subtract instead.
        alpha: entropy order (see `matrix_entropy`).

    Returns:
        A tuple of two scalar tensors, as `mir` and `hdr` return them.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> rng = np.random.default_rng(0)
    >>> z, w = rng.normal(size=(64, 16)), rng.normal(size=(10, 16))
    >>> mir, hdr = nc_ops.sample_head_ratios(z, rng.integers(0, 10, 64), w)
    """
    h_z, h_w, h_zw = sample_head_entropies(features, labels, head_weights, center, mean, alpha)
    return _information_ratios(h_z, h_w, h_zw, _num_rows(_as_float(features)))


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
    """
    features = _check_features(features)
    anchors = _check_head(anchors, features, name="anchors")
    num_classes = anchors.shape[0]
    n = features.shape[0]
    labels, valid = _check_labels(labels, num_classes, num_samples=n)
    if n == 0:
        return ops.zeros((), dtype=features.dtype)
    # Compiled steps: non-finite inputs or invalid labels give NaN (eager raises).
    if _is_concrete(features):
        valid = None  # eager: validated above
    else:
        valid = valid & _all_finite(features) & _all_finite(anchors)
        features, anchors = ops.where(valid, features, 0.0), ops.where(valid, anchors, 0.0)
    features, anchors = _normalize_rows(features, eps), _normalize_rows(anchors, eps)
    slots = num_classes if n is None else min(num_classes, n)
    dtype = features.dtype

    # Present classes, packed into the first slots (static shape `slots`).
    counts = ops.sum(ops.one_hot(labels, num_classes, dtype=dtype), axis=0)  # (C,)
    present = counts > 0
    order = ops.cast(present, dtype) * 2.0 - ops.arange(num_classes, dtype=dtype) / num_classes
    _, slot_class = ops.top_k(order, k=slots)  # present classes first
    slot_valid = ops.take(ops.cast(present, dtype), slot_class)  # (P,)

    # Rows: the n samples, then the P slot anchors; `blocks[i, p]` = row i in group p.
    rows = ops.concatenate([features, ops.take(anchors, slot_class, axis=0)], axis=0)
    sample_blocks = ops.cast(ops.expand_dims(labels, 1) == ops.expand_dims(slot_class, 0), dtype)
    blocks = ops.concatenate([sample_blocks, ops.eye(slots, dtype=dtype)], axis=0)  # (n+P, P)
    same_block = _matmul(blocks, ops.transpose(blocks))
    matrix = _matmul(rows, ops.transpose(rows)) * same_block  # block diagonal (permuted)

    eigenvalues, eigenvectors = ops.eigh(matrix)
    eigenvalues = ops.stop_gradient(eigenvalues)
    eigenvectors = ops.stop_gradient(eigenvectors)
    # share[k, p]: the part of eigenvector k in block p (0 or 1 unless groups
    # share the eigenvalue); quotient[k, p]: its Rayleigh quotient on block p,
    # whose gradient is the eigenvalue's gradient restricted to the block.
    share = _matmul(ops.transpose(ops.square(eigenvectors)), blocks)  # (n+P, P)
    quotient = _matmul(
        ops.transpose(eigenvectors * _matmul(matrix, eigenvectors)), blocks
    )  # (n+P, P), equal to share * eigenvalue
    trace = _matmul(ops.diagonal(matrix), blocks)  # (P,)

    has_mass = trace > 0
    trace_safe = ops.where(has_mass, trace, 1.0)
    p = ops.clip(ops.expand_dims(eigenvalues, -1) / trace_safe, 0.0, 1.0)  # (n+P, P)
    tol = _EIG_RTOL[_dtype_name(p)] * ops.max(share * p, axis=0, keepdims=True)
    keep = (p > tol) & (share > 0)
    p_safe = ops.where(keep, p, 1.0)
    log_p = ops.log(p_safe)
    value = ops.where(keep, -share * p_safe * log_p, 0.0)
    # d(-p log p)/d(eigenvalue) = -(log p + 1) / trace, applied to the quotient.
    slope = ops.stop_gradient(ops.where(keep, -(log_p + 1.0) / trace_safe, 0.0))
    surrogate = slope * (quotient - ops.stop_gradient(quotient))
    entropy = ops.sum(value + surrogate, axis=0)  # (P,)

    group_size = ops.sum(blocks, axis=0)
    log_m = ops.log(ops.where(group_size >= 2, group_size, 2.0))
    normalized = ops.where(has_mass, entropy / log_m, 0.0) * slot_valid
    num_valid = ops.sum(slot_valid)
    return _nan_where_not(valid, ops.sum(normalized) / ops.where(num_valid > 0, num_valid, 1.0))
