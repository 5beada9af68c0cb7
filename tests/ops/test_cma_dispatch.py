"""The CMA layouts and the shape dispatcher: every path is the per-class loop, value and gradient.

The reference is the authors' loop in float64 NumPy (`reference.cma`): one
group per class present, `H(Gram(G_c)) / log m_c`, averaged. Tolerances: each
group's float32 entropy bound (`tests/tolerances.py`) for a matrix of the
size the layout decomposes (`n + P` for the block layout, the largest
`n + 1` otherwise), divided by `log m_c`, averaged over the groups.
Gradients against central differences of the float64 loop: in float64 where
the backend has it (error of the differences, ~1e-9), else float32 (slopes
`|log p + 1| <= 17` at the eigenvalue cut times eigenvalue errors of about
`sqrt(m) eps`, summed over the `m <= 10` eigenvalues of a group: < 1e-4).
"""

import itertools

import numpy as np
import pytest

import tests.reference as ref
import tests.tolerances as tol
from keras_nc import ops as nc
from keras_nc.ops import cma
from tests.helpers import compiled, float64_supported, grad, to_numpy

LAYOUTS = ["block", "padded", "width", "auto"]


def labels_for(kind, rng, n, num_classes):
    if kind == "balanced":
        return (np.arange(n) % num_classes).astype("int32")
    if kind == "skewed":  # one big class, singletons, absent classes
        y = np.zeros(n, "int32")
        y[-3:] = [1, 3, 3]
        return y
    return rng.integers(0, num_classes, n).astype("int32")


def tolerance(z, anchors, labels, size):
    bounds = []
    for c in np.unique(labels):
        group = np.vstack([z[labels == c], anchors[c : c + 1]])
        bound = tol.entropy_tolerance(ref.gram(group), size=size)
        bounds.append(bound / np.log(len(group)))
    return float(np.mean(bounds))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["balanced", "skewed", "random"])
@pytest.mark.parametrize("shape", [(14, 5, 4), (10, 20, 6)])
def test_every_layout_is_the_per_class_loop(layout, kind, shape, rng):
    n, num_classes, d = shape
    z, anchors = rng.normal(size=(n, d)), rng.normal(size=(num_classes, d))
    y = labels_for(kind, rng, n, num_classes)
    got = nc.cma_entropy(z.astype("float32"), anchors.astype("float32"), y, layout=layout)
    size = n + min(n, num_classes)
    np.testing.assert_allclose(
        to_numpy(got), ref.cma(z, anchors, y), atol=tolerance(z, anchors, y, size)
    )


@pytest.fixture
def small_plan(monkeypatch):
    """Candidate padded sizes 3, 5, 8 at test size, so `auto` takes each branch."""
    monkeypatch.setattr(cma, "plan", lambda n, num_classes, d: ("block", (3, 5, 8)))


