"""Closed-form values of the information-theoretic metrics at Neural Collapse.

At Neural Collapse with `C >= 3` balanced classes, the globally centred class
means form a simplex equiangular tight frame (ETF) and the classifier rows
align with them. Their cosine Gram is `G = C/(C-1) I - 1/(C-1) 11^T`, whence
(see the Concepts page):

- `H(G) = log(C - 1)`,
- `HDR* = 0`,
- `MIR* = 1/(C-1) + (C-2) log(C-2) / ((C-1) log(C-1))`.

These are the values *at* collapse, not bounds: MIR lies in `[0, 1]` and
unrelated rows can score above `MIR*` (random class means and head rows at
C = 10, d = 64 give a class-pairing MIR of about 0.97 against `MIR* = 0.952`),
and an HDR near 0 only says that two Grams have equally spread spectra. A MIR or
HDR near its collapse value is necessary for Neural Collapse, not sufficient:
NC1, the ETF error and the self-duality decide (see the "Reading the measures"
section of the Concepts page of the documentation, and
`keras_nc.ops.class_pairing_chance` for the chance levels).

Label smoothing does not change these values. With Keras' smoothing `s`
(`keras.losses.CategoricalCrossentropy(label_smoothing=s)`: target
`(1 - s) one_hot + s/C`) and weight decay, the global minimisers of the
unconstrained-features model are still a simplex ETF with the head rows
aligned to the class means (Zhou et al., "Are All Losses Created Equal: A
Neural Collapse Perspective", NeurIPS 2022; Guo et al., "Cross Entropy versus
Label Smoothing: A Neural Collapse Perspective", TMLR 2025), only with
smaller, finite norms. MIR and HDR compare cosine Grams, which do not see
norms, so `MIR*` and `HDR* = 0` hold for every `s < 1` (as long as the weight
decay leaves a non-zero minimiser; at `s = 1` the target is uniform and nothing
is learned). What smoothing changes is the scale: the smoothed cross-entropy at
collapse (`cross_entropy_at_collapse`) and the logit gap between the true class
and the others (`logit_gap_at_collapse`). The derivation is on the Label
smoothing page of the documentation.

These functions are plain Python/NumPy (float64): they are reference values,
not part of a computational graph.
"""

import math
import numbers

import numpy as np


def _check_num_classes(num_classes, minimum=3):
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ValueError(
            f"`num_classes` must be an integer >= {minimum}; received {num_classes!r}."
        )
    if num_classes < minimum:
        raise ValueError(
            f"`num_classes` must be >= {minimum}: with fewer classes the simplex ETF "
            f"is degenerate (its Gram has rank <= 1 and entropy 0); received {num_classes}."
        )
    return int(num_classes)


def simplex_etf(num_classes, dim=None, seed=None):
    """Rows of a simplex equiangular tight frame.

    Returns `num_classes` unit vectors in `R^dim` with pairwise cosine
    `-1/(num_classes - 1)` that sum to zero: the geometry of the centred class
    means (and of the classifier rows) at Neural Collapse.

    Args:
        num_classes: number of vectors `C >= 2`.
        dim: ambient dimension, at least `C - 1`; defaults to `C`.
        seed: if given, the frame is rotated by a random orthogonal matrix drawn
            with this seed (the same matrix on every machine, to round-off);
            otherwise the fixed closed-form orientation is used.

    Returns:
        A float64 NumPy array of shape `(num_classes, dim)`.

    Example:

    >>> from keras_nc import theory
    >>> m = theory.simplex_etf(4)
    >>> (m @ m.T).round(3)[0]
    array([ 1.   , -0.333, -0.333, -0.333])
    """
    c = _check_num_classes(num_classes, minimum=2)
    dim = c if dim is None else dim
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < c - 1:
        raise ValueError(
            f"`dim` must be an integer >= num_classes - 1 = {c - 1}; received {dim!r}."
        )
    # A closed-form orthonormal basis of the sum-zero subspace (the Helmert
    # contrasts): column k (k = 1..C-1) is (1, ..., 1, -k, 0, ..., 0) / sqrt(k(k+1))
    # with k ones. Its rows are the projected basis vectors e_c - 1/C, of norm
    # sqrt((C-1)/C); normalised, they have pairwise cosine -1/(C-1). Built
    # without any factorisation, so the frame is the same on every machine (an
    # SVD of the centring matrix would pick a basis of its degenerate eigenspace
    # that depends on the LAPACK kernels).
    frame = np.zeros((c, c - 1))
    for k in range(1, c):
        frame[:k, k - 1] = 1.0
        frame[k, k - 1] = -float(k)
        frame[:, k - 1] /= math.sqrt(k * (k + 1))
    frame = frame / math.sqrt((c - 1) / c)
    out = np.zeros((c, dim))
    out[:, : c - 1] = frame
    if seed is not None:
        q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
        out = out @ (q * np.sign(np.diag(r)))
    return out


def entropy_at_collapse(num_classes):
    """Matrix entropy of the simplex ETF Gram, `log(C - 1)` nats.

    The same under any label smoothing `s < 1` (see the module docstring).

    Args:
        num_classes: number of classes `C >= 3`.

    Returns:
        A Python float.

    Example:

    >>> from keras_nc import theory
    >>> round(theory.entropy_at_collapse(10), 4)
    2.1972
    """
    c = _check_num_classes(num_classes)
    return math.log(c - 1)


