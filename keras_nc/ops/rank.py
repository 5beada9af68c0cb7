"""Representation rank: RankMe (Garrido et al. 2023) and alpha-ReQ (Agrawal et al. 2022).

Both read the spectrum of the feature matrix `Z` `(n, d)` through the smaller
of its two Grams (`Z Z^T`, n x n, or `Z^T Z`, d x d: the same non-zero
eigenvalues `lambda_k = s_k^2`), so the eigendecomposition is of size
`min(n, d)`; functions ending in `_of_gram` take such a Gram directly (e.g. a
second moment summed over batches).

Round-off: eigenvalues at or below the numerical-rank tolerance
`m * eps * lambda_max` (`m` the Gram's size, `eps` the machine epsilon of
the dtype; NumPy's `matrix_rank` convention, as the library's entropies of
order < 1 use) count as zeros. RankMe takes square roots, which would turn an
eigenvalue of `eps * lambda_max` into a singular value of `sqrt(eps) * s_max`
(3e-4 in float32), and alpha-ReQ takes logarithms, which would let round-off
dominate the fit; both are kept out.
"""

from keras import ops

from keras_nc.ops._guards import as_float, check_matrix, dtype_name, guard, nan_unless
from keras_nc.ops._spectral import (
    centred,
    eigenvalue_cut,
    eigenvalues,
    entropy_from_spectrum,
    largest,
    min_side_gram,
)


def _scaled_features(features, center, name="features"):
    """Validated features (centred when asked) divided by their largest magnitude."""
    x = as_float(features)
    check_matrix(x, name, square=False)
    checked = guard({name: x})
    x = centred(checked.tensors[name], center, None)
    # RankMe and alpha-ReQ are scale-invariant; dividing by max |z| keeps squares in range.
    scale = ops.stop_gradient(largest(ops.abs(x), axis=(-2, -1), keepdims=True))
    return x / ops.where(scale > 0, scale, 1.0), checked.ok


def _kept_spectrum(k):
    """Eigenvalues of the PSD `k` `(..., m, m)`, clipped at 0, and the mask of those that count."""
    values = eigenvalues(k)
    values = ops.where(values > 0, values, 0.0)
    size = k.shape[-1]
    cut = eigenvalue_cut(dtype_name(values), 0.5, size) * largest(values, axis=-1, keepdims=True)
    keep = values > cut
    return ops.where(keep, values, 0.0), keep


def _check_gram(k):
    k = as_float(k)
    check_matrix(k, "k", square=True)
    checked = guard({"k": k})
    return checked.tensors["k"], checked.ok


def rank_me_of_gram(k):
    """RankMe of a feature matrix `Z` from its Gram `k = Z^T Z` (or `Z Z^T`).

    With `s_k = sqrt(lambda_k)` the singular values of `Z` (eigenvalues of `k`
    above the round-off cut, see the module notes) and `p_k = s_k / sum_j s_j`,
    `RankMe = exp(-sum_k p_k log p_k)`.

    Args:
        k: PSD matrices `(..., m, m)`.

    Returns:
        A tensor of shape `(...)` in `[1, m]`; 1 for an all-zero matrix
        (entropy 0) and for rank 1.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> round(float(nc_ops.rank_me_of_gram(np.diag([4.0, 4.0, 0.0]))), 4)
    2.0
    """
    k, ok = _check_gram(k)
    if k.shape[-1] == 0:
        return nan_unless(ok, ops.ones(tuple(k.shape)[:-2], dtype=k.dtype))
    values, _ = _kept_spectrum(k)
    singular = ops.sqrt(values)
    entropy = entropy_from_spectrum(singular, ops.sum(singular, axis=-1), 1.0)
    return nan_unless(ok, ops.exp(entropy))


def rank_me(features, center=False):
    """RankMe (Garrido et al. 2023): the exponential of the entropy of the singular values.

    `p_k = s_k / sum_j s_j` for the singular values `s_k` of the `(n, d)`
    feature matrix and `RankMe = exp(-sum_k p_k log p_k)`, a smooth rank in
    `[1, min(n, d)]`. The features are used as they are (not centred) unless
    `center=True` (then the batch mean row is subtracted first). Singular
    values come from the eigenvalues of the smaller Gram (`min(n, d)` side);
    those at round-off level (see the module notes) count as zero, where the
    paper adds `eps = 1e-7` to every `p_k` instead. All-zero features give 1
    (the entropy of an empty spectrum is 0). Scale-invariant; static shapes,
    so it runs inside compiled functions.

    Args:
        features: `(..., n, d)` features.
        center: subtract the mean row first.

    Returns:
        A tensor of shape `(...)` (float32, float64 for float64 input).
        Non-finite features raise in eager calls and give NaN when traced.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> round(float(nc_ops.rank_me(np.eye(4, 6))), 4)  # four equal singular values
    4.0
    """
    x, ok = _scaled_features(features, center)
    k, _ = min_side_gram(x)
    return nan_unless(ok, rank_me_of_gram(k))


