"""Independent float64 NumPy reference for the mathematics of SPEC section 2.

Written from the definitions, not from `keras_nc.ops`: plain `numpy.linalg.eigvalsh`
on the full n x n matrices, no fast paths, no tolerances beyond clipping the
round-off negatives of `eigvalsh` at zero.
"""

import numpy as np


def gram(z, center=False, mean=None, eps=1e-6):
    z = np.asarray(z, dtype=np.float64)
    if mean is not None:
        z = z - np.asarray(mean, dtype=np.float64)
    elif center:
        z = z - z.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    zhat = z / np.maximum(norms, eps)
    return zhat @ zhat.T


def entropy(k, alpha=1.0):
    k = np.asarray(k, dtype=np.float64)
    tr = np.trace(k)
    if tr <= 0:
        return 0.0
    lam = np.clip(np.linalg.eigvalsh(k / tr), 0.0, None)
    lam = lam[lam > 1e-15]
    if alpha == 1.0:
        return float(-np.sum(lam * np.log(lam)))
    return float(np.log(np.sum(lam**alpha)) / (1.0 - alpha))


def mutual_information(k1, k2, alpha=1.0):
    k1, k2 = np.asarray(k1, np.float64), np.asarray(k2, np.float64)
    return entropy(k1, alpha) + entropy(k2, alpha) - entropy(k1 * k2, alpha)


def mir(k1, k2, alpha=1.0):
    """MIR; 0 when a Gram has rank 1 (SPEC 2.3 leaves the value to us: keras_nc says 0)."""
    h1, h2 = entropy(k1, alpha), entropy(k2, alpha)
    den = min(h1, h2)
    return 0.0 if den <= 1e-12 else mutual_information(k1, k2, alpha) / den


def hdr(k1, k2, alpha=1.0):
    """HDR; 0 when both Grams have rank 1."""
    h1, h2 = entropy(k1, alpha), entropy(k2, alpha)
    den = max(h1, h2)
    return 0.0 if den <= 1e-12 else abs(h1 - h2) / den


def etf_gram(num_classes):
    c = num_classes
    return c / (c - 1) * np.eye(c) - np.ones((c, c)) / (c - 1)
