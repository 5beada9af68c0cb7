"""Representation rank: RankMe (Garrido et al. 2023) and alpha-ReQ (Agrawal et al. 2022).

Both read the spectrum of the feature matrix `Z` `(n, d)`: its singular
values `s_1 >= s_2 >= ...`, or the eigenvalues `lambda_k = s_k^2` of its
Grams (`Z Z^T`, n x n, and `Z^T Z`, d x d, share them); functions ending in
`_of_gram` take such a Gram directly (e.g. a second moment summed over
batches).

Precision. A float32 feature matrix is itself known to about `eps * s_max`
(`eps = 2**-23`): rounding its entries moves every singular value by up to
about `sqrt(max(n, d)) * eps * s_max` (the size of the rounding error's
largest singular value). The functions on features resolve every singular
value to that level, not just the large ones:

- float32 features where the backend computes in float64 (TensorFlow,
  PyTorch, JAX with `jax_enable_x64`): the smaller Gram is formed and
  decomposed (`eigh`) in float64. Its eigenvalues are then exact to about
  `m * 1e-16 * lambda_max`, i.e. the singular values to about
  `1e-8 * sqrt(m) * s_max`, below the float32 level; a float32 Gram would
  only give them to `sqrt(eps) * s_max` (3e-4: singular values below that
  would be lost, 2% to 10% of RankMe on features of trained networks).
- otherwise (JAX without x64, float64 features): an SVD
  (`keras.ops.svd(..., compute_uv=False)`), backward stable: every singular
  value to about `eps * s_max` in the features' dtype.

Singular values at or below the cut `sqrt(max(n, d)) * eps * s_max` (`eps`
of the features' dtype) count as zero: they are indistinguishable from the
rounding of the features, whichever of the two computations (or LAPACK
kernel) produced them. The `_of_gram` functions can do no better than their
Gram: eigenvalues at or below `m * eps * lambda_max` (`eps` of the Gram's
dtype; NumPy's `matrix_rank` convention) count as zero, so a float32 Gram
resolves singular values only down to `sqrt(m * eps) * s_max`; pass float64
Grams (as `keras_nc.callbacks.LayerwiseCollapse` does) for full precision.
"""

import math

from keras import ops

