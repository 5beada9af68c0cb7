"""Closed forms at Neural Collapse, and the ops reproducing them on collapsed features."""

import functools
import math

import keras
import numpy as np
import pytest
from scipy import optimize

import tests.reference as ref
from keras_nc import ops as nc
from keras_nc import theory
from tests.helpers import to_numpy
from tests.tolerances import (
    EPS32,
    SAFETY,
    entropy_tolerance,
    float32_tolerance,
    float64_ratio_tolerance,
    float64_tolerance,
    information_tolerance,
)

# MIR* for C = 3, 4, 10, 100: the table of docs/concepts.md, "Values at Neural Collapse"
# (the closed forms of arXiv 2409.16767).
MIR_STAR_TABLE = {3: 0.5, 4: 0.753953, 10: 0.952351, 100: 0.997813}
# The table prints 6 decimals: half a unit of the last one is its rounding.
TABLE_ROUNDING = 5e-7


def etf_tolerance(c, dim):
    """Float64 bound of `simplex_etf(c, dim)`'s entries and of their dot products.

    The Helmert frame (a few roundings per entry, sums of up to `c` terms), a
    Householder QR of a `dim x dim` matrix (orthogonality to `dim * eps64`),
    the product by its `Q` and a dot product of two rows (`dim` terms each).
    """
    return float64_tolerance(terms=c + 3 * dim)


@pytest.mark.parametrize("c", sorted(MIR_STAR_TABLE))
def test_mir_at_collapse_matches_spec_table(c):
    assert theory.mir_at_collapse(c) == pytest.approx(MIR_STAR_TABLE[c], abs=TABLE_ROUNDING)


@pytest.mark.parametrize("c", [3, 4, 5, 10, 37, 100])
def test_closed_forms_match_eigendecomposition_of_etf_gram(c):
    g = ref.etf_gram(c)
    h = ref.entropy(g)
    h_joint = ref.entropy(g * g)
    # The reference's float64 `eigh` against the closed forms (float64 scalar arithmetic).
    tol_h = entropy_tolerance(g, dtype="float64")
    assert theory.entropy_at_collapse(c) == pytest.approx(h, abs=tol_h)
    tol_mir = float64_ratio_tolerance(g, g, "mir")
    assert theory.mir_at_collapse(c) == pytest.approx((2 * h - h_joint) / h, abs=tol_mir)
    assert theory.hdr_at_collapse(c) == 0.0
    assert theory.entropy_at_collapse(c) == math.log(c - 1)  # the same expression


@pytest.mark.parametrize("c", [2, 3, 7])
@pytest.mark.parametrize("dim", [None, "c-1", "c+5"])
@pytest.mark.parametrize("seed", [None, 3])
def test_simplex_etf_geometry(c, dim, seed):
    dim = {None: None, "c-1": c - 1, "c+5": c + 5}[dim]
    m = theory.simplex_etf(c, dim=dim, seed=seed)
    assert m.shape == (c, c if dim is None else dim)
    tol = etf_tolerance(c, m.shape[1])
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, atol=tol)
    np.testing.assert_allclose(m.sum(axis=0), 0.0, atol=tol)
    np.testing.assert_allclose(m @ m.T, ref.etf_gram(c), atol=tol)


@pytest.mark.parametrize("c", [3, 4, 10, 100])
def test_ops_on_collapsed_features_reach_closed_forms(c):
    """Sample-head pairing, balanced batch, features after a ReLU-like shift."""
    rng = np.random.default_rng(c)
    per_class = 3 if c < 100 else 2
    labels = np.repeat(np.arange(c), per_class)
    rng.shuffle(labels)
    means = theory.simplex_etf(c, dim=c + 8, seed=1)
    # Collapsed features: class mean times a scale, shifted by a common offset
    # (as features after a ReLU would be); the batch mean removes the offset.
    offset = 3.0 * np.abs(rng.normal(size=c + 8))
    features = 5.0 * means[labels] + offset
    # Head rows aligned with the class means, up to a global scale.
    head = 0.7 * means
    kz = nc.gram(features.astype("float32"), center=True)
    kw = nc.gram(head[labels].astype("float32"))
    # The float64 Grams of the same data are collapsed exactly (to float64
    # round-off): the float32 bounds of the test's own data apply to the closed forms.
    k_z, k_w = ref.gram(features, center=True), ref.gram(head[labels])
    tol_mir = information_tolerance(k_z, k_w, "mir")
    tol_hdr = information_tolerance(k_z, k_w, "hdr")
    tol_h = entropy_tolerance(k_z)
    assert to_numpy(nc.mir(kz, kw)) == pytest.approx(theory.mir_at_collapse(c), abs=tol_mir)
    assert to_numpy(nc.hdr(kz, kw)) == pytest.approx(0.0, abs=tol_hdr)
    assert to_numpy(nc.matrix_entropy(kz)) == pytest.approx(
        theory.entropy_at_collapse(c), abs=tol_h
    )
    assert to_numpy(nc.feature_entropy(features.astype("float32"), center=True)) == (
        pytest.approx(theory.entropy_at_collapse(c), abs=tol_h)
    )


