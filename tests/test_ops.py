"""`keras_nc.ops` against the independent float64 NumPy reference, on the active backend."""

import numpy as np
import pytest

import tests.reference as ref
import tests.tolerances as tol
from keras_nc import ops as nc
from tests.helpers import BACKEND, compiled, float64_supported, grad, to_numpy

RTOL = 1e-4


def _features(kind, rng, n=24, d=10):
    """Float32 feature batches that stress the numerics (the reference reads them in float64)."""
    return _raw_features(kind, rng, n, d).astype("float32")


def _raw_features(kind, rng, n, d):
    z = rng.normal(size=(n, d))
    if kind == "random":
        return z
    if kind == "rank_deficient":  # n > d: the n x n Gram has rank d
        return rng.normal(size=(n, 3))
    if kind == "duplicated_rows":
        z[n // 2 :] = z[: n - n // 2]
        return z
    if kind == "zero_rows":
        z[[0, 5, 7]] = 0.0
        return z
    if kind == "near_collinear":  # rows within a small cone around one direction
        return np.ones((n, d)) + 0.05 * z
    if kind == "wide":  # n < d
        return rng.normal(size=(6, 40))
    raise ValueError(kind)


KINDS = ["random", "rank_deficient", "duplicated_rows", "zero_rows", "near_collinear", "wide"]


def assert_close(actual, expected, rtol=RTOL, atol=1e-6):
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- #
# Gram
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("center", [False, True])
def test_gram_matches_reference(kind, center, rng):
    z = _features(kind, rng)
    k = to_numpy(nc.gram(z, center=center))
    np.testing.assert_allclose(k, ref.gram(z, center=center), atol=1e-5)
    assert k.dtype == np.float32


def test_gram_explicit_mean_and_batch(rng):
    z = rng.normal(size=(3, 7, 5)) + 2.0
    mean = rng.normal(size=(5,))
    k = to_numpy(nc.gram(z.astype("float32"), mean=mean.astype("float32")))
    assert k.shape == (3, 7, 7)
    for b in range(3):
        np.testing.assert_allclose(k[b], ref.gram(z[b], mean=mean), atol=2e-6)
    # Per-batch means, shape (..., d).
    means = z.mean(axis=1)
    k2 = to_numpy(nc.gram(z.astype("float32"), mean=means.astype("float32")))
    np.testing.assert_allclose(k2, to_numpy(nc.gram(z.astype("float32"), center=True)), atol=1e-6)


def test_gram_zero_rows_have_zero_diagonal(rng):
    z = _features("zero_rows", rng)
    k = to_numpy(nc.gram(z))
    diag = np.diag(k)
    np.testing.assert_allclose(diag[[0, 5, 7]], 0.0)
    np.testing.assert_allclose(np.delete(diag, [0, 5, 7]), 1.0, rtol=1e-6)


# --------------------------------------------------------------------------- #
# Entropies
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5, 3.0])
def test_matrix_entropy_matches_reference(kind, alpha, rng):
    z = _features(kind, rng)
    # The reference reads the exact (float64) Gram of the same float32 features;
    # the tolerance is the float32 bound of tests/tolerances.py on that spectrum
    # (orders alpha < 1 have the largest: the library cuts their round-off at
    # the numerical rank tolerance, and what the cut removes is counted).
    k = ref.gram(z)
    h = nc.matrix_entropy(nc.gram(z), alpha=alpha)
    assert_close(h, ref.entropy(k, alpha), rtol=0, atol=tol.entropy_tolerance(k, alpha))


def _digits_pixels(n):
    """Real, ill-conditioned features: raw 8x8 digit pixels (dead border pixels, rank < 64)."""
    from sklearn.datasets import load_digits

    return load_digits().data[:n].astype("float32")


@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5, 3.0])
@pytest.mark.parametrize("center", [False, True])
def test_entropy_of_real_ill_conditioned_features(alpha, center):
    z = _digits_pixels(96)  # 96 x 64, Gram eigenvalues spread over ~1e-7 .. 1 (relative)
    k = ref.gram(z, center=center)
    assert np.linalg.cond(k) > 1e6  # the data is what the test claims
    bound = tol.entropy_tolerance(k, alpha, size=64)
    want = ref.entropy(k, alpha)
    assert_close(nc.feature_entropy(z, center=center, alpha=alpha), want, rtol=0, atol=bound)
    bound_n = tol.entropy_tolerance(k, alpha)
    got = nc.matrix_entropy(nc.gram(z, center=center), alpha=alpha)
    assert_close(got, want, rtol=0, atol=bound_n)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_feature_entropy_equals_gram_path(kind, center, alpha, rng):
    z = _features(kind, rng)
    k = ref.gram(z, center=center)
    bound = tol.entropy_tolerance(k, alpha, size=min(z.shape))
    fast = nc.feature_entropy(z, center=center, alpha=alpha)
    slow = nc.matrix_entropy(nc.gram(z, center=center), alpha=alpha)
    assert_close(fast, to_numpy(slow), rtol=0, atol=bound + tol.entropy_tolerance(k, alpha))
    assert_close(fast, ref.entropy(k, alpha), rtol=0, atol=bound)


