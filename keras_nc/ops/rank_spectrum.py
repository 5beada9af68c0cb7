"""The spectra that RankMe and alpha-ReQ read (`keras_nc.ops.rank`), and the two measures of one.

`feature_spectrum` and `gram_spectrum` give the spectrum and which of its
values count; `rank_from_spectrum` (RankMe's exponential of an entropy) and
`power_law_fit` (alpha-ReQ's least-squares slope) read it.

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
from keras_nc.ops._checks import as_float, check_matrix, dtype_name
from keras_nc.ops._guards import guard, statistics_dtype
from keras_nc.ops._spectral import eigenvalue_cut, eigenvalues, largest, machine_eps, min_side_gram


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


def feature_spectrum(features, center, name="features"):
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


def within_count(values, count):
    """Mask of the first `count` entries along the last axis (the spectrum's `min(n, d)`)."""
    m = values.shape[-1]
    if isinstance(count, int) and count >= m:
        return None
    return ops.arange(m) < ops.cast(count, "int32")


def gram_spectrum(k):
    """Eigenvalues of the PSD `k` `(..., m, m)`, descending, and those above `m eps max`."""
    values = ops.flip(_symmetric_eigenvalues(k), axis=-1)
    size = k.shape[-1]
    cut = eigenvalue_cut(dtype_name(values), 0.5, size) * largest(values, axis=-1, keepdims=True)
    return values, values > cut


def rank_from_spectrum(values, keep, spectrum, epsilon, counted):
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


def fit_range_bounds(fit_range, size):
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


def power_law_fit(values, keep, fit_range, weighting):
    """Minus the (weighted) least-squares slope of `log values_k` against `log k`.

    `values` `(..., m)` descending, `keep` those that may enter the fit; ranks
    `k = 1..m`, those in `fit_range` (1-based, inclusive). Weights: 1, or
    `1 / k` (`"inverse_rank"`). 0 when fewer than two points remain.
    """
    size = values.shape[-1]
    if size is None:
        raise ValueError("The spectrum must have a static size for alpha-ReQ.")
    first, last = fit_range_bounds(fit_range, size)
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
