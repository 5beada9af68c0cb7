"""`keras_nc.ops.cma`: the CMA entropy's value at aligned groups, its gradients (finite, against
central differences).
"""

import numpy as np
import pytest

import tests.reference as ref
from keras_nc import ops as nc
from tests.helpers import grad, to_numpy
from tests.tolerances import cma_tolerance

C, D = 6, 9


def _cma_case(rng, kind):
    if kind == "random":
        z, anchors = rng.normal(size=(9, 4)), rng.normal(size=(4, 4))
        return z, anchors, np.array([0, 0, 0, 1, 1, 3, 3, 3, 3])
    # Two groups with the same spectrum (one sample at the same angle from its
    # anchor): their eigenvalues coincide, and eigh mixes their eigenvectors.
    c, s = np.cos(1.0), np.sin(1.0)
    anchors = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]])
    z = np.array([[c, s, 0, 0], [0, 0, c, s], [0.5, -0.2, 0.1, 0.9], [0.1, 0.8, -0.3, 0.2]])
    return z, anchors, np.array([0, 1, 2, 2])


@pytest.mark.parametrize("kind", ["random", "shared_eigenvalues"])
def test_cma_gradient_matches_finite_differences(kind, rng):
    z, anchors, y = _cma_case(rng, kind)
    g_z = grad(lambda x: nc.cma_entropy(x, anchors.astype("float32"), y), z)
    g_a = grad(lambda a: nc.cma_entropy(z.astype("float32"), a, y), anchors)
    step = 1e-6
    for array, g, which in ((z, g_z, 0), (anchors, g_a, 1)):
        fd = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus, minus = [z.copy(), anchors.copy()], [z.copy(), anchors.copy()]
            plus[which][index] += step
            minus[which][index] -= step
            fd[index] = (ref.cma(*plus, y) - ref.cma(*minus, y)) / (2 * step)
        # A float32 gradient through each group's eigh (errors ~eps32 * |g| over the
        # eigen-gaps) against a float64 central difference (step**2 truncation ~1e-12,
        # eps64 / step rounding ~1e-10).
        # tol: 2e-4 is ~2e-3 of max |g| (0.08..0.2 here); a wrong term or sign fails
        np.testing.assert_allclose(g, fd, atol=2e-4)
    assert np.abs(g_z).max() > 1e-3


def test_cma_is_zero_when_groups_are_aligned(rng):
    anchors = rng.normal(size=(4, D)).astype("float32")
    y = np.array([0, 0, 2, 2, 2], dtype="int32")
    z = (anchors[y] * rng.uniform(0.5, 2.0, size=(5, 1))).astype("float32")
    bound = cma_tolerance(z, anchors, y)  # rank-one groups: entropy 0 up to round-off
    np.testing.assert_allclose(to_numpy(nc.cma_entropy(z, anchors, y)), 0.0, atol=bound)


def test_cma_gradients_are_finite_and_reach_features(rng):
    anchors = rng.normal(size=(5, D)).astype("float32")
    y = np.array([0, 0, 1, 3, 3, 3], dtype="int32")
    z = rng.normal(size=(6, D)).astype("float32")
    z[4] = 0.0  # a zero feature row
    g = grad(lambda x: nc.cma_entropy(x, anchors, y), z)
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 1e-6
    g_anchor = grad(lambda a: nc.cma_entropy(z, a, y), anchors)
    assert np.all(np.isfinite(g_anchor))
    np.testing.assert_allclose(g_anchor[[2, 4]], 0.0)  # absent classes get no gradient
    assert np.abs(g_anchor[[0, 1, 3]]).max() > 1e-6
