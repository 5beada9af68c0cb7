"""`keras_nc.ops.information` (MI, MIR, HDR) against the independent float64 NumPy
reference, on the active backend.
"""

import numpy as np
import pytest

import tests.reference as ref
import tests.tolerances as tol
from keras_nc import ops as nc
from tests.helpers import FEATURE_KINDS, feature_batch, to_numpy

# Values the library defines (MIR of a rank-one side) or computes twice the
# same way (HDR(K, K) = |H(K) - H(K)| / H(K)): no rounding separates them.
EXACT = 0.0


def assert_close(actual, expected, atol):
    # tol: rtol=0: the bounds of tests/tolerances.py are absolute
    np.testing.assert_allclose(to_numpy(actual), expected, atol=atol)


def _pair(kind, rng):
    """Float32 features of two related views of the same samples."""
    z1 = feature_batch(kind, rng)
    z2 = z1 @ rng.normal(size=(z1.shape[1], 4)) + 0.3 * rng.normal(size=(z1.shape[0], 4))
    return z1, z2.astype("float32")


def _ratio_bounds(k1, k2, alpha=1.0):
    """Reference MI, MIR, HDR of a float64 pair and their float32 error bounds."""
    h = [ref.entropy(k, alpha) for k in (k1, k2, k1 * k2)]
    e = [tol.entropy_tolerance(k, alpha) for k in (k1, k2, k1 * k2)]
    return {
        "mi": (h[0] + h[1] - h[2], sum(e)),
        "mir": (ref.mir(k1, k2, alpha), tol.ratio_tolerance(*h, *e, kind="mir")),
        "hdr": (ref.hdr(k1, k2, alpha), tol.ratio_tolerance(*h, *e, kind="hdr")),
    }


@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_mi_mir_hdr_match_reference(kind, rng):
    z1, z2 = _pair(kind, rng)
    a, b = nc.gram(z1), nc.gram(z2)
    # MI, MIR and HDR are differences of entropies: their float32 error is
    # the entropies' (tests/tolerances.py), not relative to the difference.
    want = _ratio_bounds(ref.gram(z1), ref.gram(z2))
    assert_close(nc.matrix_mutual_information(a, b), want["mi"][0], atol=want["mi"][1])
    assert_close(nc.mir(a, b), want["mir"][0], atol=want["mir"][1])
    assert_close(nc.hdr(a, b), want["hdr"][0], atol=want["hdr"][1])


@pytest.mark.parametrize("alpha", [2.0, 0.5, 3.0])
@pytest.mark.parametrize("rank_deficient", [False, True])
def test_renyi_mir_hdr_match_reference(alpha, rank_deficient, rng):
    z1 = rng.normal(size=(12, 5 if rank_deficient else 16)).astype("float32")
    z2 = (z1 @ rng.normal(size=(z1.shape[1], 20)) + rng.normal(size=(12, 20))).astype("float32")
    a, b = nc.gram(z1), nc.gram(z2)
    want = _ratio_bounds(ref.gram(z1), ref.gram(z2), alpha)
    assert_close(nc.mir(a, b, alpha=alpha), want["mir"][0], atol=want["mir"][1])
    assert_close(nc.hdr(a, b, alpha=alpha), want["hdr"][0], atol=want["hdr"][1])


def test_identical_grams_give_full_information(rng):
    k = ref.gram(rng.normal(size=(10, 10))).astype("float32")
    k64 = k.astype(np.float64)
    h = to_numpy(nc.matrix_entropy(k))
    hkk = ref.entropy(k64**2)
    # MI's bound, plus twice that of the measured h on the reference side.
    bound = tol.information_tolerance(k64, k64, "mi") + 2 * tol.entropy_tolerance(k64)
    assert_close(nc.matrix_mutual_information(k, k), 2 * h - hkk, atol=bound)
    assert_close(nc.hdr(k, k), 0.0, atol=EXACT)


def test_rank_one_grams_define_mir_and_hdr_as_zero():
    ones = np.ones((5, 5), dtype="float32")  # one-class batch: every row identical
    other = ref.gram(np.random.default_rng(0).normal(size=(5, 3))).astype("float32")
    ones64, other64 = ones.astype(np.float64), other.astype(np.float64)
    assert_close(nc.matrix_entropy(ones), 0.0, atol=tol.entropy_tolerance(ones64))
    assert_close(nc.mir(ones, ones), 0.0, atol=EXACT)
    assert_close(nc.hdr(ones, ones), 0.0, atol=EXACT)
    # One rank-1 side: I = 0 and min(H) = 0, MIR defined as 0; HDR is 1.
    assert_close(nc.mir(ones, other), 0.0, atol=EXACT)
    hdr_bound = tol.information_tolerance(ones64, other64, "hdr")
    assert_close(nc.hdr(ones, other), 1.0, atol=hdr_bound)