def test_uncentred_relu_features_miss_the_collapse_values():
    """Without centring, shifted collapsed features do not reach MIR*/HDR*.

    docs/concepts.md, "Why centring matters".
    """
    c = 10
    labels = np.repeat(np.arange(c), 3)
    means = theory.simplex_etf(c, seed=0)
    features = np.maximum(means[labels] + 1.0, 0.0)  # non-negative, as after a ReLU
    kz = nc.gram(features.astype("float32"), center=False)
    kw = nc.gram(means[labels].astype("float32"))
    assert float(to_numpy(nc.hdr(kz, kw))) > 0.1
    h = float(to_numpy(nc.matrix_entropy(kz)))
    assert h < theory.entropy_at_collapse(c) - 0.2
    # Centring the same features recovers the collapse values.
    kc = nc.gram(features.astype("float32"), center=True)
    kc_ref, kw_ref = ref.gram(features, center=True), ref.gram(means[labels])
    assert ref.hdr(kc_ref, kw_ref) == pytest.approx(
        theory.hdr_at_collapse(c), abs=float64_ratio_tolerance(kc_ref, kw_ref, "hdr")
    )
    bound = information_tolerance(kc_ref, kw_ref, "hdr")
    assert float(to_numpy(nc.hdr(kc, kw))) == pytest.approx(ref.hdr(kc_ref, kw_ref), abs=bound)


@pytest.mark.parametrize("bad", [2, 1, 0, -3, 3.0, "10", True, None])
def test_theory_rejects_bad_num_classes(bad):
    for fn in (theory.mir_at_collapse, theory.hdr_at_collapse, theory.entropy_at_collapse):
        with pytest.raises(ValueError, match="`num_classes`"):
            fn(bad)


def test_simplex_etf_rejects_small_dim():
    with pytest.raises(ValueError, match="`dim` must be an integer >= num_classes - 1"):
        theory.simplex_etf(5, dim=3)
    with pytest.raises(ValueError, match="`num_classes`"):
        theory.simplex_etf(1)


