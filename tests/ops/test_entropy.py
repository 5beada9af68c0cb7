"""`keras_nc.ops.entropy` (Gram matrices, matrix and feature entropy) against the
independent float64 NumPy reference, on the active backend.
"""

import numpy as np
import pytest

import tests.reference as ref
import tests.tolerances as tol
from keras_nc import ops as nc
from tests.helpers import (
    BACKEND,
    FEATURE_KINDS,
    compiled,
    feature_batch,
    float64_supported,
    grad,
    to_numpy,
)
from tests.tolerances import float64_ratio_tolerance, gram_tolerance

# Defined values (an all-zero Gram, one sample): the library returns the
# constant, no rounding is involved.
EXACT = 0.0


def assert_close(actual, expected, atol):
    # tol: rtol=0: every bound of tests/tolerances.py is absolute
    np.testing.assert_allclose(to_numpy(actual), expected, atol=atol)


@pytest.mark.parametrize("kind", FEATURE_KINDS)
@pytest.mark.parametrize("center", [False, True])
def test_gram_matches_reference(kind, center, rng):
    z = feature_batch(kind, rng)
    k = to_numpy(nc.gram(z, center=center))
    np.testing.assert_allclose(k, ref.gram(z, center=center), atol=gram_tolerance(z, center))
    assert k.dtype == np.float32


def test_gram_explicit_mean_and_batch(rng):
    z = rng.normal(size=(3, 7, 5)) + 2.0
    mean = rng.normal(size=(5,))
    k = to_numpy(nc.gram(z.astype("float32"), mean=mean.astype("float32")))
    assert k.shape == (3, 7, 7)
    for b in range(3):
        bound = gram_tolerance(z[b].astype("float32"), mean=mean.astype("float32"))
        np.testing.assert_allclose(k[b], ref.gram(z[b], mean=mean), atol=bound)
    # Per-batch means, shape (..., d).
    means = z.mean(axis=1)
    k2 = to_numpy(nc.gram(z.astype("float32"), mean=means.astype("float32")))
    k1 = to_numpy(nc.gram(z.astype("float32"), center=True))
    bound = max(gram_tolerance(z[b].astype("float32"), center=True) for b in range(3))
    np.testing.assert_allclose(k2, k1, atol=2 * bound)  # two float32 Grams, each to its bound


def test_gram_zero_rows_have_zero_diagonal(rng):
    z = feature_batch("zero_rows", rng)
    k = to_numpy(nc.gram(z))
    diag = np.diag(k)
    np.testing.assert_allclose(diag[[0, 5, 7]], 0.0)
    np.testing.assert_allclose(np.delete(diag, [0, 5, 7]), 1.0, atol=gram_tolerance(z))


@pytest.mark.parametrize("kind", FEATURE_KINDS)
@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5, 3.0])
def test_matrix_entropy_matches_reference(kind, alpha, rng):
    z = feature_batch(kind, rng)
    # The reference reads the exact (float64) Gram of the same float32 features;
    # the tolerance is the float32 bound of tests/tolerances.py on that spectrum
    # (orders alpha < 1 have the largest: the library cuts their round-off at
    # the numerical rank tolerance, and what the cut removes is counted).
    k = ref.gram(z)
    h = nc.matrix_entropy(nc.gram(z), alpha=alpha)
    assert_close(h, ref.entropy(k, alpha), atol=tol.entropy_tolerance(k, alpha))


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
    assert_close(nc.feature_entropy(z, center=center, alpha=alpha), want, atol=bound)
    bound_n = tol.entropy_tolerance(k, alpha)
    got = nc.matrix_entropy(nc.gram(z, center=center), alpha=alpha)
    assert_close(got, want, atol=bound_n)


@pytest.mark.parametrize("kind", FEATURE_KINDS)
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_feature_entropy_equals_gram_path(kind, center, alpha, rng):
    z = feature_batch(kind, rng)
    k = ref.gram(z, center=center)
    bound = tol.entropy_tolerance(k, alpha, size=min(z.shape))
    fast = nc.feature_entropy(z, center=center, alpha=alpha)
    slow = nc.matrix_entropy(nc.gram(z, center=center), alpha=alpha)
    assert_close(fast, to_numpy(slow), atol=bound + tol.entropy_tolerance(k, alpha))
    assert_close(fast, ref.entropy(k, alpha), atol=bound)


def test_feature_entropy_normalize_and_mean(rng):
    z = rng.normal(size=(40, 8)) + 1.0
    mean = z.mean(axis=0)
    h = nc.feature_entropy(z.astype("float32"), mean=mean.astype("float32"), normalize=True)
    k = ref.gram(z, mean=mean)
    assert_close(h, ref.entropy(k) / np.log(40), atol=tol.entropy_tolerance(k, size=8) / np.log(40))


def test_normalized_entropy_bounds():
    n = 6
    eye, ones, diag = np.eye(n), np.ones((n, n)), np.diag([2.0, 2.0, 2.0, 0.0])
    e_eye, e_ones = tol.entropy_tolerance(eye), tol.entropy_tolerance(ones)
    assert_close(nc.matrix_entropy(eye.astype("float32"), normalize=True), 1.0, e_eye / np.log(n))
    assert_close(nc.matrix_entropy(ones.astype("float32"), normalize=True), 0.0, e_ones / np.log(n))
    assert_close(nc.matrix_entropy(eye.astype("float32")), np.log(n), e_eye)
    # exp(H): its error is exp(H) = 3 times the entropy's.
    assert_close(nc.effective_rank(diag.astype("float32")), 3.0, 3.0 * tol.entropy_tolerance(diag))


