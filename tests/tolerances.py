"""Float32 error bounds of the suite's quantities, from the float64 reference.

The tolerance policy of the suite: a tolerance is never the value one machine
returned. It follows from the float32 analysis of the quantity, evaluated on
the float64 reference of the test's own data, so that another CPU (other BLAS,
LAPACK or oneDNN kernels, other round-off, another basis of a degenerate
eigenspace) passes whenever the library is right. The analysis, per quantity:

- **Eigenvalues.** A float32 Gram of `m` unit rows, then a backward-stable
  `eigh`, perturbs every eigenvalue of `rho = K / tr K` by `c(m) * eps *
  max(rho)` (`eps = 2**-23`; the Gram's own rounding is of the same order). The
  worst-case `c(m) = m` is never approached by rounding errors, which add up
  like a random walk: the bounds here use Wilkinson's rule of thumb
  `delta = sqrt(m) * eps * max(rho)`, while the library's cut (below) keeps the
  worst case. The library counts eigenvalues below a cut as zero: `eps * max`
  for orders `alpha >= 1`, `m * eps * max` (the numerical rank tolerance) for
  `alpha < 1`; round-off of a true zero eigenvalue is then always cut for
  `alpha < 1`, and adds at most `f(delta)` for `alpha >= 1`.
- **Entropies** (`entropy_tolerance`): first order in `delta`, per eigenvalue `l`
  of the reference: `|f'(l)| * delta` where `f(l) = -l log l` (`alpha = 1`) or
  `l**alpha` (the sum `S` of which gives `H = log S / (1 - alpha)`, so its
  error is divided by `S |1 - alpha|`); an eigenvalue within `delta` of the
  cut may be kept or lost: `f(l + delta)`. Plus the trace's relative rounding
  `m * eps`. Orders `alpha < 1` have the largest bounds (`f'` is unbounded at
  0), `alpha > 1` the smallest; order 2 needs no `eigh` and only the trace term.
- **MIR / HDR** (`ratio_tolerance`): the entropies' bounds propagated through
  the ratio: `(sum of the numerator's errors + ratio * error of the
  denominator) / denominator`.
- **NC measures**: the class statistics are sums of `n` float32 terms (relative
  error `n * eps` in the worst case) and the pseudo-inverse keeps directions
  down to `max(C, d) * eps * sigma_max`; against float64 the suite allows 1%,
  which covers a condition number of `M` up to `1e3 / sqrt(max(C, d))` with
  room (the issue's acceptance: NC1 within 1% at cond(M M^T) = 1e6).
- **CMA**: an entropy per class group of `m_c = n_c + 1` rows, each bounded as
  above with `m = n + P` (the block-diagonal matrix's size), divided by
  `log m_c`.

A safety factor of 2 covers the second-order terms the bounds leave out.

The module imports only NumPy (tests.reference and tests.helpers lazily): the
oldest-Keras job (`make test-oldest-keras`) imports it from tests/test_smoke.py.
"""

import numpy as np

EPS32 = 2.0**-23
EPS64 = 2.0**-52
SAFETY = 2.0
# NC measures against float64: the suite's 1% rule ("NC measures" above).
NC_RTOL = 0.01


def _spectrum(k):
    k = np.asarray(k, dtype=np.float64)
    tr = np.trace(k)
    if tr <= 0:
        return np.zeros(k.shape[-1])
    return np.clip(np.linalg.eigvalsh(k / tr), 0.0, 1.0)