_ETF_IN_SUBPROCESS = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("theory", sys.argv[1])
theory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(theory)
np.save(sys.argv[2], theory.simplex_etf(10, dim=32, seed=0))
"""


@pytest.mark.parametrize("coretype", ["Sandybridge", "Haswell"])
def test_simplex_etf_is_the_same_under_other_blas_kernels(coretype, tmp_path):
    # The frame is closed-form and the seeded rotation a QR of a seeded Gaussian
    # matrix (unique once the signs of diag(R) are fixed): another OpenBLAS
    # kernel changes it by round-off only. (An SVD of the centring matrix, as
    # before, picked a basis of a degenerate eigenspace that moved with the kernel.)
    import os
    import subprocess
    import sys

    out = tmp_path / "etf.npy"
    env = {**os.environ, "OPENBLAS_CORETYPE": coretype}
    subprocess.run(
        [sys.executable, "-c", _ETF_IN_SUBPROCESS, theory.__file__, str(out)], env=env, check=True
    )
    # Each run's Q is backward stable: another kernel moves it by up to
    # cond(A) times its round-off, A the seeded Gaussian matrix it factors.
    a = np.random.default_rng(0).normal(size=(32, 32))
    tol = 2 * etf_tolerance(10, 32) * np.linalg.cond(a)
    np.testing.assert_allclose(np.load(out), theory.simplex_etf(10, dim=32, seed=0), atol=tol)


# "Reading the measures" (docs/concepts.md): the collapse values are not bounds, and
# the Gram ratios cannot see whether the head is aligned with the class means. Float64
# NumPy reference only (no tolerance beyond round-off of float64 eigendecompositions).


@pytest.mark.parametrize("dim", [64, 512])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mir_star_is_not_a_maximum(dim, seed):
    """Unrelated class means and head rows at C = 10 score above MIR*."""
    rng = np.random.default_rng(seed)
    means, head = rng.normal(size=(2, 10, dim))
    value = ref.mir(ref.gram(means, center=True), ref.gram(head))
    # Measured margins: >= 0.009 above MIR* = 0.9524 at d = 64, >= 0.04 at d = 512;
    # float64 round-off is ~1e-13, so only a change of the measure can flip this.
    assert value > theory.mir_at_collapse(10)
    k_m, k_h = ref.gram(means, center=True), ref.gram(head)
    assert value <= 1.0 + float64_ratio_tolerance(k_m, k_h, "mir")


@pytest.mark.parametrize("c", [3, 4, 10])
def test_permuted_etf_head_reaches_the_collapse_values(c):
    """A head permuted among the classes scores MIR*, HDR* = 0; self-duality tells them apart."""
    means = theory.simplex_etf(c, dim=c + 3, seed=0)
    km = ref.gram(means, center=True)
    perm = np.roll(np.arange(c), 1)  # no class keeps its row
    for head in (means, means[perm]):
        kw = ref.gram(head)
        tol_mir = float64_ratio_tolerance(km, kw, "mir")
        tol_hdr = float64_ratio_tolerance(km, kw, "hdr")
        assert ref.mir(km, kw) == pytest.approx(theory.mir_at_collapse(c), abs=tol_mir)
        assert ref.hdr(km, kw) == pytest.approx(theory.hdr_at_collapse(c), abs=tol_hdr)

    def self_duality(head):
        return np.sum((head / np.linalg.norm(head) - means / np.linalg.norm(means)) ** 2)

    assert self_duality(means) == 0.0  # the same array twice: exact
    # ||a - b||^2 = 2 - 2 <a, b> with <a, b> = -1/(C-1) for permuted ETF rows:
    # the frame's round-off, the two norms and the sum of C * dim squares.
    tol = etf_tolerance(c, c + 3) + float64_tolerance(terms=3 * means.size, scale=4.0)
    assert self_duality(means[perm]) == pytest.approx(2.0 + 2.0 / (c - 1), abs=tol)


def test_hdr_is_blind_to_permuting_the_head():
    rng = np.random.default_rng(0)
    means, head = rng.normal(size=(2, 10, 16))
    km = ref.gram(means, center=True)
    values = [ref.hdr(km, ref.gram(head[rng.permutation(10)])) for _ in range(5)]
    # Both sides carry the float64 bound of HDR: their difference twice that.
    tol = 2 * float64_ratio_tolerance(km, ref.gram(head), "hdr")
    np.testing.assert_allclose(values, ref.hdr(km, ref.gram(head)), atol=tol)


# --------------------------------------------------------------------------- #
# Label smoothing (docs/label_smoothing.md): Keras' target (1 - s) one_hot + s/C.
# --------------------------------------------------------------------------- #

SMOOTHED_CASES = [(4, 0.05), (5, 0.1), (6, 0.3)]
DECAYS = (5e-3, 5e-4)  # both below the threshold (1 - s) / C of every case


def smoothed_target(c, s):
    return (1.0 - s) * np.eye(c) + s / c


def collapsed_cross_entropy(c, s, gap):
    """Smoothed cross-entropy of collapsed logits (true logit `gap` above the C - 1 others).

    `log-sum-exp - <target, logits>` with the true logit at 0 and the others at `-gap`.
    """
    return math.log1p((c - 1) * math.exp(-gap)) + (c - 1) * s / c * gap


def regularised_gap(c, s, decay):
    """The logit gap of the unconstrained-features model's minimiser (derived, not fitted).

    The model: `(1/C) sum_k CE_s(W h_k, k) + decay/2 (|W|^2 + |H|^2)`, one feature row per
    class. Its minimiser's logits `Z = H W^T` solve the convex `min CE + decay |Z|_*`
    (the balanced factorisation), whose class-symmetric solution is
    `Z = g (I - 11^T/C)`: objective `F(g) = log(1 + (C-1) e^-g) + (C-1) (s/C + decay) g`,
    and `F'(g) = 0` where a wrong class's softmax is `tau = s/C + decay`:
    `g = log(1/tau - (C - 1))`, positive while `decay < (1 - s)/C`. At `decay = 0` it is
    `log(1 + C (1 - s)/s)`, `theory.logit_gap_at_collapse`.
    """
    tau = s / c + decay
    return math.log(1.0 / tau - (c - 1))


def ufm_objective(x, c, dim, s, decay):
    """Value and gradient of the model of `regularised_gap`, `x` = (W, H) flattened."""
    w, h = x[: c * dim].reshape(c, dim), x[c * dim :].reshape(c, dim)
    y = smoothed_target(c, s)
    z = h @ w.T
    top = z.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    g = (np.exp(z - lse[:, None]) - y) / c
    value = np.mean(lse - (y * z).sum(axis=1)) + decay / 2 * (x @ x)
    return value, np.concatenate([(g.T @ h).ravel(), (g @ w).ravel()]) + decay * x


@functools.cache
def ufm_minimiser(c, s, decay, seed=0):
    """`(W, H, |grad|)`: a float64 minimiser from a random start, independent of keras_nc.

    L-BFGS, then Newton steps on a central-difference Hessian (least squares: the
    rotations `W R, H R` are flat directions) down to float64 round-off.
    """
    dim = c + 2
    args = (c, dim, s, decay)
    x = np.random.default_rng(seed).normal(size=2 * c * dim)
    x = optimize.minimize(ufm_objective, x, args=args, jac=True, method="L-BFGS-B").x
    step = 1e-6
    for _ in range(3):
        grad = ufm_objective(x, *args)[1]
        columns = [ufm_objective(x + e, *args)[1] - ufm_objective(x - e, *args)[1]
                   for e in step * np.eye(x.size)]  # fmt: skip
        hessian = np.stack(columns) / (2 * step)
        x = x - np.linalg.lstsq((hessian + hessian.T) / 2, grad, rcond=1e-10)[0]
    w, h = x[: c * dim].reshape(c, dim), x[c * dim :].reshape(c, dim)
    return w, h, float(np.linalg.norm(ufm_objective(x, *args)[1]))


def etf_gram_bound(c):
    """How far from the ETF Gram the optimum's Grams may be for the float32 bounds to hold.

    The float32 analysis (tests/tolerances.py) moves each eigenvalue of `rho = K / C` by
    `delta = sqrt(C) eps32 max(rho)`, `max(rho) = 1/(C - 1)` for the ETF; entries off by
    at most `eta` move them by at most `||dK||_F / C <= eta`. So `eta <= delta` keeps the
    optimiser's error inside one float32 delta.
    """
    return math.sqrt(c) * EPS32 / (c - 1)


def gap_tolerance(c, s, decay, w, grad_norm, logits):
    """Bound of the found gap's distance from `regularised_gap` (first order).

    Along the collapsed path `W = H = a M` (`M` unit ETF rows), `g = a^2 C/(C-1)` and
    `|F'(g)| <= |grad| sqrt(2C) (C-1) / (2 a C)`; `F'' = (C-1) tau (1 - (C-1) tau)` at the
    minimum turns that into a distance; plus the float64 rounding of the logits
    (`dim` products at their scale) and of the difference.
    """
    a = float(np.sqrt(np.mean(np.sum(w**2, axis=1))))
    slope = grad_norm * math.sqrt(2 * c) * (c - 1) / (2 * a * c)
    tau = s / c + decay
    curvature = (c - 1) * tau * (1 - (c - 1) * tau)
    rounding = float64_tolerance(terms=w.shape[1] + 2, scale=np.max(np.abs(logits)))
    return SAFETY * slope / curvature + rounding


def found_gaps(w, h):
    z = h @ w.T  # row k: the logits of class k's feature
    gaps = np.diag(z)[:, None] - z
    return z, gaps[~np.eye(len(z), dtype=bool)]


@pytest.mark.parametrize("c", [2, 3, 10, 100])
@pytest.mark.parametrize("s", [0.01, 0.1, 0.3, 0.9])
def test_smoothed_cross_entropy_floor_is_the_target_entropy(c, s):
    y = smoothed_target(c, s)[0]
    entropy = -np.sum(y * np.log(y))
    floor = theory.cross_entropy_at_collapse(c, s)
    # Both float64 sums of C terms of magnitude at most log C.
    tol = float64_tolerance(terms=2 * c, scale=max(1.0, math.log(c)))
    assert floor == pytest.approx(entropy, abs=tol)
    # At the gap the softmax is the target, so the loss meets the floor.
    gap = theory.logit_gap_at_collapse(c, s)
    logits = np.where(np.arange(c) == 0, gap, 0.0)
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(softmax, y, rtol=float64_tolerance(terms=2 * c, scale=gap))
    assert collapsed_cross_entropy(c, s, gap) == pytest.approx(floor, abs=tol * gap)
    assert regularised_gap(c, s, 0.0) == pytest.approx(gap, rel=float64_tolerance(terms=4))


def test_smoothing_moves_the_floor_and_the_gap_only():
    assert theory.cross_entropy_at_collapse(10) == 0.0
    assert theory.logit_gap_at_collapse(10, 0.0) == math.inf
    smoothings = [0.0, 0.05, 0.1, 0.2, 0.3, 0.9, 0.999]
    floors = [theory.cross_entropy_at_collapse(10, s) for s in smoothings]
    gaps = [theory.logit_gap_at_collapse(10, s) for s in smoothings]
    assert np.all(np.diff(floors) > 0) and np.all(np.diff(gaps) < 0)
    # s -> 1: the floor tends to log C, the gap to 0 (log(1 + x) <= x, x = C (1 - s) / s).
    assert floors[-1] < math.log(10)
    assert 0 < gaps[-1] <= 10 * (1 - smoothings[-1]) / smoothings[-1]
    # Keras' smoothing at s = 0.1, C = 10: p = 0.91, q = 0.01, gap log(0.91 / 0.01);
    # the floor as the docstring prints it (6 decimals).
    floor = theory.cross_entropy_at_collapse(10, 0.1)
    assert floor == pytest.approx(0.500288, abs=TABLE_ROUNDING)
    gap = theory.logit_gap_at_collapse(10, 0.1)
    assert gap == pytest.approx(math.log(91), abs=float64_tolerance(terms=4, scale=gap))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, math.nan, "0.1", True, None])
def test_smoothing_functions_reject_bad_label_smoothing(bad):
    for fn in (theory.cross_entropy_at_collapse, theory.logit_gap_at_collapse):
        with pytest.raises(ValueError, match="`label_smoothing`"):
            fn(10, bad)
        with pytest.raises(ValueError, match="`num_classes`"):
            fn(1, 0.1)


@pytest.mark.parametrize("s", [0.05, 0.1, 0.3])
def test_keras_smoothed_loss_meets_the_floor_at_the_gap(s):
    """Keras' `CategoricalCrossentropy(label_smoothing=s)` is the loss the closed forms describe."""
    c = 10
    gap = theory.logit_gap_at_collapse(c, s)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=s)
    labels = np.eye(c, dtype="float32")
    for shift in (-0.5, 0.0, 0.5):
        logits = ((gap + shift) * np.eye(c)).astype("float32")
        value = float(to_numpy(loss(labels, logits)))
        expected = collapsed_cross_entropy(c, s, gap + shift)
        # A log-sum-exp of C terms and a mean of C rows, at the logits' scale.
        tol = float32_tolerance(terms=2 * c, scale=gap + abs(shift) + expected)
        assert value == pytest.approx(expected, abs=tol)
        if shift:  # the floor is a strict minimum over the gap
            assert expected > theory.cross_entropy_at_collapse(c, s) + tol