def alpha_req_of_gram(k, fit_range=None):
    """alpha-ReQ from the eigenvalues of a PSD matrix (see `alpha_req`).

    Args:
        k: PSD matrices `(..., m, m)`, e.g. a feature covariance.
        fit_range: optional `(first, last)` 1-based ranks (inclusive) of the
            eigenvalues to fit; default: all, `1..m`.

    Returns:
        A tensor of shape `(...)`: minus the least-squares slope of
        `log lambda_k` against `log k`; 0 when fewer than two eigenvalues
        above the round-off cut fall in the range.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> spectrum = np.arange(1, 9, dtype="float64") ** -2.0
    >>> round(float(nc_ops.alpha_req_of_gram(np.diag(spectrum))), 4)
    2.0
    """
    k, ok = _check_gram(k)
    size = k.shape[-1]
    if size is None:
        raise ValueError("`k` must have a static size for alpha-ReQ.")
    first, last = _fit_range(fit_range, size)
    values, keep = _kept_spectrum(k)
    values, keep = ops.flip(values, axis=-1), ops.flip(keep, axis=-1)  # descending
    ranks = ops.arange(1, size + 1, dtype=values.dtype)
    keep = keep & (ranks >= first) & (ranks <= last)
    weight = ops.cast(keep, values.dtype)
    log_k = ops.log(ranks)
    log_l = ops.log(ops.where(keep, values, 1.0))
    count = ops.sum(weight, axis=-1, keepdims=True)
    safe_count = ops.where(count > 0, count, 1.0)
    mean_x = ops.sum(weight * log_k, axis=-1, keepdims=True) / safe_count
    mean_y = ops.sum(weight * log_l, axis=-1, keepdims=True) / safe_count
    dx = (log_k - mean_x) * weight
    sxx = ops.sum(dx * dx, axis=-1)
    sxy = ops.sum(dx * (log_l - mean_y), axis=-1)
    enough = ops.squeeze(count, -1) >= 2.0
    alpha = ops.where(enough, -sxy / ops.where(sxx > 0, sxx, 1.0), 0.0)
    return nan_unless(ok, alpha)


def _fit_range(fit_range, size):
    if fit_range is None:
        return 1, max(size, 1)
    valid = (
        isinstance(fit_range, (tuple, list))
        and len(fit_range) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in fit_range)
        and 1 <= fit_range[0] < fit_range[1]
    )
    if not valid:
        raise ValueError(
            "`fit_range` must be None or a pair of 1-based ranks `(first, last)` with "
            f"1 <= first < last; received {fit_range!r}."
        )
    return fit_range[0], min(fit_range[1], size)


def alpha_req(features, center=True, fit_range=None):
    """alpha-ReQ (Agrawal et al. 2022): the power-law decay of the feature eigenspectrum.

    The eigenvalues `lambda_1 >= lambda_2 >= ...` of the feature covariance
    (features centred by their mean row when `center=True`, the default;
    computed on the `min(n, d)` side) are fitted by least squares as
    `log lambda_k = c - alpha log k` over the ranks `k` in `fit_range`
    (default: every rank `1..min(n, d)`), leaving out the eigenvalues at or
    below the round-off cut `m * eps * lambda_max`. Returns `alpha`: positive
    for decaying spectra (larger means a faster decay, a lower effective
    dimension), 0 for a flat spectrum, and 0 by definition when fewer than two
    eigenvalues are above the cut (rank <= 1, all-zero features). The
    overall scale of the features does not matter.

    Args:
        features: `(..., n, d)` features.
        center: subtract the mean row first (a covariance).
        fit_range: optional `(first, last)` 1-based ranks, inclusive (e.g.
            `(1, 64)`), to fit only part of the spectrum.

    Returns:
        A tensor of shape `(...)`.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> z = np.random.default_rng(0).normal(size=(256, 32)) * np.arange(1, 33) ** -1.0
    >>> a = nc_ops.alpha_req(z)  # close to 2: the variances fall as k^-2
    """
    x, ok = _scaled_features(features, center)
    k, _ = min_side_gram(x)
    return nan_unless(ok, alpha_req_of_gram(k, fit_range))
