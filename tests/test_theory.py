"""Closed forms at Neural Collapse, and the ops reproducing them on collapsed features."""

import math

import numpy as np
import pytest

import tests.reference as ref
from keras_nc import ops as nc
from keras_nc import theory
from tests.helpers import to_numpy
from tests.tolerances import (
    entropy_tolerance,
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