@pytest.mark.parametrize("c, s", SMOOTHED_CASES)
@pytest.mark.parametrize("decay", DECAYS)
def test_unconstrained_features_minimiser_is_the_simplex_etf(c, s, decay):
    """Float64, no keras_nc: smoothed CE + weight decay collapses to the ETF at every s."""
    w, h, grad_norm = ufm_minimiser(c, s, decay)
    eta = etf_gram_bound(c)
    np.testing.assert_allclose(ref.gram(h, center=True), ref.etf_gram(c), atol=eta)
    np.testing.assert_allclose(ref.gram(w), ref.etf_gram(c), atol=eta)
    # Self-duality: the head rows are the class features (the balanced factorisation).
    np.testing.assert_allclose(w, h, atol=eta * np.abs(w).max())
    logits, gaps = found_gaps(w, h)
    tol = gap_tolerance(c, s, decay, w, grad_norm, logits)
    np.testing.assert_allclose(gaps, regularised_gap(c, s, decay), atol=tol)
    assert gaps.max() < theory.logit_gap_at_collapse(c, s)
    # Its smoothed cross-entropy: the closed form at that gap, above the floor.
    measured = float(np.mean(ufm_objective(np.concatenate([w.ravel(), h.ravel()]), c,
                                           c + 2, s, 0.0)[0]))  # fmt: skip
    expected = collapsed_cross_entropy(c, s, regularised_gap(c, s, decay))
    slope = (c - 1) * decay  # |F_0'(g)| at the regularised gap (F_0: no decay)
    assert measured == pytest.approx(expected, abs=slope * tol + float64_tolerance(4 * c))
    assert measured > theory.cross_entropy_at_collapse(c, s) + slope * tol


