"""The classic Neural Collapse measures (NC1-NC4, CDNV) from class statistics.

Why one module: the measures read one `ClassGeometry`, which
`neural_collapse_measures` prepares once for all of them.
"""

import collections

from keras import ops

from keras_nc.ops._checks import as_float, check_rank, check_width, dtype_name, features_tensor
from keras_nc.ops._guards import guard, nan_unless
from keras_nc.ops._spectral import largest, machine_eps, matmul, maximum
from keras_nc.ops._tiles import off_diagonal, pair_sum
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


def cdnv(geometry, block_size=None):
    """Mean over pairs of present classes of `(Var_c + Var_c') / (2 ||mu_c - mu_c'||^2)`.

    Distances from the centred means (smaller norms than the raw means: less
    cancellation in `sq + sq - 2 <,>`), summed over tiles of at most
    `block_size x block_size` pairs (never a `C' x C'` matrix; see `_tiles`).
    """
    present = geometry.mask > 0
    safe_counts = ops.where(present, geometry.counts, 1.0)
    variances = geometry.sq_norms / safe_counts - ops.sum(ops.square(geometry.means), axis=-1)
    variances = ops.where(present, maximum(variances, ops.zeros_like(variances)), 0.0)
    centred = geometry.centred
    sq = ops.sum(ops.square(centred), axis=-1)

    def tile(rows_i, rows_j, same):
        (m_i, v_i, s_i, k_i), (m_j, v_j, s_j, k_j) = rows_i, rows_j
        gram_m = matmul(m_i, ops.transpose(m_j))
        dist2 = ops.expand_dims(s_i, 1) + ops.expand_dims(s_j, 0) - 2.0 * gram_m
        dist2 = maximum(dist2, ops.zeros_like(dist2))
        pair = ops.expand_dims(k_i, 1) * ops.expand_dims(k_j, 0)
        pair = pair * off_diagonal(same, m_i.shape[0], m_j.shape[0], pair.dtype)
        ratio = (ops.expand_dims(v_i, 1) + ops.expand_dims(v_j, 0)) / (
            2.0 * ops.where(dist2 > 0, dist2, 1.0)
        )
        return ops.sum(ops.where((pair > 0) & (dist2 > 0), ratio, 0.0))

    total = pair_sum([centred, variances, sq, geometry.mask], tile, block_size)
    num_pairs = geometry.num_present * (geometry.num_present - 1.0)
    return total / ops.where(num_pairs > 0, num_pairs, 1.0)


def etf_error(geometry):
    """NC2: `|| M M^T / ||M M^T||_F - (I - 11^T / C') / sqrt(C' - 1) ||_F`.

    With at most `d` rows, from the `C' x C'` Gram itself. With more rows than
    `d`, from `d x d` matrices only, without cancellation: for `p >= 2` present
    classes the target `T` has unit norm, so `E^2 = 2 (f - g) / f` with
    `f = ||M M^T||_F = ||M^T M||_F` and `g = <M M^T, T> = tr(A0) / sqrt(p - 1)`,
    where `M = M0 + 1 m^T` splits the rows into their unweighted mean `m`
    and the rest `M0` (`A0 = M0^T M0`, of rank at most `p - 1`). Then
    `f^2 - g^2 = S + 2 p m^T A0 m + p^2 |m|^4`, where
    `S = sum (l_k - mean l)^2` over the `p - 1` largest eigenvalues `l_k` of
    `A0` (zeros beyond `d`): a sum of non-negative terms, so
    `E^2 = 2 (f^2 - g^2) / (f (f + g))` keeps full relative precision near the
    ETF, where the expansion `2 - 2 g / f` would lose half the digits.
    """
    mask, c = geometry.mask, geometry.classes
    rows, width = tuple(geometry.centred.shape)
    if width is None or rows <= width:
        gram_m = matmul(geometry.centred, ops.transpose(geometry.centred))
        frob = ops.sqrt(ops.sum(ops.square(gram_m)))
        size = ops.shape(mask)[0]
        target = (ops.eye(size, dtype=mask.dtype) - ops.ones_like(gram_m) / c) / ops.sqrt(c - 1.0)
        target = target * ops.expand_dims(mask, 0) * ops.expand_dims(mask, 1)
        return ops.sqrt(ops.sum(ops.square(gram_m / ops.where(frob > 0, frob, 1.0) - target)))
    centred = geometry.centred  # absent rows are zero
    row_mean = ops.sum(centred, axis=0) / c  # m, over the present rows
    rest = (centred - row_mean) * ops.expand_dims(mask, -1)  # M0
    a0 = matmul(ops.transpose(rest), rest)
    frob = ops.sqrt(ops.sum(ops.square(matmul(ops.transpose(centred), centred))))
    trace = ops.trace(a0)
    inner = trace / ops.sqrt(c - 1.0)
    mean_eig = trace / (c - 1.0)
    eig = ops.eigh(a0)[0]  # ascending
    from_top = ops.cast(ops.arange(width - 1, -1, -1), eig.dtype)
    spread = ops.sum(ops.where(from_top < c - 1.0, ops.square(eig - mean_eig), 0.0))
    beyond = c - 1.0 - width
    spread = spread + ops.where(beyond > 0, beyond, 0.0) * ops.square(mean_eig)
    mean_sq = ops.sum(ops.square(row_mean))
    along = ops.sum(row_mean * ops.squeeze(matmul(a0, ops.expand_dims(row_mean, -1)), -1))
    excess = spread + 2.0 * c * along + ops.square(c * mean_sq)
    safe = ops.where(frob > 0, frob, 1.0)
    error2 = 2.0 * excess / (safe * (safe + inner))
    return ops.where(frob > 0, ops.sqrt(maximum(error2, ops.zeros_like(error2))), 1.0)