from keras_nc import compat
from keras_nc.ops._checks import as_float, check_flag, check_matrix, dtype_name
from keras_nc.ops._guards import guard, nan_unless, statistics_dtype
from keras_nc.ops._spectral import (
    eigenvalue_cut,
    eigenvalues,
    largest,
    machine_eps,
    min_side_gram,
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


def _static_or_dynamic(x, axis):
    size = x.shape[axis]
    return size if size is not None else ops.shape(x)[axis]


def _svd_values(x):
    """Singular values `(..., min(n, d))`, descending, one 2-D SVD per matrix on JAX.

    jaxlib's CPU kernels run batched LAPACK calls on XLA's intra-op thread
    pool, which can deadlock two such calls in one program
    (`keras_nc.compat.decomposes_one_matrix_per_call`); unbatched calls run
    inline.
    """
    shape = tuple(x.shape)
    if not compat.decomposes_one_matrix_per_call() or len(shape) == 2:
        return ops.svd(x, compute_uv=False)
    batch = math.prod(shape[:-2])
    flat = ops.reshape(x, (batch, *shape[-2:]))
    values = [ops.svd(flat[i], compute_uv=False) for i in range(batch)]
    return ops.reshape(ops.stack(values, axis=0), (*shape[:-2], min(shape[-2:])))


def _centred(x, center):
    """`x` minus its mean row when `center`, in `x`'s dtype.

    A sum divided by the count: Keras 3.15's PyTorch `ops.mean` computes in
    float32 (`result_type(float64, float32)` is float32 there), which would
    undo the float64 centring (the error of a float32 mean of features with a
    common part `c` is `eps * c`, far above the spread when `c` is large).
    """
    if not center:
        return x
    rows = ops.cast(_static_or_dynamic(x, -2), x.dtype)
    return x - ops.sum(x, axis=-2, keepdims=True) / ops.where(rows > 0, rows, 1.0)


def _symmetric_eigenvalues(k):
    """Eigenvalues (ascending) of symmetric `k` `(..., m, m)` to the precision of its dtype.

    TensorFlow's XLA kernel for `eigh` stops its Jacobi sweeps at an
    off-diagonal norm of `1e-6 ||k||_F` (and `2 log2(m)` sweeps), which
    leaves eigenvalues of ill-conditioned Grams wrong by up to about
    `1e-7 lambda_max` (singular values by `3e-4 s_max`); there the Jacobi
    iteration runs to the dtype's machine epsilon instead (about 1.5x to 6x
    the time on CPU).
    """
    if compat.tensorflow_xla_tracing():
        return compat.tensorflow_xla_eigenvalues(k, machine_eps(dtype_name(k)))
    return eigenvalues(k)


def _feature_spectrum(features, center, name="features"):
    """The squared singular values of the validated, (centred) features, and which count.

    Returns:
        `(values, keep, count, dtype, ok)`: `values` `(..., m)` the squared
        singular values `s_k^2` in descending order, in the compute dtype
        (float64 on the Gram path), divided by `max |z|^2`; `keep` those
        above the cut `sqrt(max(n, d)) * eps * s_max`; `count` the number of
        singular values, `min(n, d)` (an int, or a scalar tensor when `n` is
        unknown statically; `m` may then be `d`); `dtype` the features'
        dtype (that of the result); `ok` the guard's flag.
    """
    x = as_float(features)
    check_matrix(x, name, square=False)
    checked = guard({name: x})
    x = checked.tensors[name]
    dtype = dtype_name(x)
    gram_path = dtype == "float32" and statistics_dtype() == "float64"
    if gram_path:
        x = ops.cast(x, "float64")
    x = _centred(x, center)
    # Scale-invariant measures: dividing by max |z| keeps every square in range.
    scale = ops.stop_gradient(largest(ops.abs(x), axis=(-2, -1), keepdims=True))
    x = x / ops.where(scale > 0, scale, 1.0)
    rows, width = _static_or_dynamic(x, -2), _static_or_dynamic(x, -1)
    if isinstance(rows, int) and isinstance(width, int):
        count, size = min(rows, width), max(rows, width)
    else:
        rows_f, width_f = ops.cast(rows, "float32"), ops.cast(width, "float32")
        count = ops.cast(ops.minimum(rows_f, width_f), "int32")
        size = ops.maximum(rows_f, width_f)
    if gram_path:
        k, _ = min_side_gram(x)
        values = ops.flip(_symmetric_eigenvalues(k), axis=-1)
    else:
        values = ops.square(_svd_values(x))
    top = largest(values, axis=-1, keepdims=True)
    # Cut on the singular values: s > sqrt(size) * eps * s_max, squared.
    factor = size * machine_eps(dtype) ** 2
    cut = ops.cast(factor, values.dtype) * top if not isinstance(factor, float) else factor * top
    keep = values > cut
    return values, keep, count, dtype, checked.ok


def _counted(values, count):
    """Mask of the first `count` entries along the last axis (the spectrum's `min(n, d)`)."""
    m = values.shape[-1]
    if isinstance(count, int) and count >= m:
        return None
    return ops.arange(m) < ops.cast(count, "int32")


def _rank_from_spectrum(values, keep, spectrum, epsilon, counted):
    """exp of the Shannon entropy of `p_k = v_k / sum_j v_j (+ epsilon)`.

    `v_k` the singular values (`sqrt(values)`) or the eigenvalues (`values`)
    that count; `epsilon` is added to every `p_k` of the first `min(n, d)`
    (`counted`, None for all). A spectrum without mass gives 1.
    """
    safe = ops.where(keep, values, 1.0)
    if spectrum == "singular_values":
        weights = ops.where(keep, ops.sqrt(safe), 0.0)
    else:
        weights = ops.where(keep, safe, 0.0)
    total = ops.sum(weights, axis=-1, keepdims=True)
    has_mass = total > 0
    p = weights / ops.where(has_mass, total, 1.0)
    if epsilon > 0:
        p = p + epsilon if counted is None else ops.where(counted, p + epsilon, 0.0)
    positive = p > 0
    p_safe = ops.where(positive, p, 1.0)
    entropy = ops.sum(ops.where(positive, -p_safe * ops.log(p_safe), 0.0), axis=-1)
    return ops.exp(ops.where(ops.squeeze(has_mass, -1), entropy, 0.0))


def _check_gram(k):
    k = as_float(k)
    check_matrix(k, "k", square=True)
    checked = guard({"k": k})
    return checked.tensors["k"], checked.ok


def _gram_spectrum(k):
    """Eigenvalues of the PSD `k` `(..., m, m)`, descending, and those above `m eps max`."""
    values = ops.flip(_symmetric_eigenvalues(k), axis=-1)
    size = k.shape[-1]
    cut = eigenvalue_cut(dtype_name(values), 0.5, size) * largest(values, axis=-1, keepdims=True)
    return values, values > cut


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
    values, keep = _gram_spectrum(k)
    return nan_unless(ok, _rank_from_spectrum(values, keep, spectrum, epsilon, None))


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
    count as zero; see `keras_nc.ops.rank` for how (a float64 Gram or an
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
    values, keep, count, dtype, ok = _feature_spectrum(x, center)
    rank = _rank_from_spectrum(values, keep, spectrum, epsilon, _counted(values, count))
    return nan_unless(ok, ops.cast(rank, dtype))


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


def _power_law_fit(values, keep, fit_range, weighting):
    """Minus the (weighted) least-squares slope of `log values_k` against `log k`.

    `values` `(..., m)` descending, `keep` those that may enter the fit; ranks
    `k = 1..m`, those in `fit_range` (1-based, inclusive). Weights: 1, or
    `1 / k` (`"inverse_rank"`). 0 when fewer than two points remain.
    """
    size = values.shape[-1]
    if size is None:
        raise ValueError("The spectrum must have a static size for alpha-ReQ.")
    first, last = _fit_range(fit_range, size)
    ranks = ops.arange(1, size + 1, dtype=values.dtype)
    keep = keep & (ranks >= first) & (ranks <= last)
    weight = ops.cast(keep, values.dtype)
    if weighting == "inverse_rank":
        weight = weight / ranks
    log_k = ops.log(ranks)
    log_l = ops.log(ops.where(keep, values, 1.0))
    total = ops.sum(weight, axis=-1, keepdims=True)
    safe_total = ops.where(total > 0, total, 1.0)
    mean_x = ops.sum(weight * log_k, axis=-1, keepdims=True) / safe_total
    mean_y = ops.sum(weight * log_l, axis=-1, keepdims=True) / safe_total
    dx = log_k - mean_x
    sxx = ops.sum(weight * dx * dx, axis=-1)
    sxy = ops.sum(weight * dx * (log_l - mean_y), axis=-1)
    enough = ops.sum(ops.cast(keep, values.dtype), axis=-1) >= 2.0
    return ops.where(enough, -sxy / ops.where(sxx > 0, sxx, 1.0), 0.0)


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
    _fit_range(fit_range, k.shape[-1])
    if k.shape[-1] == 0:
        return nan_unless(ok, ops.zeros(tuple(k.shape)[:-2], dtype=k.dtype))
    values, keep = _gram_spectrum(k)
    return nan_unless(ok, _power_law_fit(values, keep, fit_range, weighting))


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
    `sqrt(max(n, d)) * eps * s_max`, see `keras_nc.ops.rank`; they are
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
    _fit_range(fit_range, d)
    if 0 in (n, d):
        return ops.zeros(tuple(x.shape)[:-2], dtype=x.dtype)
    values, keep, count, dtype, ok = _feature_spectrum(x, center)
    counted = _counted(values, count)
    if counted is not None:
        keep = keep & counted
    alpha = _power_law_fit(values, keep, fit_range, weighting)
    return nan_unless(ok, ops.cast(alpha, dtype))
