"""Representation rank: RankMe (Garrido et al. 2023) and alpha-ReQ (Agrawal et al. 2022).

Both read the spectrum of the feature matrix `Z` `(n, d)`: its singular
values `s_1 >= s_2 >= ...`, or the eigenvalues `lambda_k = s_k^2` of its
Grams (`Z Z^T`, n x n, and `Z^T Z`, d x d, share them); functions ending in
`_of_gram` take such a Gram directly (e.g. a second moment summed over
batches).

How the spectrum is computed, to the precision of the features themselves:
see `keras_nc.ops.rank_spectrum`.
"""

import math

from keras import ops

from keras_nc.ops._checks import as_float, check_flag, check_matrix
from keras_nc.ops._guards import guard, nan_unless
from keras_nc.ops.rank_spectrum import (
    feature_spectrum,
    fit_range_bounds,
    gram_spectrum,
    power_law_fit,
    rank_from_spectrum,
    within_count,
)

SPECTRA = ("singular_values", "covariance")
WEIGHTINGS = ("uniform", "inverse_rank")


def _check_spectrum(spectrum):
    if spectrum not in SPECTRA:
        raise ValueError(
            f'`spectrum` must be "singular_values" or "covariance"; received {spectrum!r}.'
        )
    return spectrum


def _check_epsilon(epsilon):
    valid = (
        not isinstance(epsilon, bool)
        and isinstance(epsilon, (int, float))
        and math.isfinite(epsilon)
        and 0 <= epsilon < 1
    )
    if not valid:
        raise ValueError(f"`epsilon` must be a number in [0, 1); received {epsilon!r}.")
    return float(epsilon)


def _check_weighting(weighting):
    if weighting not in WEIGHTINGS:
        raise ValueError(
            f'`weighting` must be "uniform" or "inverse_rank"; received {weighting!r}.'
        )
    return weighting


def _check_gram(k):
    k = as_float(k)
    check_matrix(k, "k", square=True)
    checked = guard({"k": k})
    return checked.tensors["k"], checked.ok


def rank_me_of_gram(k, spectrum="singular_values", epsilon=0.0):
    """RankMe of a feature matrix `Z` from its Gram `k = Z^T Z` (or `Z Z^T`).

    With `s_k = sqrt(lambda_k)` the singular values of `Z` (from the
    eigenvalues `lambda_k` of `k` above `m * eps * lambda_max`) and
    `p_k = s_k / sum_j s_j`, `RankMe = exp(-sum_k p_k log p_k)`. The Gram
    limits the precision: a float32 `k` resolves singular values only down to
    `sqrt(m * eps) * s_max` (3e-4 of the largest at m = 1000), a float64 one
    to 1e-8 of it; `rank_me` on the features themselves is exact to the
    float32 level either way.

    Args:
        k: PSD matrices `(..., m, m)`.
        spectrum: `"singular_values"` (RankMe, the default) or
            `"covariance"`: `p_k = lambda_k / sum_j lambda_j`, the eigenvalues
            themselves (reptrix's `get_rankme` when `k` is a covariance); see
            `rank_me`.
        epsilon: added to every `p_k` (all `m` of them), as the paper does
            with `1e-7`; default 0.

    Returns:
        A tensor of shape `(...)` in `[1, m]`; 1 for an all-zero matrix
        (entropy 0) and for rank 1.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> round(float(nc_ops.rank_me_of_gram(np.diag([4.0, 4.0, 0.0]))), 4)
    2.0
    """
    spectrum, epsilon = _check_spectrum(spectrum), _check_epsilon(epsilon)
    k, ok = _check_gram(k)
    if k.shape[-1] == 0:
        return nan_unless(ok, ops.ones(tuple(k.shape)[:-2], dtype=k.dtype))
    values, keep = gram_spectrum(k)
    return nan_unless(ok, rank_from_spectrum(values, keep, spectrum, epsilon, None))


