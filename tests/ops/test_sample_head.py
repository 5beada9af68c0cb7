"""`keras_nc.ops.sample_head` (the per-batch sample pairing) against the independent
float64 NumPy reference, on the active backend.
"""

import numpy as np
import pytest

import tests.reference as ref
import tests.tolerances as tol
from keras_nc import ops as nc
from tests.helpers import BACKEND, compiled, to_numpy


def assert_close(actual, expected, atol):
    # tol: rtol=0: the bounds of tests/tolerances.py are absolute
    np.testing.assert_allclose(to_numpy(actual), expected, atol=atol)


@pytest.mark.parametrize(
    ("n", "d", "num_classes"),
    [(24, 6, 4), (6, 24, 4), (12, 30, 40), (40, 3, 8), (20, 5, 5), (1, 4, 3)],
    ids=["C<d<n", "n<d", "n<d<C", "d<C<n", "d=C<n", "one-sample"],
)
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_sample_head_entropies_and_ratios_match_reference(n, d, num_classes, alpha, rng):
    """Each matrix from its smallest side (n, d or C) equals the n x n reference."""
    z = rng.normal(size=(n, d)).astype("float32")
    w = rng.normal(size=(num_classes, d)).astype("float32")
    y = rng.integers(0, num_classes, n)
    y[: n // 2] = 0  # a large class, absent classes when C is large
    k_z, k_w = ref.gram(z, center=True), ref.gram(w[y])
    ks = (k_z, k_w, k_z * k_w)
    expected = [ref.entropy(k, alpha) for k in ks]
    # Each matrix is decomposed from its smallest side; the bound of the n x n
    # Gram (size n) is the larger, and covers every path.
    bounds = [tol.entropy_tolerance(k, alpha) for k in ks]
    got = nc.sample_head_entropies(z, y, w, alpha=alpha)
    for value, want, bound in zip(got, expected, bounds, strict=True):
        assert_close(value, want, atol=bound)
    mir, hdr = nc.sample_head_ratios(z, y, w, alpha=alpha)
    assert_close(mir, ref.mir(k_z, k_w, alpha), atol=tol.ratio_tolerance(*expected, *bounds, "mir"))
    assert_close(hdr, ref.hdr(k_z, k_w, alpha), atol=tol.ratio_tolerance(*expected, *bounds, "hdr"))


def test_sample_head_ratios_compile(rng):
    z = rng.normal(size=(32, 6)).astype("float32")
    w = rng.normal(size=(4, 6)).astype("float32")
    y = rng.integers(0, 4, 32).astype("int32")
    got = compiled(lambda z, w: nc.sample_head_ratios(z, y, w))(z, w)
    k_z, k_w = ref.gram(z, center=True), ref.gram(w[y])
    assert_close(got[0], ref.mir(k_z, k_w), atol=tol.information_tolerance(k_z, k_w, "mir"))
    assert_close(got[1], ref.hdr(k_z, k_w), atol=tol.information_tolerance(k_z, k_w, "hdr"))


def _weighted_sample_head_reference(z, y, w, weight):
    """Float64 `K_Z`, `K_W` and `K_Z o K_W` of the (weighted) sample-head pairing."""
    zc = z - (weight[:, None] * z).sum(0) / weight.sum()
    zhat = zc / np.linalg.norm(zc, axis=1, keepdims=True)
    what = w / np.linalg.norm(w, axis=1, keepdims=True)
    root = np.sqrt(np.outer(weight, weight))
    k_z, k_w_plain = zhat @ zhat.T * root, what[y] @ what[y].T
    return k_z, k_w_plain * root, k_z * k_w_plain


@pytest.mark.parametrize("path", ["direct", "sides"])
@pytest.mark.parametrize(
    ("n", "d", "num_classes"),
    [(24, 6, 4), (12, 30, 5), (16, 40, 30)],
    ids=["d<n,C<n", "C<n<d", "n<C<d"],
)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("known_feature_entropy", [False, True])
@pytest.mark.parametrize("gather", [False, True], ids=["product", "gather"])
def test_sample_head_paths_match_reference(
    path, n, d, num_classes, weighted, known_feature_entropy, gather, monkeypatch, rng
):
    """The direct path (n x n Grams, one batched call) and the sides give the same entropies.

    Forced by the cost per call: 0 takes every smaller side, a huge one the
    direct path. Tolerance: each entropy's float32 bound for the size the path
    decomposes (n for the direct path, the side's otherwise).
    """
    from keras_nc import compat
    from keras_nc.ops import pairing

    cost = 0 if path == "sides" else 10**15
    monkeypatch.setattr(compat.linalg, "EIGH_CALL_COST", {BACKEND: cost})
    monkeypatch.setattr(compat.linalg, "GATHERS_CLASS_GRAMS", {BACKEND: gather})
    head_side = min(n, num_classes, d)
    assert pairing.direct_sample_head(n, d, num_classes, known_feature_entropy) == (
        path == "direct" or (head_side == n and (known_feature_entropy or min(n, d) == n))
    )
    z = rng.normal(size=(n, d))
    w = rng.normal(size=(num_classes, d))
    y = rng.integers(0, num_classes, n).astype("int32")
    y[: n // 3] = 0  # a large class
    weight = rng.uniform(0.0, 2.0, n) if weighted else np.ones(n)
    if weighted:
        weight[1] = 0.0  # a row that leaves every Gram
    mats = _weighted_sample_head_reference(z, y, w, weight)
    h = [ref.entropy(m) for m in mats]
    sizes = (n, n, n) if path == "direct" else (min(n, d), head_side, n)
    errors = [tol.entropy_tolerance(m, size=s) for m, s in zip(mats, sizes, strict=True)]
    batch = nc.labelled_batch(
        z.astype("float32"),
        y,
        w.astype("float32"),
        sample_weight=weight.astype("float32") if weighted else None,
    )
    inputs = pairing.sample_head_of(batch, center=True)
    known = h[0] if known_feature_entropy else None

    def entropies(zhat, what):
        return pairing.sample_head_entropies_of(inputs._replace(zhat=zhat, what=what), 1.0, known)

    for run in (entropies, compiled(entropies)):
        got = run(inputs.zhat, inputs.what)
        for value, want, error in zip(got, h, errors, strict=True):
            assert_close(value, want, atol=error)


def test_direct_path_at_small_batches_only_where_calls_cost_more():
    """Eager PyTorch and TensorFlow graphs take the direct path at n = 64.

    There their calls cost more than the work the sides save; JAX's XLA
    programs take the smaller sides;
    every backend takes them at n = 256 with few classes, and the direct path
    when every side is n x n (n <= min(C, d)).
    """
    from keras_nc.ops import pairing

    assert pairing.direct_sample_head(64, 64, 10) == (BACKEND != "jax")
    assert pairing.direct_sample_head(64, 2048, 10) == (BACKEND != "jax")
    assert not pairing.direct_sample_head(256, 512, 10)
    assert not pairing.direct_sample_head(128, 64, 100)  # K_Z from its 64 x 64 side
    assert pairing.direct_sample_head(64, 512, 1000)
    assert not pairing.direct_sample_head(None, 512, 10)  # n unknown: the sides
