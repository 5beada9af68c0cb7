"""The classic Neural Collapse measures (NC1-NC4, CDNV) from class statistics."""

import collections

from keras import ops

from keras_nc.ops._guards import (
    as_float,
    check_rank,
    check_width,
    dtype_name,
    features_tensor,
    guard,
    nan_unless,
)
from keras_nc.ops._spectral import largest, machine_eps, matmul, maximum
from keras_nc.ops.statistics import present_classes, scale_exponent

ClassGeometry = collections.namedtuple(
    "ClassGeometry",
    ["counts", "means", "centred", "mask", "num_present", "classes", "total", "sq_norms"],
)
ClassGeometry.__doc__ = """Class means of the classes present, as the measures read them.

`counts` `(C',)`, `means` and `centred` (`mu_c - mu_G`, zero for absent
rows) `(C', d)`, `mask` `(C',)` (1 for present classes), `num_present`,
`classes` (`num_present`, at least 2, for divisions), `total` (the sum of
the counts, 1 when empty) and `sq_norms` `(C',)`.
"""


def class_geometry(counts, sums, sq_norms, mask):
    """The `ClassGeometry` of compacted statistics (see `present_classes`)."""
    present = mask > 0
    total = ops.sum(counts)
    total = ops.where(total > 0, total, 1.0)
    safe_counts = ops.where(present, counts, 1.0)
    means = ops.where(ops.expand_dims(present, -1), sums / ops.expand_dims(safe_counts, -1), 0.0)
    global_mean = ops.sum(sums, axis=0) / total
    centred = (means - global_mean) * ops.expand_dims(mask, -1)
    num_present = ops.sum(mask)
    classes = ops.where(num_present >= 2, num_present, 2.0)
    return ClassGeometry(counts, means, centred, mask, num_present, classes, total, sq_norms)


def nc1(geometry, second_moment):
    """`tr(Sigma_W Sigma_B^+) / C'` from the singular vectors of the centred means `M`.

    `Sigma_B^+ = C' V S^-2 V^T` with `M = U S V^T`, so NC1 is
    `sum_k v_k^T Sigma_W v_k / s_k^2` over the singular values above the
    round-off cut `max(C', d) * eps * max(s_max, ||means||_F)` (NumPy's
    `pinv`/`matrix_rank` convention, on the scale of the means before
    centring: centring means whose common part is much larger than their
    spread leaves round-off of order `eps * ||means||`, not `eps * s_max`, in
    the directions the centring removed). Working with `M` itself, not
    `M M^T`, keeps the condition number from being squared.
    """
    centred, means, counts = geometry.centred, geometry.means, geometry.counts
    _, singular, vt = ops.svd(centred, full_matrices=False)  # vt: (k, d)
    size = max(int(centred.shape[0] or 1), int(centred.shape[1] or 1))
    uncentred = ops.sqrt(ops.sum(ops.square(means * ops.expand_dims(geometry.mask, -1))))
    scale = maximum(largest(singular), uncentred)
    keep = singular > size * machine_eps(dtype_name(centred)) * scale
    # v^T Sigma_W v = (v^T S2 v - sum_c N_c (v . mu_c)^2) / N
    along_second = ops.sum(matmul(vt, second_moment) * vt, axis=-1)
    along_means = matmul(means, ops.transpose(vt))  # (C', k)
    between = ops.sum(ops.expand_dims(counts, -1) * ops.square(along_means), axis=0)
    within = maximum((along_second - between) / geometry.total, ops.zeros_like(between))
    safe = ops.where(keep, singular, 1.0)
    return ops.sum(ops.where(keep, within / ops.square(safe), 0.0))


def _pair_mask(mask):
    pair = ops.expand_dims(mask, 0) * ops.expand_dims(mask, 1)
    return pair * (1.0 - ops.eye(ops.shape(mask)[0], dtype=mask.dtype))


def cdnv(geometry):
    """Mean over pairs of present classes of `(Var_c + Var_c') / (2 ||mu_c - mu_c'||^2)`.

    Distances from the centred means (smaller norms than the raw means: less
    cancellation in `sq + sq - 2 <,>`).
    """
    present = geometry.mask > 0
    safe_counts = ops.where(present, geometry.counts, 1.0)
    variances = geometry.sq_norms / safe_counts - ops.sum(ops.square(geometry.means), axis=-1)
    variances = ops.where(present, maximum(variances, ops.zeros_like(variances)), 0.0)
    gram_m = matmul(geometry.centred, ops.transpose(geometry.centred))
    sq = ops.diagonal(gram_m)
    dist2 = maximum(ops.expand_dims(sq, 0) + ops.expand_dims(sq, 1) - 2.0 * gram_m,
                    ops.zeros_like(gram_m))  # fmt: skip
    pair = _pair_mask(geometry.mask)
    ratio = (ops.expand_dims(variances, 0) + ops.expand_dims(variances, 1)) / (
        2.0 * ops.where(dist2 > 0, dist2, 1.0)
    )
    ratio = ops.where((pair > 0) & (dist2 > 0), ratio, 0.0)
    num_pairs = ops.sum(pair)
    return ops.sum(ratio) / ops.where(num_pairs > 0, num_pairs, 1.0)


