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
