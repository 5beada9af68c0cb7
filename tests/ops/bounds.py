"""Float32/float64 bounds of the ops tests beyond tests/tolerances.py (candidates to move there).

- `gram_tolerance`: an entry of the Gram of unit rows is a dot product of `d`
  float32 terms of rows normalised by a norm of `d` terms and a division
  (`2 d + 2` roundings, worst case, on entries of scale 1). Centring rounds
  relative to the raw rows: the mean is a sum of `n` terms and the difference
  one more rounding, relative to `max ||z_i|| + ||mean||`, which the
  normalisation divides by `||z_i - mean||`: that ratio (the condition number
  of centring) multiplies those `n + 1` roundings, twice (two rows per entry).
- `float64_ratio_tolerance`: MIR/HDR computed in float64 (the reference's
  `eigvalsh`, or the library on float64 inputs): `entropy_tolerance(..., dtype=
  "float64")` of each Gram propagated through `ratio_tolerance`.
- `cma_tolerance`: the CMA bound of tests/tolerances.py ("CMA").
- `rank_me_float64_tolerance`, `spectrum_ratio_errors`: RankMe in float64 and
  PCA's explained-variance ratios from a float32 SVD (tests/ops/test_rank.py notes).
"""

import numpy as np

from tests import reference
from tests.tolerances import EPS32, EPS64, SAFETY, entropy_tolerance, ratio_tolerance


def gram_tolerance(z, center=False, mean=None, dtype="float32"):
    """Absolute bound of the entries of the library's `gram(z, center, mean)` (module notes)."""
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
    """Float64 bound of MIR (`kind="mir"`) or HDR (`"hdr"`) of two Grams (module notes)."""
    ks = [np.asarray(k, dtype=np.float64) for k in (k1, k2)]
    ks.append(ks[0] * ks[1])
    h = [reference.entropy(k, alpha) for k in ks]
    e = [entropy_tolerance(k, alpha, dtype="float64") for k in ks]
    return ratio_tolerance(*h, *e, kind=kind)


def cma_tolerance(z, anchors, labels, size=None):
    """Float32 bound of `cma_entropy(z, anchors, labels)` (tests/tolerances.py, "CMA").

    The mean over the classes present of each group's entropy bound (its
    `n_c` rows and its anchor, decomposed at `size`, by default `n + P` the
    block-diagonal matrix's size) divided by `log m_c`.
    """
    z = np.asarray(z, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=np.float64)
    labels = np.asarray(labels)
    size = size or len(z) + len(anchors)
    bounds = []
    for c in np.unique(labels):
        group = np.vstack([z[labels == c], anchors[c : c + 1]])
        bounds.append(entropy_tolerance(reference.gram(group), size=size) / np.log(len(group)))
    return float(np.mean(bounds))


def rank_me_float64_tolerance(z, center=False, spectrum="singular_values"):
    """Relative bound of the library's float64 `rank_me(z)` against the float64 reference.

    Both sides in float64: the library's float64 Gram (`singular_value_errors`'
    float64 path) and the reference's SVD (`sqrt(max(n, d)) * eps64 * s_max`
    per value), through `dH = sum |log p_k + H| dv_k / T` (tests/ops/test_rank.py
    notes). True zeros of the reference (rank-deficient data) count as in
    `rank_me_tolerance`: their round-off adds a term only if it survives the
    library's cut; a value within its error of the cut may be dropped (its whole term).
    """
    from tests.tolerances import singular_value_errors

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
    s = reference.singular_values(reference.centred(np.asarray(z, np.float64), True))
    delta = np.sqrt(max(np.shape(z))) * EPS32 * s.max()
    dv = 2 * s * delta + delta**2
    total = np.sum(s**2)
    return SAFETY * (dv / total + s**2 / total * dv.sum() / total)