def test_feature_entropy_normalize_and_mean(rng):
    z = rng.normal(size=(40, 8)) + 1.0
    mean = z.mean(axis=0)
    h = nc.feature_entropy(z.astype("float32"), mean=mean.astype("float32"), normalize=True)
    assert_close(h, ref.entropy(ref.gram(z, mean=mean)) / np.log(40))


def test_normalized_entropy_bounds():
    n = 6
    assert_close(nc.matrix_entropy(np.eye(n, dtype="float32"), normalize=True), 1.0)
    assert_close(nc.matrix_entropy(np.ones((n, n), dtype="float32"), normalize=True), 0.0)
    assert_close(nc.matrix_entropy(np.eye(n, dtype="float32")), np.log(n))
    assert_close(nc.effective_rank(np.diag([2.0, 2.0, 2.0, 0.0]).astype("float32")), 3.0)


def test_entropy_is_batched(rng):
    z = rng.normal(size=(4, 9, 5))
    k = np.stack([ref.gram(zi) for zi in z])
    h = to_numpy(nc.matrix_entropy(k.astype("float32")))
    assert h.shape == (4,)
    np.testing.assert_allclose(h, [ref.entropy(ki) for ki in k], rtol=RTOL)
    hf = to_numpy(nc.feature_entropy(z.astype("float32")))
    np.testing.assert_allclose(hf, h, rtol=RTOL)


# --------------------------------------------------------------------------- #
# Mutual information, MIR, HDR
# --------------------------------------------------------------------------- #


def _pair(kind, rng):
    """Float32 features of two related views of the same samples."""
    z1 = _features(kind, rng)
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


@pytest.mark.parametrize("kind", KINDS)
def test_mi_mir_hdr_match_reference(kind, rng):
    z1, z2 = _pair(kind, rng)
    a, b = nc.gram(z1), nc.gram(z2)
    # MI, MIR and HDR are differences of entropies: their float32 error is
    # the entropies' (tests/tolerances.py), not relative to the difference.
    want = _ratio_bounds(ref.gram(z1), ref.gram(z2))
    assert_close(nc.matrix_mutual_information(a, b), want["mi"][0], rtol=0, atol=want["mi"][1])
    assert_close(nc.mir(a, b), want["mir"][0], rtol=0, atol=want["mir"][1])
    assert_close(nc.hdr(a, b), want["hdr"][0], rtol=0, atol=want["hdr"][1])


@pytest.mark.parametrize("alpha", [2.0, 0.5, 3.0])
@pytest.mark.parametrize("rank_deficient", [False, True])
def test_renyi_mir_hdr_match_reference(alpha, rank_deficient, rng):
    z1 = rng.normal(size=(12, 5 if rank_deficient else 16)).astype("float32")
    z2 = (z1 @ rng.normal(size=(z1.shape[1], 20)) + rng.normal(size=(12, 20))).astype("float32")
    a, b = nc.gram(z1), nc.gram(z2)
    want = _ratio_bounds(ref.gram(z1), ref.gram(z2), alpha)
    assert_close(nc.mir(a, b, alpha=alpha), want["mir"][0], rtol=0, atol=want["mir"][1])
    assert_close(nc.hdr(a, b, alpha=alpha), want["hdr"][0], rtol=0, atol=want["hdr"][1])


def test_identical_grams_give_full_information(rng):
    k = ref.gram(rng.normal(size=(10, 10))).astype("float32")
    h = to_numpy(nc.matrix_entropy(k))
    hkk = ref.entropy(k.astype(np.float64) ** 2)
    assert_close(nc.matrix_mutual_information(k, k), 2 * h - hkk, atol=1e-5)
    assert_close(nc.hdr(k, k), 0.0)


# --------------------------------------------------------------------------- #
# Degenerate inputs: defined, finite values
# --------------------------------------------------------------------------- #


