"""Independent float64 NumPy reference for the mathematics of arXiv 2409.16767 (section 2).

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
    """MIR; 0 when a Gram has rank 1 (the paper leaves the value open: keras_nc says 0)."""
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


def cross_entropy(logits, labels):
    """Mean sparse categorical cross-entropy of `logits` (a log-sum-exp per row) in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(labels)), labels]))


def cma(features, anchors, labels):
    """The CMA entropy (arXiv 2409.16767), a Python loop over the classes present."""
    values = []
    for c in np.unique(labels):
        group = np.vstack([features[labels == c], anchors[c : c + 1]])
        values.append(entropy(gram(group)) / np.log(len(group)))
    return float(np.mean(values))


def permuted_mir(means, head, permutations):
    """MIR of the (centred) class means' Gram with each permutation of the head rows'."""
    k_m = gram(means)
    return np.asarray([mir(k_m, gram(head[perm])) for perm in permutations])


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


# RankMe and alpha-ReQ (tests/ops/test_rank.py): from the singular values of the full
# `(n, d)` matrix (`numpy.linalg.svd` in float64), cut at float64 round-off.
_EPS64 = 2.0**-52


def centred(z, center):
    z = np.asarray(z, np.float64)
    return z - z.mean(axis=0) if center else z


def singular_values(z):
    return np.linalg.svd(np.asarray(z, np.float64), compute_uv=False)


def nonzero_singular_values(s, shape):
    """The float64 singular values above float64 round-off (`matrix_rank`'s cut)."""
    return s[s > max(shape) * _EPS64 * s.max()] if s.size and s.max() > 0 else s[:0]


def rank_me(z, center=False, spectrum="singular_values", epsilon=0.0):
    z = centred(z, center)
    s = singular_values(z)
    v = nonzero_singular_values(s, z.shape)
    if v.size == 0:
        return 1.0
    v = v if spectrum == "singular_values" else v**2
    p = v / v.sum()
    if epsilon:
        p = np.concatenate([p, np.zeros(min(z.shape) - p.size)]) + epsilon
    return float(np.exp(-np.sum(p * np.log(p))))


def fit_points(n_values, fit_range):
    k = np.arange(1, n_values + 1)
    if fit_range is None:
        return np.ones(n_values, bool), k
    return (k >= fit_range[0]) & (k <= fit_range[1]), k


def alpha_req(z, fit_range=None, weighting="uniform", center=True):
    z = centred(z, center)
    lam = nonzero_singular_values(singular_values(z), z.shape) ** 2 / len(z)
    inside, k = fit_points(lam.size, fit_range)
    lam, k = lam[inside], k[inside]
    if lam.size < 2:
        return 0.0
    w = 1.0 / k if weighting == "inverse_rank" else np.ones(k.size)
    # polyfit weighs residuals (not their squares) by `w`.
    return float(-np.polyfit(np.log(k), np.log(lam), 1, w=np.sqrt(w))[0])
