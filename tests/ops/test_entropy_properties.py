"""Property tests (hypothesis) of the matrix information quantities."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from keras_nc import ops as nc
from tests.helpers import to_numpy

TOL = 2e-4


@st.composite
def feature_pairs(draw):
    """Two feature sets of the same n samples, with occasional degeneracies."""
    n = draw(st.integers(2, 14))
    d1 = draw(st.integers(1, 9))
    d2 = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d1))
    z2 = rng.normal(size=(n, d2))
    if draw(st.booleans()):  # correlate the two views
        z2 = z1 @ rng.normal(size=(d1, d2)) + 0.1 * z2
    if n > 2 and draw(st.booleans()):  # duplicated row
        z1[1] = z1[0]
    if n > 3 and draw(st.booleans()):  # zero row
        z2[2] = 0.0
    return z1.astype("float32"), z2.astype("float32")


def _h(k):
    return float(to_numpy(nc.matrix_entropy(k)))


@given(feature_pairs(), st.integers(0, 2**31 - 1))
def test_permutation_invariance(pair, seed):
    z1, z2 = pair
    perm = np.random.default_rng(seed).permutation(z1.shape[0])
    k1, k2 = to_numpy(nc.gram(z1)), to_numpy(nc.gram(z2))
    p1, p2 = k1[perm][:, perm], k2[perm][:, perm]
    np.testing.assert_allclose(_h(p1), _h(k1), atol=TOL)
    np.testing.assert_allclose(to_numpy(nc.mir(p1, p2)), to_numpy(nc.mir(k1, k2)), atol=TOL)
    np.testing.assert_allclose(to_numpy(nc.hdr(p1, p2)), to_numpy(nc.hdr(k1, k2)), atol=TOL)


@given(feature_pairs(), st.integers(0, 2**31 - 1))
def test_invariance_to_row_scaling(pair, seed):
    z1, _ = pair
    scales = np.random.default_rng(seed).uniform(0.1, 10.0, size=(z1.shape[0], 1))
    h = to_numpy(nc.feature_entropy(z1))
    hs = to_numpy(nc.feature_entropy((z1 * scales).astype("float32")))
    np.testing.assert_allclose(hs, h, atol=TOL)
    k = to_numpy(nc.gram(z1))
    np.testing.assert_allclose(_h(3.7 * k), _h(k), atol=TOL)


@given(feature_pairs())
def test_symmetry(pair):
    k1, k2 = nc.gram(pair[0]), nc.gram(pair[1])
    for fn in (nc.matrix_mutual_information, nc.mir, nc.hdr):
        np.testing.assert_allclose(to_numpy(fn(k1, k2)), to_numpy(fn(k2, k1)), atol=TOL)


@given(feature_pairs())
def test_entropy_bounds(pair):
    k = nc.gram(pair[0])
    n = pair[0].shape[0]
    h = _h(k)
    assert -TOL <= h <= np.log(n) + TOL
    hn = float(to_numpy(nc.matrix_entropy(k, normalize=True)))
    assert -TOL <= hn <= 1 + TOL


@given(feature_pairs(), st.sampled_from([1.0, 2.0]))
def test_joint_entropy_bounds_and_ratio_ranges(pair, alpha):
    k1, k2 = nc.gram(pair[0]), nc.gram(pair[1])
    h1 = float(to_numpy(nc.matrix_entropy(k1, alpha=alpha)))
    h2 = float(to_numpy(nc.matrix_entropy(k2, alpha=alpha)))
    h12 = float(to_numpy(nc.matrix_entropy(k1 * k2, alpha=alpha)))
    assert max(h1, h2) - TOL <= h12 <= h1 + h2 + TOL
    m = float(to_numpy(nc.mir(k1, k2, alpha=alpha)))
    d = float(to_numpy(nc.hdr(k1, k2, alpha=alpha)))
    assert -TOL <= m <= 1 + TOL
    assert -TOL <= d <= 1 + TOL
