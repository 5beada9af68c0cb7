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


def cma(features, anchors, labels):
    """SPEC 2.8 with a Python loop over the classes present, as the authors' code does."""
    values = []
    for c in np.unique(labels):
        group = np.vstack([features[labels == c], anchors[c : c + 1]])
        values.append(entropy(gram(group)) / np.log(len(group)))
    return float(np.mean(values))


def class_pairing(features, labels, head, num_classes):
    """Class pairing Grams: globally centred means of present classes vs their head rows."""
    present = [c for c in range(num_classes) if np.any(labels == c)]
    means = np.stack([features[labels == c].mean(axis=0) for c in present])
    return gram(means, mean=features.mean(axis=0)), gram(head[present])


def neural_collapse(features, labels, head, num_classes):
    """NC1, CDNV, ETF error, equinorm, self-duality and class means, in float64."""
    z = np.asarray(features, np.float64)
    present = [c for c in range(num_classes) if np.any(labels == c)]
    c_ = len(present)
    mu = np.stack([z[labels == c].mean(axis=0) for c in present])
    centred = mu - z.mean(axis=0)
    row = {c: i for i, c in enumerate(present)}
    residual = z - mu[[row[c] for c in labels]]
    sigma_w = residual.T @ residual / len(z)
    sigma_b = centred.T @ centred / c_
    var = np.array(
        [
            np.mean(np.sum((z[labels == c] - m) ** 2, axis=1))
            for c, m in zip(present, mu, strict=True)
        ]
    )
    pairs = [(i, j) for i in range(c_) for j in range(c_) if i != j]
    g = centred @ centred.T
    norms = np.linalg.norm(centred, axis=1)
    w = np.asarray(head, np.float64)[present]
    return {
        "nc1": float(np.trace(sigma_w @ np.linalg.pinv(sigma_b)) / c_),
        "cdnv": float(
            np.mean([(var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2)) for i, j in pairs])
        ),
        "etf_error": float(
            np.linalg.norm(
                g / np.linalg.norm(g) - (np.eye(c_) - np.ones((c_, c_)) / c_) / np.sqrt(c_ - 1)
            )
        ),
        "equinorm": float(norms.std() / norms.mean()),
        "self_duality": float(
            np.sum((w / np.linalg.norm(w) - centred / np.linalg.norm(centred)) ** 2)
        ),
        "means": mu,
        "present": present,
    }