def _neg_l_log_l(x):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, -x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def entropy_tolerance(k, alpha=1.0, size=None, dtype="float32"):
    """Absolute float32 error bound (nats) of `matrix_entropy(k, alpha)`.

    Args:
        k: the float64 reference matrix.
        alpha: entropy order.
        size: size `m` of the matrix the library decomposes (its min(n, d)
            side, say); defaults to `k`'s size.
        dtype: the library's compute dtype; float64 gives a bound ~1e-9.
    """
    eps = EPS32 if dtype == "float32" else 2.0**-52
    p = _spectrum(k)
    m = int(size or k.shape[-1])
    if p.max() <= 0:
        return SAFETY * eps
    pmax = p.max()
    delta = np.sqrt(m) * eps * pmax
    cut = (m if alpha < 1 else 1) * eps * pmax
    true_zero = p <= 1e-13 * pmax  # round-off of the float64 reference itself
    near_cut = ~true_zero & (p <= cut + delta)
    far = ~true_zero & ~near_cut
    if alpha == 1.0:
        error = np.sum(np.abs(np.log(p[far]) + 1.0)) * delta
        error += np.sum(_neg_l_log_l(np.minimum(p[near_cut] + delta, np.exp(-1.0))))
        error += np.count_nonzero(true_zero) * _neg_l_log_l(min(delta, np.exp(-1.0)))
        h = float(np.sum(_neg_l_log_l(p)))
        error += m * eps * (h + 1.0)
    else:
        s = float(np.sum(p[~true_zero] ** alpha))
        ds = np.sum(alpha * p[far] ** (alpha - 1.0)) * delta
        ds += np.sum((p[near_cut] + delta) ** alpha)
        if alpha > 1:  # round-off of true zeros survives the cut (alpha < 1 cuts it)
            ds += np.count_nonzero(true_zero) * delta**alpha
        error = ds / s / abs(1.0 - alpha) + alpha * m * eps / abs(1.0 - alpha)
    return SAFETY * float(error)


def ratio_tolerance(h1, h2, h12, e1, e2, e12, kind):
    """Bound on the float32 error of MIR or HDR from entropies and their bounds.

    Args:
        h1, h2, h12: reference entropies `H(K1), H(K2), H(K1 o K2)`.
        e1, e2, e12: their error bounds (`entropy_tolerance`).
        kind: `"mir"` or `"hdr"`.
    """
    if kind == "mir":
        den, e_den = (h1, e1) if h1 <= h2 else (h2, e2)
        num, e_num = h1 + h2 - h12, e1 + e2 + e12
    else:
        den, e_den = (h1, e1) if h1 >= h2 else (h2, e2)
        num, e_num = abs(h1 - h2), e1 + e2
    if den <= 10 * e_den:  # a degenerate denominator: the value is the defined 0
        return 1.0
    return float((e_num + abs(num / den) * e_den) / (den - e_den))


def float64_tolerance(terms=1, scale=1.0):
    """Bound of a float64 closed form of `terms` rounded operations on values of `scale`.

    For identities checked in float64 (an ETF's Gram, a closed-form entropy):
    `SAFETY * terms * eps64 * scale`, the worst-case accumulation.
    """
    return SAFETY * terms * EPS64 * float(scale)


def float32_tolerance(terms=1, scale=1.0):
    """Bound of a float32 result of `terms` rounded operations on values of `scale`.

    The worst case `terms * eps32 * scale` (sums of `terms` float32 values, a
    product chain, a layer's dot products of length `terms`), with `SAFETY`. For
    compiled-versus-eager or saved-versus-loaded comparisons of a network's
    outputs, `terms` is the longest dot product (fan-in) times the number of layers.
    """
    return SAFETY * terms * EPS32 * float(scale)


def information_tolerance(k1, k2, kind="mir", alpha=1.0, size=None):
    """Float32 bound of `mir`/`hdr`/`mutual_information` of two float64 reference Grams.

    The entropies' bounds (`entropy_tolerance`) propagated through the ratio
    (`ratio_tolerance`); for `kind="mi"`, their sum. The joint entropy is of the
    trace-normalised Hadamard product `k1 * k2`.
    """
    k1 = np.asarray(k1, dtype=np.float64)
    k2 = np.asarray(k2, dtype=np.float64)
    k12 = k1 * k2
    e1, e2, e12 = (entropy_tolerance(k, alpha, size=size) for k in (k1, k2, k12))
    if kind == "mi":
        return float(e1 + e2 + e12)
    from tests import reference

    h1, h2, h12 = (reference.entropy(k, alpha) for k in (k1, k2, k12))
    return ratio_tolerance(h1, h2, h12, e1, e2, e12, kind)