def test_entropy_is_batched(rng):
    z = rng.normal(size=(4, 9, 5))
    k = np.stack([ref.gram(zi) for zi in z])
    h = to_numpy(nc.matrix_entropy(k.astype("float32")))
    assert h.shape == (4,)
    bound = np.array([tol.entropy_tolerance(ki) for ki in k])
    assert np.all(np.abs(h - [ref.entropy(ki) for ki in k]) <= bound)
    hf = to_numpy(nc.feature_entropy(z.astype("float32")))
    assert np.all(np.abs(hf - h) <= 2 * bound)  # two float32 paths, each to its bound


def test_all_zero_features_give_zero_entropy():
    z = np.zeros((6, 4), dtype="float32")
    k = nc.gram(z)
    assert_close(k, np.zeros((6, 6)), EXACT)
    for value in (
        nc.matrix_entropy(k),
        nc.matrix_entropy(k, alpha=2.0),
        nc.feature_entropy(z),
        nc.mir(k, k),
        nc.hdr(k, k),
        nc.matrix_mutual_information(k, k),
    ):
        assert_close(value, 0.0, EXACT)
    assert_close(nc.effective_rank(k), 1.0, EXACT)


def test_single_sample_batch():
    z = np.ones((1, 4), dtype="float32")
    assert_close(nc.feature_entropy(z), 0.0, EXACT)
    assert_close(nc.mir(nc.gram(z), nc.gram(z)), 0.0, EXACT)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(dtype, rng):
    import keras

    z = rng.normal(size=(16, 8)).astype("float32")
    zh = keras.ops.cast(z, dtype)
    zq = to_numpy(keras.ops.cast(zh, "float32")).astype(np.float64)
    h = nc.feature_entropy(zh)
    assert keras.backend.standardize_dtype(h.dtype) == "float32"
    kq = ref.gram(zq)  # the half-precision values, exact in float32: float32 bounds
    assert_close(h, ref.entropy(kq), tol.entropy_tolerance(kq, size=min(zq.shape)))
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
    # Both sides in float64: the library's and the reference's round-off.
    bound = 2 * float64_ratio_tolerance(k1, k2, "mir")
    np.testing.assert_allclose(to_numpy(value), ref.mir(k1, k2), atol=bound)
    # From features: the Gram's matmul too stays float64 (Keras 3.15's torch
    # backend computes float64 @ float64 in float32; the ops avoid that).
    k = nc.gram(keras.ops.convert_to_tensor(z, dtype="float64"))
    assert keras.backend.standardize_dtype(k.dtype) == "float64"
    np.testing.assert_allclose(
        to_numpy(k), ref.gram(z), atol=2 * gram_tolerance(z, dtype="float64")
    )
    h = nc.feature_entropy(keras.ops.convert_to_tensor(z, dtype="float64"))
    bound = 2 * tol.entropy_tolerance(ref.gram(z), dtype="float64", size=min(z.shape))
    np.testing.assert_allclose(to_numpy(h), ref.entropy(ref.gram(z)), atol=bound)


def test_ops_compile_with_xla(rng):
    z = rng.normal(size=(32, 6)).astype("float32")
    w = rng.normal(size=(32, 4)).astype("float32")

    def step(z, w):
        kz, kw = nc.gram(z, center=True), nc.gram(w)
        return nc.mir(kz, kw), nc.hdr(kz, kw), nc.feature_entropy(z, center=True)

    got = compiled(step)(z, w)
    kz, kw = ref.gram(z, center=True), ref.gram(w)
    assert_close(got[0], ref.mir(kz, kw), atol=tol.information_tolerance(kz, kw, "mir"))
    assert_close(got[1], ref.hdr(kz, kw), atol=tol.information_tolerance(kz, kw, "hdr"))
    assert_close(got[2], ref.entropy(kz), atol=tol.entropy_tolerance(kz, size=min(z.shape)))


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
        # A float32 gradient through eigh: errors ~eps32 * ||grad|| / (smallest nonzero
        # eigenvalue and gap of rho, a few 1e-2 for 10 x 4 rows) ~ 1e-5 relative; the central
        # difference: step**2 truncation ~1e-10, eps64 / step rounding ~1e-11.
        # tol: 2e-3 leaves a factor 100 over those; a wrong term or sign fails
        np.testing.assert_allclose(g[i, j], fd, rtol=2e-3, atol=1e-4)


def test_eigh_handles_many_zero_rows(rng):
    """A Gram with most rows masked to zero (as a loss would build) stays finite."""
    z = rng.normal(size=(64, 16)).astype("float32")
    z[5:] = 0.0
    k = nc.gram(z)
    assert np.isfinite(to_numpy(nc.matrix_entropy(k)))
    g = grad(lambda x: nc.matrix_entropy(nc.gram(x)), z)
    assert np.all(np.isfinite(g))
    k64 = ref.gram(z)
    assert_close(nc.matrix_entropy(k), ref.entropy(k64), tol.entropy_tolerance(k64))


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