def rank_me(features, center=False, spectrum="singular_values", epsilon=0.0):
    """RankMe (Garrido et al. 2023): the exponential of the entropy of the singular values.

    `p_k = s_k / sum_j s_j` for the singular values `s_k` of the `(n, d)`
    feature matrix and `RankMe = exp(-sum_k p_k log p_k)`, a smooth rank in
    `[1, min(n, d)]`: `r` equal singular values give exactly `r`. The
    features are used as they are (not centred, as in the paper) unless
    `center=True` (then the batch mean row is subtracted first). All-zero
    features give 1 (the entropy of an empty spectrum is 0). Scale-invariant;
    static shapes, so it runs inside compiled functions.

    Every singular value is computed to the precision of the features
    themselves, about `eps * s_max` (`eps` their dtype's machine epsilon),
    and those at or below `sqrt(max(n, d)) * eps * s_max` (rounding level)
    count as zero; see `keras_nc.ops.rank_spectrum` for how (a float64 Gram or an
    SVD). Computing them from a float32 Gram instead would lose every
    singular value below about `3e-4 * s_max`.

    Relation to published code:

    - The paper adds `1e-7` to every `p_k` (`k = 1..min(n, d)`), which adds
      up to `min(n, d) * 1.6e-6` nats for singular values at zero;
      `epsilon=1e-7` reproduces it.
    - reptrix's `get_rankme` (Agrawal, Ghosh, Mondal et al.) takes the
      eigenvalues of the covariance of the centred features instead of the
      singular values (scikit-learn's PCA `explained_variance_ratio_`:
      `p_k = s_k^2 / sum_j s_j^2`, `s_k` of the centred features), adds
      `1e-7` to each and keeps at most 2048 of them (`max_eigenvals`).
      Squares weigh the leading directions more, so its values are several
      times lower (7.6 against 22.8 on the features of a small MLP trained
      on scikit-learn's digits, `benchmarks/rank_precision.py`).
      `rank_me(z, center=True, spectrum="covariance", epsilon=1e-7)`
      reproduces it.

    Args:
        features: `(..., n, d)` features.
        center: subtract the mean row first (default `False`, as the paper;
            `True` for a covariance, as reptrix).
        spectrum: `"singular_values"` (RankMe, the default) or
            `"covariance"` (reptrix's variant, above).
        epsilon: added to every `p_k`, `k = 1..min(n, d)` (the paper's and
            reptrix's `1e-7`); default 0.

    Returns:
        A tensor of shape `(...)` (float32, float64 for float64 input).
        Non-finite features raise in eager calls and give NaN when traced.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> round(float(nc_ops.rank_me(np.eye(4, 6))), 4)  # four equal singular values
    4.0
    >>> z = np.diag([1.0] + [1e-3] * 31).astype("float32")
    >>> round(float(nc_ops.rank_me(z)), 4)  # 31 singular values at 1e-3 of the largest
    1.269
    """
    spectrum, epsilon = _check_spectrum(spectrum), _check_epsilon(epsilon)
    center = check_flag(center, "center")
    x = as_float(features)
    check_matrix(x, "features", square=False)
    if 0 in tuple(x.shape)[-2:]:
        return ops.ones(tuple(x.shape)[:-2], dtype=x.dtype)
    values, keep, count, dtype, ok = feature_spectrum(x, center)
    rank = rank_from_spectrum(values, keep, spectrum, epsilon, within_count(values, count))
    return nan_unless(ok, ops.cast(rank, dtype))