# Largest group (anchor included): 3 -> first candidate, 5 -> second, 11 -> fallback.
CASES = {
    "first": np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4], "int32"),
    "second": np.array([0, 0, 0, 0, 1, 1, 2, 3, 3, 4], "int32"),
    "fallback": np.zeros(10, "int32"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_auto_picks_a_fitting_layout_under_compilation(case, small_plan, rng):
    y = CASES[case]
    z, anchors = rng.normal(size=(10, 4)), rng.normal(size=(5, 4))
    fn = compiled(lambda x: nc.cma_entropy(x, anchors.astype("float32"), y))
    atol = tolerance(z, anchors, y, 15)
    np.testing.assert_allclose(to_numpy(fn(z.astype("float32"))), ref.cma(z, anchors, y), atol=atol)


def _central_differences(z, anchors, y, which):
    step = 1e-6
    arrays = [z, anchors]
    fd = np.zeros_like(arrays[which])
    for index in np.ndindex(fd.shape):
        plus, minus = [a.copy() for a in arrays], [a.copy() for a in arrays]
        plus[which][index] += step
        minus[which][index] -= step
        fd[index] = (ref.cma(*plus, y) - ref.cma(*minus, y)) / (2 * step)
    return fd


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_is_the_loop_gradient(layout, case, small_plan, rng):
    y = CASES[case]
    z, anchors = rng.normal(size=(10, 4)), rng.normal(size=(5, 4))
    dtype, atol = ("float64", 1e-7) if float64_supported() else ("float32", 2e-4)

    def of_z(x):
        return nc.cma_entropy(x, anchors.astype(dtype), y, layout=layout)

    def of_anchors(a):
        return nc.cma_entropy(z.astype(dtype), a, y, layout=layout)

    g_z = grad(compiled(of_z), z.astype(dtype), dtype=None)
    g_a = grad(compiled(of_anchors), anchors.astype(dtype), dtype=None)
    np.testing.assert_allclose(g_z, _central_differences(z, anchors, y, 0), atol=atol)
    np.testing.assert_allclose(g_a, _central_differences(z, anchors, y, 1), atol=atol)
    assert np.abs(g_z).max() > 1e-3


def test_plan_uses_padded_groups_for_few_classes_and_the_block_for_many():
    fallback, sizes = cma.plan(1024, 10, 512)
    assert sizes and sizes[0] == 1024 // 10 + 1 + 1  # ceil(n / C) members + the anchor
    assert all(b > a for a, b in itertools.pairwise(sizes))
    assert cma.padded_cost(1024, 10, 512, sizes[0]) < 0.1 * cma.layout_costs(1024, 10, 512)["block"]
    fallback, _ = cma.plan(256, 1000, 512)
    assert fallback == "block"
    assert cma.plan(2048, 10, 64)[0] == "width"  # d x d sides: 10 of 64 x 64


def test_unknown_layout_raises():
    with pytest.raises(ValueError, match="layout"):
        nc.cma_entropy(np.ones((2, 2)), np.eye(2), np.zeros(2, "int32"), layout="loop")


@pytest.mark.parametrize("weighted", [False, True])
def test_small_batches_take_the_direct_sample_head_path(weighted, rng):
    # n <= min(C, d): all three Grams are n x n, computed directly in one batched eigh.
    n, num_classes, d = 7, 12, 9
    z, head = rng.normal(size=(n, d)), rng.normal(size=(num_classes, d))
    y = rng.integers(0, num_classes, n).astype("int32")
    weight = np.array([1.0, 2.0, 0.5, 1.0, 0.0, 3.0, 1.0]) if weighted else np.ones(n)
    got = nc.sample_head_ratios(
        z.astype("float32"), y, head.astype("float32"), sample_weight=weight if weighted else None
    )
    zc = z - (weight[:, None] * z).sum(0) / weight.sum()
    zhat = zc / np.linalg.norm(zc, axis=1, keepdims=True)
    hhat = head / np.linalg.norm(head, axis=1, keepdims=True)
    root = np.sqrt(np.outer(weight, weight))
    k_z, k_w_plain = zhat @ zhat.T * root, hhat[y] @ hhat[y].T
    mats = (k_z, k_w_plain * root, k_z * k_w_plain)
    h = [ref.entropy(m) for m in mats]
    e = [tol.entropy_tolerance(m) for m in mats]
    mir = (h[0] + h[1] - h[2]) / min(h[0], h[1])
    hdr = abs(h[0] - h[1]) / max(h[0], h[1])
    np.testing.assert_allclose(to_numpy(got[0]), mir, atol=tol.ratio_tolerance(*h, *e, "mir"))
    np.testing.assert_allclose(to_numpy(got[1]), hdr, atol=tol.ratio_tolerance(*h, *e, "hdr"))


def test_tiers_pad_similar_groups_together():
    # Eager layout: sizes sorted descending, a run ends below 0.9 x its largest,
    # groups of at most 16 rows share one run.
    assert cma.tiers([125, 120, 113, 112, 100, 99, 20, 16, 3, 2]) == [
        (0, 3, 125),
        (3, 4, 112),
        (4, 6, 100),
        (6, 7, 20),
        (7, 10, 16),
    ]
    assert cma.tiers([]) == []