@pytest.mark.parametrize("c, s", SMOOTHED_CASES)
def test_less_weight_decay_approaches_the_unregularised_gap_and_floor(c, s):
    (w1, h1, _), (w2, h2, _) = (ufm_minimiser(c, s, decay) for decay in DECAYS)
    floor, gap = theory.cross_entropy_at_collapse(c, s), theory.logit_gap_at_collapse(c, s)
    losses = [ufm_objective(np.concatenate([w.ravel(), h.ravel()]), c, c + 2, s, 0.0)[0]
              for w, h in ((w1, h1), (w2, h2))]  # fmt: skip
    assert floor < losses[1] < losses[0]
    assert found_gaps(w1, h1)[1].mean() < found_gaps(w2, h2)[1].mean() < gap
    # The closed form's limit: |g(decay) - g(0)| <= decay / (tau (1 - (C-1) tau)) at tau = s/C.
    tau = s / c
    for decay in (1e-6, 1e-9):
        bound = decay / (tau * (1 - (c - 1) * (tau + decay)))
        assert 0 < gap - regularised_gap(c, s, decay) <= bound


def test_weight_decay_above_the_threshold_learns_nothing():
    """At decay > (1 - s)/C the minimiser is W = H = 0: no features, no collapse (s -> 1)."""
    c, s = 5, 0.3
    decay = 1.5 * (1 - s) / c
    w, h, grad_norm = ufm_minimiser(c, s, decay)
    # Near 0 the objective is strongly convex with modulus decay - (1 - s)/C (the
    # gradient at 0 has operator norm (1 - s)/C): the distance to 0 is at most |grad| / that.
    bound = SAFETY * grad_norm / (decay - (1 - s) / c)
    assert np.sqrt(np.sum(w**2) + np.sum(h**2)) <= bound


