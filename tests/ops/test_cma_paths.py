"""The eager and per-group CMA paths (groups normalised on their Grams) are the per-class loop.

`cma_entropy`'s `"auto"` layout computes each group's Gram from the raw rows
and normalises it there (`K_ij = G_ij s_i s_j`): eagerly (PyTorch, TensorFlow)
in runs of groups of similar sizes or group by group, and under JAX's `jit`
one group at a time, each padded to its own static size. Reference: the
authors' loop in float64 NumPy, with the sample weights' definition written
out (rows of weight 0 leave their group; the others are scaled by
`sqrt(w / mean positive w)`, the anchor by 1). Tolerances: each group's
float32 entropy bound (`tests/tolerances.py`) for the size decomposed (at
most `n + 1`) over `log m_c`, averaged; gradients as in
`tests/ops/test_cma_dispatch.py` (central differences of the float64 loop: 1e-7 in
float64, 2e-4 in float32).
"""

import numpy as np
import pytest

import tests.reference as ref
import tests.tolerances as tol
from keras_nc import ops as nc
from keras_nc.ops import cma, cma_plan
from tests.helpers import BACKEND, compiled, float64_supported, grad, to_numpy

N, C, D = 12, 4, 16  # groups of at most N + 1 = 13 rows: narrower than D


def weighted_cma(z, anchors, y, weight=None):
    """The loop in float64 with sample weights; also the per-group tolerance."""
    weight = np.ones(len(y)) if weight is None else np.asarray(weight, "float64")
    active = weight > 0
    relative = weight / weight[active].mean()
    values, bounds = [], []
    for c in np.unique(y[active]):
        rows = active & (y == c)
        norms = np.linalg.norm(z[rows], axis=1, keepdims=True)
        zhat = np.where(norms > 0, z[rows] / np.where(norms > 0, norms, 1.0), 0.0)
        group = np.vstack([anchors[c] / np.linalg.norm(anchors[c]), zhat])
        group[1:] *= np.sqrt(relative[rows])[:, None]
        k = group @ group.T
        values.append(ref.entropy(k) / np.log(len(group)))
        bounds.append(tol.entropy_tolerance(k, size=len(y) + 1) / np.log(len(group)))
    return float(np.mean(values)), float(np.mean(bounds))


LABELS = {
    "balanced": np.arange(N) % C,
    "skewed": np.array([0] * 7 + [1, 1, 3, 3, 3]),  # class 2 absent, a singleton-free mix
    "singletons": np.array([0] * 9 + [1, 2, 3]),
}


@pytest.fixture(autouse=True)
def padded_plan(monkeypatch):
    """Padded sizes planned at test size (at 12 rows the block layout is cheaper)."""
    monkeypatch.setattr(cma, "plan", lambda n, num_classes, d: ("block", (5, 9)))
    monkeypatch.setattr(cma, "padded_cost", lambda n, num_classes, d, size: 0.0)


@pytest.fixture(params=["runs", "alone"])
def grouping(request, monkeypatch):
    """Eager: groups padded in runs (calls dear) or each alone (calls free)."""
    overhead = 1e30 if request.param == "runs" else -1e30
    monkeypatch.setattr(cma_plan, "GROUP_OVERHEAD", overhead)
    return request.param


@pytest.fixture
def taken(monkeypatch):
    """The names of the paths `cma_entropy` took."""
    names = []
    for name in ("eager_entropy", "per_group_entropy"):
        original = getattr(cma, name)

        def spy(*args, _original=original, _name=name):
            names.append(_name)
            return _original(*args)

        monkeypatch.setattr(cma, name, spy)
    return names


def expected_path(compile_it):
    if BACKEND == "jax":
        return "per_group_entropy" if compile_it else None
    if BACKEND == "tensorflow" and compile_it:
        return None
    return "eager_entropy"


@pytest.mark.parametrize("compile_it", [False, True])
@pytest.mark.parametrize("weights", ["none", "positive", "zeros"])
@pytest.mark.parametrize("kind", sorted(LABELS))
def test_value_is_the_loop(kind, weights, compile_it, grouping, taken, rng):
    y = LABELS[kind].astype("int32")
    z, anchors = rng.normal(size=(N, D)), rng.normal(size=(C, D))
    weight = {
        "none": None,
        "positive": rng.uniform(0.2, 3.0, N),
        "zeros": np.where(np.arange(N) % 3 == 0, 0.0, rng.uniform(0.5, 2.0, N)),
    }[weights]

    def fn(x, a):
        return nc.cma_entropy(x, a, y, sample_weight=weight)

    fn = compiled(fn) if compile_it else fn
    got = to_numpy(fn(z.astype("float32"), anchors.astype("float32")))
    expected, atol = weighted_cma(z, anchors, y, weight)
    np.testing.assert_allclose(got, expected, atol=atol)
    path = expected_path(compile_it)
    assert (path in taken) if path else not taken