def test_rank_one_grams_define_mir_and_hdr_as_zero():
    ones = np.ones((5, 5), dtype="float32")  # one-class batch: every row identical
    other = ref.gram(np.random.default_rng(0).normal(size=(5, 3))).astype("float32")
    assert_close(nc.matrix_entropy(ones), 0.0)
    assert_close(nc.mir(ones, ones), 0.0)
    assert_close(nc.hdr(ones, ones), 0.0)
    # One rank-1 side: I = 0 and min(H) = 0, MIR defined as 0; HDR is 1.
    assert_close(nc.mir(ones, other), 0.0)
    assert_close(nc.hdr(ones, other), 1.0)


def test_all_zero_features_give_zero_entropy():
    z = np.zeros((6, 4), dtype="float32")
    k = nc.gram(z)
    assert_close(k, np.zeros((6, 6)))
    for value in (
        nc.matrix_entropy(k),
        nc.matrix_entropy(k, alpha=2.0),
        nc.feature_entropy(z),
        nc.mir(k, k),
        nc.hdr(k, k),
        nc.matrix_mutual_information(k, k),
    ):
        assert_close(value, 0.0)
    assert_close(nc.effective_rank(k), 1.0)


def test_single_sample_batch():
    z = np.ones((1, 4), dtype="float32")
    assert_close(nc.feature_entropy(z), 0.0)
    assert_close(nc.mir(nc.gram(z), nc.gram(z)), 0.0)


# --------------------------------------------------------------------------- #
# Dtypes and compilation
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(dtype, rng):
    import keras

    z = rng.normal(size=(16, 8)).astype("float32")
    zh = keras.ops.cast(z, dtype)
    zq = to_numpy(keras.ops.cast(zh, "float32")).astype(np.float64)
    h = nc.feature_entropy(zh)
    assert keras.backend.standardize_dtype(h.dtype) == "float32"
    assert_close(h, ref.entropy(ref.gram(zq)))
    k = nc.gram(zh)
    assert keras.backend.standardize_dtype(k.dtype) == "float32"


def test_float64_inputs_stay_float64(rng):
    if not float64_supported():
        pytest.skip(f"float64 is not enabled on {BACKEND}")
    import keras

    z = rng.normal(size=(30, 6))
    k1, k2 = ref.gram(z), ref.gram(z[:, :3])
    t1 = keras.ops.convert_to_tensor(k1, dtype="float64")
    t2 = keras.ops.convert_to_tensor(k2, dtype="float64")
    value = nc.mir(t1, t2)
    assert keras.backend.standardize_dtype(value.dtype) == "float64"
    np.testing.assert_allclose(to_numpy(value), ref.mir(k1, k2), rtol=1e-9)
    # From features: the Gram's matmul too stays float64 (Keras 3.15's torch
    # backend computes float64 @ float64 in float32; the ops avoid that).
    k = nc.gram(keras.ops.convert_to_tensor(z, dtype="float64"))
    assert keras.backend.standardize_dtype(k.dtype) == "float64"
    np.testing.assert_allclose(to_numpy(k), ref.gram(z), atol=1e-13)
    h = nc.feature_entropy(keras.ops.convert_to_tensor(z, dtype="float64"))
    np.testing.assert_allclose(to_numpy(h), ref.entropy(ref.gram(z)), rtol=1e-12)


def test_ops_compile_with_xla(rng):
    z = rng.normal(size=(32, 6)).astype("float32")
    w = rng.normal(size=(32, 4)).astype("float32")

    def step(z, w):
        kz, kw = nc.gram(z, center=True), nc.gram(w)
        return nc.mir(kz, kw), nc.hdr(kz, kw), nc.feature_entropy(z, center=True)

    got = compiled(step)(z, w)
    kz, kw = ref.gram(z, center=True), ref.gram(w)
    assert_close(got[0], ref.mir(kz, kw), atol=1e-5)
    assert_close(got[1], ref.hdr(kz, kw), atol=1e-5)
    assert_close(got[2], ref.entropy(kz))


# --------------------------------------------------------------------------- #
# Gradients
# --------------------------------------------------------------------------- #


def _degenerate_features(rng):
    """n > d, duplicated rows and zero rows at once."""
    z = rng.normal(size=(12, 3))
    z[6:9] = z[:3]
    z[[2, 10]] = 0.0
    return z.astype("float32")