# RankMe and alpha-ReQ: the analysis is in the notes of tests/ops/test_rank.py.
def singular_value_errors(z, center=False):
    """Error bound of each singular value the library computes for float32 `z`, and the cut.

    An SVD in float32 (JAX without x64): `delta = sqrt(max(n, d)) * eps * s_max`
    for every value. Elsewhere the float64 Gram of the (exact) float32
    features: eigenvalues to `dl = (n + m) * eps64 * ||Z||_F^2` (the Gram's
    sums and a backward-stable `eigh`, worst case), so `s_k` to
    `min(sqrt(dl), dl / (2 s_k))`. The cut is the library's,
    `sqrt(max(n, d)) * eps * s_max`. Returns `(s, ds, cut, zero_error)`,
    `zero_error` the largest round-off of a true zero.
    """
    from tests import reference
    from tests.helpers import float64_supported

    z = reference.centred(z, center)
    s = reference.singular_values(z)
    n, d = z.shape
    cut = np.sqrt(max(n, d)) * EPS32 * s.max()
    if not float64_supported():
        return s, np.full_like(s, cut), cut, cut
    dl = (n + min(n, d)) * EPS64 * np.sum(s**2)
    ds = np.minimum(np.sqrt(dl), dl / (2 * np.where(s > 0, s, np.inf)))
    return s, ds, cut, np.sqrt(dl)


def rank_me_tolerance(z, center=False, spectrum="singular_values"):
    """Relative float32 error bound of `rank_me(z)` (the module notes)."""
    s, ds, cut, zero_error = singular_value_errors(z, center)
    if s.max() == 0:
        return SAFETY * EPS32
    zero = s <= max(z.shape) * EPS64 * s.max()
    if spectrum == "singular_values":
        v, dv, v_zero = s, ds, zero_error
    else:
        v, dv, v_zero = s**2, 2 * s * ds + ds**2, zero_error**2
    near = s <= cut + ds  # may be dropped: the whole term
    v, dv, near = v[~zero], dv[~zero], near[~zero]
    total = v.sum()
    p = v / total
    h = -np.sum(p * np.log(p))
    weight = np.abs(np.log(p) + h) / total
    error = np.sum(weight * np.where(near, v + dv, dv))
    if zero_error >= cut:  # the round-off of a true zero may survive the cut
        q = v_zero / total
        error += np.count_nonzero(zero) * q * abs(np.log(q) + h)
    return SAFETY * float(error) + EPS32  # + the float32 result's rounding


def alpha_tolerance(z, fit_range=None, weighting="uniform", center=True):
    """Absolute float32 error bound of `alpha_req(z)` (the module notes).

    Requires every fitted singular value to be far above the cut (a point
    that may be dropped would move the slope by its whole influence): the
    test data are chosen so.
    """
    from tests import reference

    s, ds, cut, _ = singular_value_errors(z, center)
    keep = s > max(z.shape) * EPS64 * s.max()
    s, ds = s[keep], ds[keep]
    inside, k = reference.fit_points(s.size, fit_range)
    s, ds, k = s[inside], ds[inside], k[inside]
    assert np.all(s > 10 * (cut + ds)), "a fitted value near the cut: no first-order bound"
    w = 1.0 / k if weighting == "inverse_rank" else np.ones(k.size)
    x = np.log(k)
    x_bar = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - x_bar) ** 2)
    alpha = -np.sum(w * (x - x_bar) * 2 * np.log(s)) / sxx
    error = np.sum(w * np.abs(x - x_bar) * 2 * ds / s) / sxx
    return SAFETY * float(error) + EPS32 * abs(alpha)  # + the float32 result's rounding