@pytest.mark.parametrize("c, s", SMOOTHED_CASES)
def test_measures_of_the_smoothed_minimiser_are_the_collapse_values(c, s):
    """keras_nc's class pairing on the float64 minimiser, in float32: MIR*, HDR* at every s."""
    w, h, _ = ufm_minimiser(c, s, DECAYS[0])
    counts = np.ones(c, dtype="float32")
    mir, hdr = nc.class_pairing_ratios(counts, h.astype("float32"), w.astype("float32"))
    k_m, k_w = ref.gram(h, center=True), ref.gram(w)
    # The minimiser is the ETF to within one float32 delta (asserted above): its
    # float64 ratios are the closed forms to within the float32 bounds, and the
    # library's float32 ratios within those bounds of them.
    tol_mir = information_tolerance(k_m, k_w, "mir")
    tol_hdr = information_tolerance(k_m, k_w, "hdr")
    assert ref.mir(k_m, k_w) == pytest.approx(theory.mir_at_collapse(c), abs=tol_mir)
    assert ref.hdr(k_m, k_w) == pytest.approx(theory.hdr_at_collapse(c), abs=tol_hdr)
    assert float(to_numpy(mir)) == pytest.approx(theory.mir_at_collapse(c), abs=2 * tol_mir)
    assert float(to_numpy(hdr)) == pytest.approx(theory.hdr_at_collapse(c), abs=2 * tol_hdr)