@pytest.mark.parametrize("compile_it", [False, True])
@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1e12, 1e30])
def test_any_scale_and_a_zero_row(scale, compile_it, rng):
    # Squared norms of 1e-60 or 1e60 leave float32: the eager path then uses
    # the normalised rows; the per-group path scales by the largest entry.
    y = LABELS["balanced"].astype("int32")
    z, anchors = rng.normal(size=(N, D)), rng.normal(size=(C, D))
    z[5] = 0.0
    fn = compiled(nc.cma_entropy) if compile_it else nc.cma_entropy
    got = to_numpy(fn((z * scale).astype("float32"), (anchors / scale).astype("float32"), y))
    expected, atol = weighted_cma(z, anchors, y)
    np.testing.assert_allclose(got, expected, atol=atol)


def _central_differences(z, anchors, y, weight, which):
    step, arrays = 1e-6, [z, anchors]
    fd = np.zeros_like(arrays[which])
    for index in np.ndindex(fd.shape):
        plus, minus = [a.copy() for a in arrays], [a.copy() for a in arrays]
        plus[which][index] += step
        minus[which][index] -= step
        fd[index] = (weighted_cma(*plus, y, weight)[0] - weighted_cma(*minus, y, weight)[0]) / (
            2 * step
        )
    return fd


@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_is_the_loop_gradient(weighted, grouping, taken, rng):
    y = LABELS["skewed"].astype("int32")
    n, d = N, 14
    z, anchors = rng.normal(size=(n, d)), rng.normal(size=(C, d))
    weight = np.where(np.arange(n) % 4 == 1, 0.0, rng.uniform(0.5, 2.0, n)) if weighted else None
    dtype, atol = ("float64", 1e-7) if float64_supported() else ("float32", 2e-4)

    def of_z(x):
        return nc.cma_entropy(x, anchors.astype(dtype), y, sample_weight=weight)

    def of_anchors(a):
        return nc.cma_entropy(z.astype(dtype), a, y, sample_weight=weight)

    g_z = grad(compiled(of_z), z.astype(dtype), dtype=None)
    g_a = grad(compiled(of_anchors), anchors.astype(dtype), dtype=None)
    np.testing.assert_allclose(g_z, _central_differences(z, anchors, y, weight, 0), atol=atol)
    np.testing.assert_allclose(g_a, _central_differences(z, anchors, y, weight, 1), atol=atol)
    assert np.abs(g_z).max() > 1e-3
    path = expected_path(True)
    assert (path in taken) if path else not taken


def test_eager_runs_split_groups_where_padding_wastes_more():
    # Wide features: padding a group of 100 to 125 wastes more than the calls cost.
    assert cma.eager_runs([125, 120, 100], 2048) == [(0, 1, 125), (1, 2, 120), (2, 3, 100)]
    # Small groups share one run.
    assert cma.eager_runs([5, 4, 4, 3], 2048) == [(0, 4, 5)]


def test_per_group_sizes_reach_below_the_plan():
    assert cma.group_sizes((206, 227, 250)) == (155, 171, 188, 206, 227, 250)
    assert cma.group_sizes((5, 9)) == (4, 5, 9)


def test_non_finite_features_give_nan_within_invalid_values_as_nan(rng):
    # Eager calls in `invalid_values_as_nan()` flag bad input instead of raising:
    # every path must still return NaN (without the context they raise).
    from keras_nc.ops.guards import invalid_values_as_nan

    y = LABELS["balanced"].astype("int32")
    z, anchors = rng.normal(size=(N, D)), rng.normal(size=(C, D))
    z[3, 2] = np.nan
    with invalid_values_as_nan():
        got = to_numpy(nc.cma_entropy(z.astype("float32"), anchors.astype("float32"), y))
    assert np.isnan(got)
    with pytest.raises(ValueError, match="finite"):
        nc.cma_entropy(z.astype("float32"), anchors.astype("float32"), y)


def test_the_anchors_keyword_warns_and_gives_the_head_weights_value(rng):
    """`anchors=` (before 0.2.0) is `head_weights=` with a `DeprecationWarning`."""
    y = LABELS["skewed"].astype("int32")
    z, head = rng.normal(size=(N, D)).astype("float32"), rng.normal(size=(C, D)).astype("float32")
    expected, atol = weighted_cma(z.astype("float64"), head.astype("float64"), y)
    new = to_numpy(nc.cma_entropy(z, head_weights=head, labels=y))
    with pytest.warns(DeprecationWarning, match="`anchors` is deprecated.*`head_weights`"):
        old = to_numpy(nc.cma_entropy(z, anchors=head, labels=y))
    np.testing.assert_allclose(new, expected, atol=atol)
    np.testing.assert_allclose(old, expected, atol=atol)
    np.testing.assert_array_equal(old, new)
    with pytest.raises(TypeError):
        nc.cma_entropy(z, head, y, anchors=head)
