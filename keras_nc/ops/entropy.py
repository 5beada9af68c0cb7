"""Matrix entropies: cosine Gram matrices, matrix entropy, feature entropy.

The mutual information and its ratios (MI, MIR, HDR) are in
`keras_nc.ops.information`, re-exported here.
"""

from keras import ops

from keras_nc.ops._checks import as_float, check_alpha, check_matrix, dtype_name
from keras_nc.ops._guards import guard, nan_unless
from keras_nc.ops._spectral import (
    active_rows,
    entropy_of_psd,
    log_n,
    min_side_gram,
    num_rows,
    outer_gram,
    weighted_rows,
)
from keras_nc.ops.information import (
    hdr,
    information_ratios,
    matrix_mutual_information,
    mir,
    ratios_from_entropies,
)

__all__ = [
    "effective_rank",
    "feature_entropy",
    "gram",
    "hdr",
    "information_ratios",
    "matrix_entropy",
    "matrix_mutual_information",
    "mir",
    "normalized_features",
    "ratios_from_entropies",
]

SAMPLE_WEIGHT_DOC = """Sample weights `w >= 0` (one per row) define the weighted cosine Gram
    `D^1/2 K D^1/2` (`D = diag(w)`), where `K` is the cosine Gram of the rows
    centred by the weighted mean `sum_i w_i z_i / sum_i w_i`: rows of weight 0
    leave the Gram (zero rows and columns, eigenvalues 0, `0 log 0 = 0`), so
    the value equals that of the subset of rows with positive weight, while
    positive non-uniform weights weight the rows. Multiplying all weights by a
    constant changes no entropy (`rho` divides by the trace)."""


def _weight_tensor(sample_weight, x):
    """`(..., n)` float weights matching the rows of `x` `(..., n, d)` (static checks)."""
    weight = as_float(sample_weight)
    if dtype_name(weight) != dtype_name(x):
        weight = ops.cast(weight, dtype_name(x))
    n = x.shape[-2]
    shape = tuple(weight.shape)
    if len(shape) < 1 or len(shape) > len(x.shape) - 1 or shape[-1] not in (None, n):
        raise ValueError(
            f"`sample_weight` must have shape (..., n) with n = {n}, one weight per row of "
            f"the features; received shape {shape}."
        )
    return weight


def normalized_features(x, center=False, mean=None, eps=1e-6, name="x", sample_weight=None):
    """Validated, (centred) row-normalised features `Zhat` and the guard's `ok` flag.

    The rows whose cosine Gram `gram` returns (scaled by `sqrt(w_i)` with
    `sample_weight`); eager non-finite input raises a `ValueError` naming
    `name`, eager negative weights one naming `sample_weight`.

    Args:
        x: features of shape `(..., n, d)`.
        center: subtract the batch mean row first (the weighted mean with
            `sample_weight`).
        mean: explicit mean to subtract instead.
        eps: row-norm floor (see `gram`).
        name: the argument's name in errors.
        sample_weight: optional `(..., n)` non-negative weights (see `gram`).

    Returns:
        `(xhat, ok)`, `ok` None after eager validation (see `keras_nc.ops`).
    """
    x = as_float(x)
    check_matrix(x, name, square=False)
    tensors = {name: x}
    if sample_weight is not None:
        tensors["sample_weight"] = _weight_tensor(sample_weight, x)
    checked = guard(tensors, nonnegative=("sample_weight",))
    xhat = weighted_rows(
        checked.tensors[name], checked.tensors.get("sample_weight"), center, mean, eps
    )
    return xhat, checked.ok


def gram(x, center=False, mean=None, eps=1e-6, sample_weight=None):
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
        sample_weight: optional non-negative weights of shape `(..., n)`;
            returns the weighted Gram `D^1/2 K D^1/2` (diagonal `w`). {weights}

    Returns:
        A tensor of shape `(..., n, n)` in float32 (float64 for float64 input).

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> k = nc_ops.gram(np.eye(3, 4))
    >>> tuple(k.shape)
    (3, 3)
    """
    xhat, ok = normalized_features(x, center, mean, eps, sample_weight=sample_weight)
    return nan_unless(ok, outer_gram(xhat))


gram.__doc__ = gram.__doc__.replace("{weights}", SAMPLE_WEIGHT_DOC)


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
    alpha = check_alpha(alpha)
    k = as_float(k)
    shape = check_matrix(k, "k", square=True)
    checked = guard({"k": k})
    entropy = nan_unless(checked.ok, entropy_of_psd(checked.tensors["k"], alpha))
    if normalize:
        n = shape[-1] if shape[-1] is not None else ops.shape(k)[-1]
        entropy = entropy / log_n(n, "k")
    return entropy


def feature_entropy(
    x, center=False, mean=None, alpha=1.0, normalize=False, eps=1e-6, sample_weight=None
):
    """Matrix entropy of the cosine Gram of `x`, computed from the cheaper side.

    Equal to `matrix_entropy(gram(x, center, mean, eps), alpha, normalize)`, but
    the eigendecomposition is of size `min(n, d)`: the non-zero eigenvalues of
    `Zhat Zhat^T` (n x n) and `Zhat^T Zhat` (d x d) coincide. When the number of
    rows `n` is not known statically, the `d x d` side is used. With
    `sample_weight`, the entropy of the weighted Gram (`gram`), normalised by
    `log` of the number of rows of positive weight.

    Args:
        x: features of shape `(..., n, d)`.
        center: subtract the batch mean row first (see `gram`).
        mean: explicit mean of shape `(d,)` or `(..., d)` to subtract instead.
        alpha: entropy order, a number > 0 (`matrix_entropy`).
        normalize: divide by `log n` (requires `n >= 2`; with `sample_weight`,
            `n` is the number of rows of positive weight, and fewer than 2 give 0).
        eps: row-norm floor (see `gram`).
        sample_weight: optional non-negative weights of shape `(..., n)`
            (see `gram`): rows of weight 0 leave the Gram.

    Returns:
        A tensor of shape `(...)`.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> z = np.random.default_rng(0).normal(size=(1024, 64))
    >>> h = nc_ops.feature_entropy(z)  # one 64 x 64 eigh instead of 1024 x 1024
    """
    alpha = check_alpha(alpha)
    xhat, ok = normalized_features(x, center, mean, eps, sample_weight=sample_weight)
    k, trace = min_side_gram(xhat)
    entropy = nan_unless(ok, entropy_of_psd(k, alpha, trace=trace))
    if normalize:
        n = num_rows(xhat) if sample_weight is None else active_rows(sample_weight, None)
        entropy = entropy / ops.cast(log_n(n, "x"), entropy.dtype)
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