@pytest.mark.parametrize(
    "quantity",
    ["entropy", "feature_entropy", "renyi2", "mir", "hdr"],
)
def test_gradients_are_finite_and_nonzero_for_degenerate_features(quantity, rng):
    z = _degenerate_features(rng)
    w = rng.normal(size=(12, 5)).astype("float32")

    def fn(x):
        kz = nc.gram(x, center=quantity in ("mir", "hdr"))
        if quantity == "entropy":
            return nc.matrix_entropy(kz)
        if quantity == "feature_entropy":
            return nc.feature_entropy(x)
        if quantity == "renyi2":
            return nc.matrix_entropy(kz, alpha=2.0)
        kw = nc.gram(w)
        return nc.mir(kz, kw) if quantity == "mir" else nc.hdr(kz, kw)

    g = grad(fn, z)
    assert g.shape == z.shape
    assert np.all(np.isfinite(g)), g
    assert np.abs(g).max() > 1e-6


def test_gradient_matches_finite_differences(rng):
    z = rng.normal(size=(10, 4))

    def ref_fn(x):
        return ref.entropy(ref.gram(x, center=True))

    g = grad(lambda x: nc.feature_entropy(x, center=True), z)
    step = 1e-5
    for i, j in [(0, 0), (3, 2), (9, 3), (5, 1)]:
        zp, zm = z.copy(), z.copy()
        zp[i, j] += step
        zm[i, j] -= step
        fd = (ref_fn(zp) - ref_fn(zm)) / (2 * step)
        np.testing.assert_allclose(g[i, j], fd, rtol=2e-3, atol=1e-4)


def test_eigh_handles_many_zero_rows(rng):
    """A Gram with most rows masked to zero (as a loss would build) stays finite."""
    z = rng.normal(size=(64, 16)).astype("float32")
    z[5:] = 0.0
    k = nc.gram(z)
    assert np.isfinite(to_numpy(nc.matrix_entropy(k)))
    g = grad(lambda x: nc.matrix_entropy(nc.gram(x)), z)
    assert np.all(np.isfinite(g))
    assert_close(nc.matrix_entropy(k), ref.entropy(ref.gram(z)))


# --------------------------------------------------------------------------- #
# Sample-head pairing from the cheap sides, and CMA's block-diagonal layout
# --------------------------------------------------------------------------- #


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
    expected = [ref.entropy(k, alpha) for k in (k_z, k_w, k_z * k_w)]
    for got, want in zip(nc.sample_head_entropies(z, y, w, alpha=alpha), expected, strict=True):
        assert_close(got, want, atol=2e-5)
    mir, hdr = nc.sample_head_ratios(z, y, w, alpha=alpha)
    assert_close(mir, ref.mir(k_z, k_w, alpha), atol=2e-5)
    assert_close(hdr, ref.hdr(k_z, k_w, alpha), atol=2e-5)


def test_sample_head_ratios_compile(rng):
    z = rng.normal(size=(32, 6)).astype("float32")
    w = rng.normal(size=(4, 6)).astype("float32")
    y = rng.integers(0, 4, 32).astype("int32")
    got = compiled(lambda z, w: nc.sample_head_ratios(z, y, w))(z, w)
    k_z, k_w = ref.gram(z, center=True), ref.gram(w[y])
    assert_close(got[0], ref.mir(k_z, k_w), atol=1e-5)
    assert_close(got[1], ref.hdr(k_z, k_w), atol=1e-5)


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
            assert_close(value, want, rtol=0, atol=error)


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
        np.testing.assert_allclose(g, fd, atol=2e-4)
    assert np.abs(g_z).max() > 1e-3


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


def test_errors_name_the_argument():
    square = np.eye(3, dtype="float32")
    with pytest.raises(ValueError, match="`k` must be a square matrix"):
        nc.matrix_entropy(np.ones((3, 4), dtype="float32"))
    with pytest.raises(ValueError, match="`k` must have rank >= 2"):
        nc.matrix_entropy(np.ones((3,), dtype="float32"))
    with pytest.raises(ValueError, match="`k1` and `k2` must have the same shape"):
        nc.mir(square, np.eye(4, dtype="float32"))
    with pytest.raises(ValueError, match="`k2` must be a square matrix"):
        nc.hdr(square, np.ones((3, 2), dtype="float32"))
    with pytest.raises(ValueError, match="`alpha` must be a number > 0"):
        nc.matrix_entropy(square, alpha=0)
    with pytest.raises(ValueError, match="`alpha` must be a number > 0"):
        nc.mir(square, square, alpha="2")
    with pytest.raises(ValueError, match="needs n >= 2"):
        nc.matrix_entropy(np.ones((1, 1), dtype="float32"), normalize=True)
    with pytest.raises(ValueError, match="`x` must have rank >= 2"):
        nc.gram(np.ones((4,), dtype="float32"))
    with pytest.raises(ValueError, match="needs n >= 2"):
        nc.feature_entropy(np.ones((1, 5), dtype="float32"), normalize=True)
