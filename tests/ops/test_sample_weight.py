"""Sample weights inside a batch: the weighted Gram `D^1/2 K D^1/2` (docs/concepts.md).

Rows of weight 0 leave the per-batch Grams, so weights `[1]*k + [0]*m` give the
value of the k-row subset (compared with the float64 NumPy reference of the
subset); uniform weights `c > 0` give the unweighted value; positive
non-uniform weights follow the float64 reference of the definition below.
Tolerances: `tests/tolerances.py` (float32 entropy bounds from the reference
spectrum; CMA: each group's bound divided by `log m_c`).
"""

import numpy as np
import pytest

import tests.reference as ref
import tests.tolerances as tol
from keras_nc import ops as nc
from tests.helpers import compiled, grad, to_numpy
from tests.tolerances import gram_tolerance

K, M, D, C = 12, 6, 5, 3


@pytest.fixture
def case(rng):
    z = rng.normal(size=(K + M, D)) + 0.3
    w = rng.normal(size=(C, D))
    y = np.concatenate([np.arange(K) % C, rng.integers(0, C, M)]).astype("int32")
    mask = np.array([1.0] * K + [0.0] * M)
    return z, w, y, mask


def weighted_gram(z, weight, center):
    """Float64 reference of the definition: `D^1/2 K D^1/2`, K centred by the weighted mean."""
    z = np.asarray(z, np.float64)
    weight = np.asarray(weight, np.float64)
    if center:
        z = z - (weight[:, None] * z).sum(0) / weight.sum()
    zhat = z / np.linalg.norm(z, axis=1, keepdims=True)
    root = np.sqrt(weight)
    return root[:, None] * (zhat @ zhat.T) * root[None, :]


def head_gram(w, y):
    what = w / np.linalg.norm(w, axis=1, keepdims=True)
    return what[y] @ what[y].T


def assert_entropy(got, k_ref, size=None):
    expected = ref.entropy(k_ref)
    np.testing.assert_allclose(got, expected, atol=tol.entropy_tolerance(k_ref, size=size))


def assert_ratios(got, k_z, k_w):
    h = [ref.entropy(k) for k in (k_z, k_w, k_z * k_w)]
    e = [tol.entropy_tolerance(k) for k in (k_z, k_w, k_z * k_w)]
    for value, fn, kind in ((got[0], ref.mir, "mir"), (got[1], ref.hdr, "hdr")):
        np.testing.assert_allclose(
            to_numpy(value), fn(k_z, k_w), atol=tol.ratio_tolerance(*h, *e, kind)
        )


@pytest.mark.parametrize("center", [True, False])
def test_zero_weights_give_the_subset_gram_and_entropy(case, center):
    z, _, _, mask = case
    k_sub = ref.gram(z[:K], center=center)
    got = to_numpy(nc.gram(z.astype("float32"), center=center, sample_weight=mask))
    bound = gram_tolerance(z[:K].astype("float32"), center=center)  # weight-0 rows add no rounding
    np.testing.assert_allclose(got[:K, :K], k_sub, atol=bound)
    assert np.all(got[K:] == 0) and np.all(got[:, K:] == 0)
    entropy = to_numpy(nc.feature_entropy(z.astype("float32"), center=center, sample_weight=mask))
    assert_entropy(entropy, k_sub, size=min(K + M, D))
    normalized = nc.feature_entropy(z.astype("float32"), center, sample_weight=mask, normalize=True)
    np.testing.assert_allclose(
        to_numpy(normalized),
        ref.entropy(k_sub) / np.log(K),
        atol=tol.entropy_tolerance(k_sub, size=D) / np.log(K),
    )


def test_uniform_weights_change_nothing(case):
    z, w, y, _ = case
    z32, w32 = z.astype("float32"), w.astype("float32")
    uniform = np.full(K + M, 3.5)
    k_z = ref.gram(z, center=True)
    assert_entropy(to_numpy(nc.feature_entropy(z32, True, sample_weight=uniform)), k_z, size=D)
    assert_ratios(nc.sample_head_ratios(z32, y, w32, sample_weight=uniform), k_z, head_gram(w, y))
    np.testing.assert_allclose(
        to_numpy(nc.cma_entropy(z32, w32, y, sample_weight=uniform)),
        ref.cma(z, w, y),
        atol=cma_tolerance(z, w, y),
    )


def test_positive_weights_weight_the_rows(case, rng):
    z, w, y, _ = case
    weight = rng.uniform(0.2, 3.0, size=K + M)
    k_z, k_w = weighted_gram(z, weight, True), head_gram(w, y) * np.outer(weight, weight) ** 0.5
    got = nc.feature_entropy(z.astype("float32"), center=True, sample_weight=weight)
    assert_entropy(to_numpy(got), k_z, size=D)
    # K_Z o K_W with one factor weighted is D^1/2 (K_Z o K_W) D^1/2.
    k_w_plain = head_gram(w, y)
    got = nc.sample_head_ratios(z.astype("float32"), y, w.astype("float32"), sample_weight=weight)
    h = [ref.entropy(k) for k in (k_z, k_w, k_z * k_w_plain)]
    e = [tol.entropy_tolerance(k) for k in (k_z, k_w, k_z * k_w_plain)]
    mir = (h[0] + h[1] - h[2]) / min(h[0], h[1])
    hdr = abs(h[0] - h[1]) / max(h[0], h[1])
    np.testing.assert_allclose(to_numpy(got[0]), mir, atol=tol.ratio_tolerance(*h, *e, "mir"))
    np.testing.assert_allclose(to_numpy(got[1]), hdr, atol=tol.ratio_tolerance(*h, *e, "hdr"))