def mir_at_collapse(num_classes):
    """MIR at Neural Collapse: `1/(C-1) + (C-2) log(C-2) / ((C-1) log(C-1))`.

    The value of MIR when the centred class means form a simplex ETF and the
    head rows align with them. It is not a maximum: unrelated rows can score
    above it (random rows at C = 10, `d >= C` give 0.96 to 1.0), and since a
    simplex ETF's Gram is the same under every relabelling, a head permuted
    among the classes scores `MIR*` as well. A MIR near `MIR*` is necessary for
    collapse, not sufficient: read it with its chance level
    (`keras_nc.ops.class_pairing_chance`) and with NC1, the ETF error and the
    self-duality (the Concepts page, "Reading the measures").

    The same under any label smoothing `s < 1`: the minimisers of smoothed
    cross-entropy collapse to the same simplex ETF, with smaller norms, which
    the cosine Grams do not see (the module docstring; the Label smoothing page).

    Args:
        num_classes: number of classes `C >= 3`.

    Returns:
        A Python float (0.5 for C=3, 0.753953 for C=4, 0.952351 for C=10).

    Example:

    >>> from keras_nc import theory
    >>> round(theory.mir_at_collapse(10), 6)
    0.952351
    """
    c = _check_num_classes(num_classes)
    return 1.0 / (c - 1) + (c - 2) * math.log(c - 2) / ((c - 1) * math.log(c - 1))


def hdr_at_collapse(num_classes):
    """HDR at Neural Collapse: 0 (features and head share one Gram).

    HDR compares only the entropies of the two Grams, so any two Grams with
    equally spread spectra score near 0 (random class means and head rows:
    about 0.04 at C = 10, 0.002 at C = 100), and permuting the head rows
    leaves it unchanged. An HDR near 0 is
    necessary for collapse, not sufficient: NC1, the ETF error and the
    self-duality decide (the Concepts page, "Reading the measures").

    The same under any label smoothing `s < 1` (the module docstring).

    Args:
        num_classes: number of classes `C >= 3`.

    Returns:
        The Python float `0.0`.

    Example:

    >>> from keras_nc import theory
    >>> theory.hdr_at_collapse(10)
    0.0
    """
    _check_num_classes(num_classes)
    return 0.0


def _check_smoothing(label_smoothing):
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise ValueError(
            f"`label_smoothing` must be a number in [0, 1); received {label_smoothing!r}."
        )
    s = float(label_smoothing)
    if not 0.0 <= s < 1.0:
        raise ValueError(
            "`label_smoothing` must lie in [0, 1): at 1 Keras' smoothed target is uniform, "
            "any constant logits minimise the loss and nothing collapses; "
            f"received {label_smoothing!r}."
        )
    return s


def cross_entropy_at_collapse(num_classes, label_smoothing=0.0):
    """Smoothed cross-entropy at Neural Collapse: the entropy of the smoothed target (nats).

    With Keras' label smoothing `s` the target of a sample of class `k` is
    `(1 - s) e_k + s/C`: `p = 1 - s + s/C` on the true class, `q = s/C` on
    each other. Cross-entropy is at least the target's entropy,
    `-p log p - (C - 1) q log q`, with equality exactly when the softmax equals
    the target, which collapsed logits with the gap `logit_gap_at_collapse`
    achieve. This is the floor of the training loss: 0 without smoothing
    (approached, never reached, as the logits grow), positive and reached at
    finite logits with it. With weight decay the minimiser stops short of the
    gap, so the loss it reaches lies above this floor.

    Args:
        num_classes: number of classes `C >= 2`.
        label_smoothing: Keras' `label_smoothing`, in `[0, 1)`.

    Returns:
        A Python float.

    Example:

    >>> from keras_nc import theory
    >>> theory.cross_entropy_at_collapse(10)
    0.0
    >>> round(theory.cross_entropy_at_collapse(10, label_smoothing=0.1), 6)
    0.500288
    """
    c = _check_num_classes(num_classes, minimum=2)
    s = _check_smoothing(label_smoothing)
    if s == 0.0:
        return 0.0
    off = s * (c - 1) / c  # target mass off the true class
    q = s / c
    return -(1.0 - off) * math.log1p(-off) - (c - 1) * q * math.log(q)


def logit_gap_at_collapse(num_classes, label_smoothing):
    """Logit of the true class minus each other logit, where the loss meets its floor.

    The softmax equals the smoothed target `(1 - s) e_k + s/C` when the true
    logit exceeds every other one by `log(1 + C (1 - s) / s)` (the other
    logits equal): the gap that minimises the smoothed cross-entropy of
    collapsed logits without weight decay. It is infinite at `s = 0` (plain
    cross-entropy keeps pushing the logits apart) and falls to 0 as `s -> 1`.
    Weight decay stops the minimiser at a smaller gap, approaching this one
    as the decay goes to 0 (the Label smoothing page derives it for the
    unconstrained-features model).

    Args:
        num_classes: number of classes `C >= 2`.
        label_smoothing: Keras' `label_smoothing`, in `[0, 1)`.

    Returns:
        A Python float (`math.inf` at `label_smoothing=0`).

    Example:

    >>> from keras_nc import theory
    >>> round(theory.logit_gap_at_collapse(10, label_smoothing=0.1), 6)
    4.51086
    >>> theory.logit_gap_at_collapse(10, label_smoothing=0.0)
    inf
    """
    c = _check_num_classes(num_classes, minimum=2)
    s = _check_smoothing(label_smoothing)
    if s == 0.0:
        return math.inf
    return math.log1p(c * (1.0 - s) / s)