def equinorm(geometry, ddof=0):
    """NC2: coefficient of variation `std / mean` of `||mu_c - mu_G||` over present classes.

    `std = sqrt(sum_c (r_c - mean r)^2 / (C' - ddof))` of the norms `r_c`:
    `ddof=0` the population standard deviation (NumPy's default), `ddof=1` the
    sample standard deviation (`torch.std`'s default), larger by
    `sqrt(C' / (C' - 1))`.
    """
    mask, c = geometry.mask, geometry.classes
    sq = ops.sum(ops.square(geometry.centred), axis=-1)
    norms = ops.sqrt(maximum(sq, ops.zeros_like(sq)))
    mean_norm = ops.sum(norms) / c
    std_norm = ops.sqrt(ops.sum(mask * ops.square(norms - mean_norm)) / (c - float(ddof)))
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


def neural_collapse_measures(
    statistics, head_weights=None, equinorm_ddof=0, block_size=None, measures=None
):
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
    - `equinorm` (NC2): coefficient of variation `std / mean` of the norms
      `r_c = ||mu_c - mu_G||`, with `std = sqrt(sum_c (r_c - mean r)^2 / (C' - ddof))`.
      The default `equinorm_ddof=0` (population standard deviation, as NumPy's
      `std`) is `sqrt((C' - 1) / C')` times the value with `equinorm_ddof=1`
      (sample standard deviation, as `torch.std` of the norms from the
      neural-collapse package's `mean_norms`, Wu and Papyan, 2024): pick 1 to
      compare with numbers computed that way. The two differ by 5% at
      C' = 10 and 0.05% at C' = 1000;
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
    the cost is that of the classes in the data.

    Cost with `C'` classes present and width `d`: one SVD of `C' x d` for
    NC1; for the ETF error, with `C' <= d` the `C' x C'` Gram, else `d x d`
    products and one `d x d` eigendecomposition (no `C' x C'` matrix); CDNV
    is a mean over all pairs of classes, summed over tiles of at most
    `block_size x block_size` pairs (`C'^2 d / 2` multiply-adds, memory of a
    few tiles: 32 MB each in float64 at the default 2048, where one
    `C' x C'` float64 matrix is 800 MB at C' = 10,000). See the Performance
    page for timings at C = 10,000 and 100,000.

    Args:
        statistics: a dict from `class_statistics` (or sums of several).
        head_weights: optional `(C, d)` classifier rows.
        equinorm_ddof: `0` (default) or `1`: the divisor `C' - ddof` of the
            variance in `equinorm` (see above).
        block_size: rows per tile of CDNV's pairwise sum (default 2048).
        measures: optional names of the measures to compute (a subset of
            `nc1`, `cdnv`, `etf_error`, `equinorm`, `self_duality`); default all
            the statistics allow.

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
    if equinorm_ddof not in (0, 1) or isinstance(equinorm_ddof, bool):
        raise ValueError(f"`equinorm_ddof` must be 0 or 1; received {equinorm_ddof!r}.")
    known = ("nc1", "cdnv", "etf_error", "equinorm", "self_duality")
    wanted = set(known if measures is None else measures)
    if not wanted <= set(known):
        raise ValueError(
            f"`measures` must name some of {known}; received {sorted(wanted - set(known))}."
        )
    names = ["counts", "sums", "sq_norms"]
    if "nc1" in wanted:
        names.append("second_moment")
    arrays = {name: statistics[name] for name in names if name in statistics}
    if head_weights is not None and "self_duality" in wanted:
        arrays["head_weights"] = head_weights
    arrays, mask, ok = present_classes(arrays)
    geometry = class_geometry(arrays["counts"], arrays["sums"], arrays["sq_norms"], mask)
    result = {}
    if "second_moment" in arrays:
        result["nc1"] = nc1(geometry, arrays["second_moment"])
    if "cdnv" in wanted:
        result["cdnv"] = cdnv(geometry, block_size)
    if "etf_error" in wanted:
        result["etf_error"] = etf_error(geometry)
    if "equinorm" in wanted:
        result["equinorm"] = equinorm(geometry, equinorm_ddof)
    if "head_weights" in arrays:
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