# Scale invariance: every measure is scale-invariant, so features multiplied by
# 1e-30 ... 1e30 (finite in float32) must give the values of the unscaled features.
# Multiplying by a power of ten rounds every entry (relative `eps = 6e-8`); on
# well-conditioned data (tests.helpers.edge_case_data) the measures move by a few
# `eps` at first order, so `rtol = 1e-5` (plus `atol = 1e-6` for values near 0) is
# the float32 bound with room, not a value read off one machine.
SCALE_RTOL, SCALE_ATOL = 1e-5, 1e-6


# Bounds of single quantities the tests of several modules compare.
def gram_tolerance(z, center=False, mean=None, dtype="float32"):
    """Absolute bound of the entries of the library's `gram(z, center, mean)`.

    An entry of the Gram of unit rows is a dot product of `d` float32 terms of
    rows normalised by a norm of `d` terms and a division (`2 d + 2` roundings,
    worst case, on entries of scale 1). Centring rounds relative to the raw
    rows: the mean is a sum of `n` terms and the difference one more rounding,
    relative to `max ||z_i|| + ||mean||`, which the normalisation divides by
    `||z_i - mean||`: that ratio (the condition number of centring) multiplies
    those `n + 1` roundings, twice (two rows per entry).
    """
    z = np.asarray(z, dtype=np.float64)
    n, d = z.shape[-2:]
    eps = EPS32 if dtype == "float32" else EPS64
    terms = 2 * d + 2
    if center or mean is not None:
        m = z.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float64)
        norms = np.linalg.norm(z - m, axis=-1)
        raw = np.linalg.norm(z, axis=-1).max() + np.linalg.norm(m)
        live = norms > 0
        amplification = raw / norms[live].min() if live.any() else 1.0
        terms += 2 * (n + 1) * amplification
    return SAFETY * terms * eps


def float64_ratio_tolerance(k1, k2, kind, alpha=1.0):
    """Float64 bound of MIR (`kind="mir"`) or HDR (`"hdr"`) of two Grams.

    MIR/HDR computed in float64 (the reference's `eigvalsh`, or the library on
    float64 inputs): `entropy_tolerance(..., dtype="float64")` of each Gram
    propagated through `ratio_tolerance`.
    """
    from tests import reference

    ks = [np.asarray(k, dtype=np.float64) for k in (k1, k2)]
    ks.append(ks[0] * ks[1])
    h = [reference.entropy(k, alpha) for k in ks]
    e = [entropy_tolerance(k, alpha, dtype="float64") for k in ks]
    return ratio_tolerance(*h, *e, kind=kind)


def cma_tolerance(z, anchors, labels, size=None):
    """Float32 bound of `cma_entropy(z, anchors, labels)` (the module notes, "CMA").

    The mean over the classes present of each group's entropy bound (its
    `n_c` rows and its anchor, decomposed at `size`, by default `n + P` the
    block-diagonal matrix's size, `P = len(anchors)`) divided by `log m_c`.
    """
    from tests import reference

    z = np.asarray(z, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=np.float64)
    labels = np.asarray(labels)
    size = size or len(z) + len(anchors)
    bounds = []
    for c in np.unique(labels):
        group = np.vstack([z[labels == c], anchors[c : c + 1]])
        bounds.append(entropy_tolerance(reference.gram(group), size=size) / np.log(len(group)))
    return float(np.mean(bounds))


def cross_entropy_tolerance(logits, labels, loss=None):
    """Float32 bound of the mean cross-entropy of `logits` (`n` rows of `C`) and `labels`.

    A log-sum-exp of `C` terms and a mean of `n`, at the loss's scale:
    `float32_tolerance(C + n, scale=|loss|)`; `loss` defaults to the float64
    reference's (`reference.cross_entropy`).
    """
    if loss is None:
        from tests import reference

        loss = reference.cross_entropy(logits, labels)
    return float32_tolerance(terms=np.shape(logits)[1] + len(labels), scale=abs(loss))