def test_zero_weights_give_the_subset_ratios(case):
    z, w, y, mask = case
    got = nc.sample_head_ratios(z.astype("float32"), y, w.astype("float32"), sample_weight=mask)
    assert_ratios(got, ref.gram(z[:K], center=True), head_gram(w, y[:K]))


def cma_tolerance(z, anchors, labels):
    """Sum over groups of the float32 entropy bound of each group over log m_c, per group mean."""
    bounds = []
    for c in np.unique(labels):
        group = np.vstack([z[labels == c], anchors[c : c + 1]])
        bounds.append(tol.entropy_tolerance(ref.gram(group)) / np.log(len(group)))
    return float(np.mean(bounds))


def test_cma_zero_weights_give_the_subset_value_and_gradient(case):
    z, w, y, mask = case
    # A class whose rows all have weight 0 is absent: class 2 loses its rows.
    y = y.copy()
    y[K:] = 2
    y[:K][y[:K] == 2] = 1
    anchors = w.astype("float32")
    value = nc.cma_entropy(z.astype("float32"), anchors, y, sample_weight=mask)
    expected = ref.cma(z[:K], w, y[:K])
    np.testing.assert_allclose(to_numpy(value), expected, atol=cma_tolerance(z[:K], w, y[:K]))

    g = grad(lambda x: nc.cma_entropy(x, anchors, y, sample_weight=mask), z)
    assert np.all(g[K:] == 0)
    step, fd = 1e-6, np.zeros((K, D))
    for index in np.ndindex(K, D):
        plus, minus = z[:K].copy(), z[:K].copy()
        plus[index] += step
        minus[index] -= step
        fd[index] = (ref.cma(plus, w, y[:K]) - ref.cma(minus, w, y[:K])) / (2 * step)
    # float32 gradients: slopes |log p + 1| <= 17 at the eigenvalue cut, times
    # the eigenvalue error sqrt(m) eps of each of the m eigenvalues of a group
    # (m <= 8: about 5e-5); FD truncation (step**2) and round-off (eps64 / step)
    # in float64 are < 1e-9.
    m = np.bincount(y[:K]).max() + 1
    slope = abs(np.log(tol.EPS32)) + 1.0
    bound = tol.SAFETY * slope * m * np.sqrt(m) * tol.EPS32 + tol.EPS64 / step
    np.testing.assert_allclose(g[:K], fd, atol=bound)
    assert np.abs(fd).max() > 1e-3


def test_cma_positive_weights_and_anchor_weight_one(case, rng):
    z, w, y, _ = case
    weight = rng.uniform(0.5, 2.0, size=K + M)
    relative = weight / weight.mean()
    values = []
    for c in np.unique(y):
        rows = z[y == c] / np.linalg.norm(z[y == c], axis=1, keepdims=True)
        anchor = w[c] / np.linalg.norm(w[c])
        group = np.vstack([rows * np.sqrt(relative[y == c])[:, None], anchor])
        values.append(ref.entropy(group @ group.T) / np.log(len(group)))
    got = nc.cma_entropy(z.astype("float32"), w.astype("float32"), y, sample_weight=weight)
    np.testing.assert_allclose(to_numpy(got), np.mean(values), atol=cma_tolerance(z, w, y))


@pytest.mark.parametrize("layout", ["block", "padded", "width"])
def test_weighted_measures_compile_with_finite_gradients(case, layout):
    z, w, y, mask = case
    z32, w32 = z.astype("float32"), w.astype("float32")

    def total(x):
        mir, hdr = nc.sample_head_ratios(x, y, w32, sample_weight=mask)
        entropy = nc.feature_entropy(x, center=True, sample_weight=mask)
        return mir + hdr + entropy + nc.cma_entropy(x, w32, y, sample_weight=mask, layout=layout)

    eager = to_numpy(total(z32))
    # Each side is within the sum of the four float32 bounds of the reference
    # (the K-row subset: weight-0 rows leave the Grams); their difference, twice that.
    k_z, k_w = ref.gram(z[:K], center=True), head_gram(w, y[:K])
    bound = (
        tol.information_tolerance(k_z, k_w, "mir")
        + tol.information_tolerance(k_z, k_w, "hdr")
        + tol.entropy_tolerance(k_z, size=min(K + M, D))
        + cma_tolerance(z[:K], w, y[:K])
    )
    np.testing.assert_allclose(to_numpy(compiled(total)(z32)), eager, atol=2 * bound)
    g = grad(compiled(total), z)
    assert np.all(np.isfinite(g)) and np.all(g[K:] == 0)


def test_all_weights_zero_is_zero_not_nan(case):
    z, w, y, _ = case
    zero = np.zeros(K + M)
    z32, w32 = z.astype("float32"), w.astype("float32")
    assert float(to_numpy(nc.feature_entropy(z32, True, sample_weight=zero, normalize=True))) == 0
    assert np.all(to_numpy(nc.sample_head_ratios(z32, y, w32, sample_weight=zero)) == 0)
    assert float(to_numpy(nc.cma_entropy(z32, w32, y, sample_weight=zero))) == 0


def test_negative_weights_raise(case):
    z, w, y, _ = case
    bad = np.array([1.0] * (K + M - 1) + [-1.0])
    with pytest.raises(ValueError, match="sample_weight"):
        nc.feature_entropy(z, sample_weight=bad)
    with pytest.raises(ValueError, match="sample_weight"):
        nc.cma_entropy(z, w, y, sample_weight=bad)