def alpha_req_of_gram(k, fit_range=None, weighting="uniform"):
    """alpha-ReQ from the eigenvalues of a PSD matrix (see `alpha_req`).

    Eigenvalues at or below `m * eps * lambda_max` (`eps` of `k`'s dtype)
    are left out of the fit: pass a float64 `k` for full precision.

    Args:
        k: PSD matrices `(..., m, m)`, e.g. a feature covariance.
        fit_range: optional `(first, last)` 1-based ranks (inclusive) of the
            eigenvalues to fit; default: all, `1..m`.
        weighting: `"uniform"` (ordinary least squares, the default) or
            `"inverse_rank"` (rank `k` weighted by `1 / k`, as reptrix).

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
    weighting = _check_weighting(weighting)
    k, ok = _check_gram(k)
    if k.shape[-1] is None:
        raise ValueError("`k` must have a static size for alpha-ReQ.")
    fit_range_bounds(fit_range, k.shape[-1])
    if k.shape[-1] == 0:
        return nan_unless(ok, ops.zeros(tuple(k.shape)[:-2], dtype=k.dtype))
    values, keep = gram_spectrum(k)
    return nan_unless(ok, power_law_fit(values, keep, fit_range, weighting))


def alpha_req(features, center=True, fit_range=None, weighting="uniform"):
    """alpha-ReQ (Agrawal et al. 2022): the power-law decay of the feature eigenspectrum.

    The eigenvalues `lambda_1 >= lambda_2 >= ...` of the feature covariance
    (`lambda_k = s_k^2 / n`, `s_k` the singular values of the features
    centred by their mean row when `center=True`, the default) are fitted as
    `log lambda_k = c - alpha log k` by least squares,

        alpha = -sum_k w_k (x_k - x_bar)(y_k - y_bar) / sum_k w_k (x_k - x_bar)^2,

    `x_k = log k`, `y_k = log lambda_k`, bars the `w`-weighted means, over
    the ranks `k` in `fit_range` (default: every rank `1..min(n, d)`),
    leaving out the singular values at round-off level (at or below
    `sqrt(max(n, d)) * eps * s_max`, see `keras_nc.ops.rank_spectrum`; they are
    computed to the precision of the features, not of their Gram). Weights
    `w_k = 1` by default (ordinary least squares, every rank alike).
    Returns `alpha`: positive for decaying spectra (larger means a faster
    decay, a lower effective dimension), 0 for a flat spectrum, and 0 by
    definition when fewer than two eigenvalues count (rank <= 1, all-zero
    features). Scale-invariant.

    Relation to reptrix's `get_alpha` (after the fit of Stringer et al.
    2019): it weighs rank `k` by `w_k = 1 / k` (`weighting="inverse_rank"`,
    so the head of the spectrum counts more than the tail) and fits the
    0-based indices `10..99` by default, the ranks `11..100`
    (`fit_range=(11, 100)`), of the explained-variance ratios of a PCA of
    the centred features (the eigenvalues divided by their sum, which only
    moves `c`); it takes the logarithm of every eigenvalue, round-off
    included. `alpha_req(z, fit_range=(11, 100), weighting="inverse_rank")`
    reproduces it wherever the range lies above round-off. The choices
    matter: on the features of a small MLP trained on scikit-learn's digits
    (`benchmarks/rank_precision.py`), every rank with uniform weights gives
    2.54, reptrix's fit 2.18; compare numbers from one definition only.

    Args:
        features: `(..., n, d)` features.
        center: subtract the mean row first (a covariance).
        fit_range: optional `(first, last)` 1-based ranks, inclusive (e.g.
            `(1, 64)`), to fit only part of the spectrum.
        weighting: `"uniform"` (default) or `"inverse_rank"` (reptrix's).

    Returns:
        A tensor of shape `(...)` (float32, float64 for float64 input).

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> z = np.random.default_rng(0).normal(size=(256, 32)) * np.arange(1, 33) ** -1.0
    >>> a = nc_ops.alpha_req(z)  # close to 2: the variances fall as k^-2
    """
    weighting = _check_weighting(weighting)
    center = check_flag(center, "center")
    x = as_float(features)
    check_matrix(x, "features", square=False)
    n, d = tuple(x.shape)[-2:]
    if d is None:
        raise ValueError("`features` must have a static width for alpha-ReQ.")
    fit_range_bounds(fit_range, d)
    if 0 in (n, d):
        return ops.zeros(tuple(x.shape)[:-2], dtype=x.dtype)
    values, keep, count, dtype, ok = feature_spectrum(x, center)
    counted = within_count(values, count)
    if counted is not None:
        keep = keep & counted
    alpha = power_law_fit(values, keep, fit_range, weighting)
    return nan_unless(ok, ops.cast(alpha, dtype))