def etf_error(geometry):
    """NC2: `|| M M^T / ||M M^T||_F - (I - 11^T / C') / sqrt(C' - 1) ||_F`."""
    mask, c = geometry.mask, geometry.classes
    gram_m = matmul(geometry.centred, ops.transpose(geometry.centred))
    frob = ops.sqrt(ops.sum(ops.square(gram_m)))
    size = ops.shape(mask)[0]
    target = (ops.eye(size, dtype=mask.dtype) - ops.ones_like(gram_m) / c) / ops.sqrt(c - 1.0)
    target = target * ops.expand_dims(mask, 0) * ops.expand_dims(mask, 1)
    return ops.sqrt(ops.sum(ops.square(gram_m / ops.where(frob > 0, frob, 1.0) - target)))


def equinorm(geometry):
    """NC2: coefficient of variation (std / mean) of `||mu_c - mu_G||` over present classes."""
    mask, c = geometry.mask, geometry.classes
    sq = ops.sum(ops.square(geometry.centred), axis=-1)
    norms = ops.sqrt(maximum(sq, ops.zeros_like(sq)))
    mean_norm = ops.sum(norms) / c
    std_norm = ops.sqrt(ops.sum(mask * ops.square(norms - mean_norm)) / c)
    return ops.where(mean_norm > 0, std_norm / ops.where(mean_norm > 0, mean_norm, 1.0), 0.0)


def self_duality(geometry, head_weights):
    """NC3: `|| W / ||W||_F - M / ||M||_F ||_F^2` over the classes present."""
    head = head_weights * ops.expand_dims(geometry.mask, -1)
    w_norm = ops.sqrt(ops.sum(ops.square(head)))
    m_norm = ops.sqrt(ops.sum(ops.square(geometry.centred)))
    diff = head / ops.where(w_norm > 0, w_norm, 1.0) - geometry.centred / ops.where(
        m_norm > 0, m_norm, 1.0
    )
    return ops.sum(ops.square(diff))


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

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> stats = nc_ops.class_statistics(np.eye(3, 4), np.array([0, 1, 2]), 3)
    >>> measures = nc_ops.neural_collapse_measures(stats)
    >>> round(float(measures["nc1"]), 6), round(float(measures["etf_error"]), 6)
    (0.0, 0.0)
    """
    names = ["counts", "sums", "sq_norms", "second_moment"]
    arrays = {name: statistics[name] for name in names if name in statistics}
    if head_weights is not None:
        arrays["head_weights"] = head_weights
    arrays, mask, ok = present_classes(arrays)
    geometry = class_geometry(arrays["counts"], arrays["sums"], arrays["sq_norms"], mask)
    result = {}
    if "second_moment" in arrays:
        result["nc1"] = nc1(geometry, arrays["second_moment"])
    result.update(cdnv=cdnv(geometry), etf_error=etf_error(geometry), equinorm=equinorm(geometry))
    if head_weights is not None:
        result["self_duality"] = self_duality(geometry, arrays["head_weights"])
    two_or_more = geometry.num_present >= 2
    return {
        name: nan_unless(ok, ops.where(two_or_more, value, 0.0)) for name, value in result.items()
    }


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

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> z = np.eye(3, 4)
    >>> float(nc_ops.ncc_agreement(z, logits=z[:, :3], means=z))
    1.0
    """
    features = features_tensor(features)
    logits = as_float(logits)
    check_rank(logits, "logits", 2, "(n, num_classes)")
    means = as_float(means)
    check_rank(means, "means", 2, "(num_classes, d)")
    check_width(means, "means", features.shape[-1], "features")
    checked = guard({"features": features, "logits": logits})
    features, logits = checked.tensors["features"], checked.tensors["logits"]
    # Means come from accumulated statistics: never an error, NaN when not finite.
    means_checked = guard({"means": means}, strict=False)
    means = ops.cast(means_checked.tensors["means"], features.dtype)
    if means_exponent is not None:  # means of features * 2**-means_exponent
        features = features * ops.cast(ops.power(2.0, -means_exponent), features.dtype)
    # One power-of-two scale for both, so that no square overflows (scale-invariant).
    scale = ops.maximum(scale_exponent(features), scale_exponent(means))
    factor = ops.cast(ops.power(2.0, -scale), features.dtype)
    features, means = features * factor, means * factor
    dist = ops.sum(ops.square(means), axis=-1) - 2.0 * matmul(features, ops.transpose(means))
    if present is not None:
        dist = ops.where(ops.expand_dims(present, 0), dist, float("inf"))
    agree = ops.cast(ops.argmin(dist, axis=-1) == ops.argmax(logits, axis=-1), features.dtype)
    n = ops.cast(ops.shape(features)[0], features.dtype)
    value = ops.sum(agree) / maximum(n, ops.ones_like(n))
    return nan_unless(means_checked.ok, nan_unless(checked.ok, value))