def logit_tolerance(outputs, terms):
    """Float32 round-off of a network's outputs: `terms` = fan-in x layers, at their scale."""
    return float32_tolerance(terms=terms, scale=np.max(np.abs(outputs)))


def chance_tolerance(means, head, permutations):
    """Float32 bound of MIR's chance level: the mean of `permuted_mir`'s values.

    A mean of MIRs, each within its `information_tolerance`: within the largest.
    """
    from tests import reference

    k_m = reference.gram(means)
    return max(information_tolerance(k_m, reference.gram(head[perm])) for perm in permutations)


def nc_tolerance(z, y, key=None):
    """Float32 bound of an NC measure of `(z, y)` (the module notes, "NC measures").

    The class statistics are float32 sums of `n` rows (`n + d` roundings with a
    row's norm), relative to the raw rows; the measures read centred class
    means, so that error is amplified by `(max ||z_i|| / min ||mu_c - mu_G||)^2`
    (second moments). NC1 multiplies by `Sigma_B`'s pseudo-inverse: the
    condition number of its non-zero spectrum.
    """
    z = np.asarray(z, np.float64)
    means = np.stack([z[y == c].mean(axis=0) for c in np.unique(y)]) - z.mean(axis=0)
    norms = np.linalg.norm(means, axis=1)
    amplification = (np.linalg.norm(z, axis=1).max() / norms.min()) ** 2
    bound = float32_tolerance(terms=len(z) + z.shape[1], scale=amplification)
    if key == "nc1":
        s = np.linalg.svd(means, compute_uv=False)
        s = s[s > max(means.shape) * EPS64 * s[0]]
        bound *= (s[0] / s[-1]) ** 2
    return bound


def rank_me_float64_tolerance(z, center=False, spectrum="singular_values"):
    """Relative bound of the library's float64 `rank_me(z)` against the float64 reference.

    Both sides in float64: the library's float64 Gram (`singular_value_errors`'
    float64 path) and the reference's SVD (`sqrt(max(n, d)) * eps64 * s_max`
    per value), through `dH = sum |log p_k + H| dv_k / T` (tests/ops/test_rank.py
    notes). True zeros of the reference (rank-deficient data) count as in
    `rank_me_tolerance`: their round-off adds a term only if it survives the
    library's cut; a value within its error of the cut may be dropped (its whole term).
    """
    z = np.asarray(z, dtype=np.float64)
    s, ds, cut, zero_error = singular_value_errors(z, center)
    ds = ds + np.sqrt(max(z.shape)) * EPS64 * s.max()
    zero = s <= max(z.shape) * EPS64 * s.max()
    near = (s <= cut + ds)[~zero]  # may be dropped: the whole term
    square = spectrum != "singular_values"
    v, dv = (s**2, 2 * s * ds + ds**2) if square else (s, ds)
    v, dv = v[~zero], dv[~zero]
    p = v / v.sum()
    h = -np.sum(p * np.log(p))
    error = np.sum(np.abs(np.log(p) + h) * np.where(near, v + dv, dv)) / v.sum()
    if zero_error >= cut:  # the round-off of a true zero may survive the cut
        q = (zero_error**2 if square else zero_error) / v.sum()
        error += np.count_nonzero(zero) * q * abs(np.log(q) + h)
    return SAFETY * float(error) + EPS64


def spectrum_ratio_errors(z):
    """Absolute float32 errors of the explained-variance ratios `s_k^2 / sum s^2` of centred `z`.

    A float32 SVD moves each `s_k` by `delta = sqrt(max(n, d)) * eps * s_max`;
    `s_k^2` by `2 s_k delta + delta^2`, the sum by the sum of those.
    """
    from tests import reference

    s = reference.singular_values(reference.centred(np.asarray(z, np.float64), True))
    delta = np.sqrt(max(np.shape(z))) * EPS32 * s.max()
    dv = 2 * s * delta + delta**2
    total = np.sum(s**2)
    return SAFETY * (dv / total + s**2 / total * dv.sum() / total)
