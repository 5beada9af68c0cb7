"""The epoch measures at many classes: tiled CDNV, the ETF error and class MIR from `d`-sized sides.

Every path that large `C` takes is exercised at small `C` by forcing it: a
`block_size` of a few rows makes CDNV and the order-2 class pairing sum over
many tiles (eagerly in a Python loop, compiled with `fori_loop`), `C > d`
takes the ETF error's `d x d` route, `C > d^2` the class pairing's Kronecker
(`d^2`) side. The reference is the float64 NumPy code of tests/reference.py
on the full `C x C` matrices.

Tolerances (tests/tolerances.py): with float64 features the statistics and the
measures are float64 (TensorFlow, PyTorch): sums of at most a few hundred
terms and `C^2 / 2` tile sums of positive terms, relative error below
`1e3 * eps64 = 2e-13` times the conditioning of the data (well separated
means: below 1e2), so 1e-9 has a wide margin and still fails on any
mathematical slip (the equinorm conventions differ by 1e-2 here). JAX without
x64 computes in float32: the suite's NC tolerance (1%), and the tiled sums
against the untiled ones within the round-off of reordering `C^2` positive
terms (`C^2 eps` relative).
"""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import ops as nc_ops
from keras_nc import theory
from tests.helpers import BACKEND, compiled, float64_supported, to_numpy
from tests.tolerances import EPS32, entropy_tolerance, float32_tolerance, ratio_tolerance

NC_KEYS = ("nc1", "cdnv", "etf_error", "equinorm", "self_duality")
FLOAT64 = float64_supported()
COMPUTE = "float64" if FLOAT64 else "float32"
EPS = 2.0**-52 if FLOAT64 else EPS32
NC_RTOL = 1e-9 if FLOAT64 else 1e-2


def _data(rng, num_classes, d, per_class=12, absent=()):
    """Well-separated class means (scale 3, unit noise) with a common offset; float64."""
    means = 3.0 * rng.normal(size=(num_classes, d)) + 1.0
    y = np.repeat(np.arange(num_classes), per_class)
    y = y[~np.isin(y, absent)]
    z = means[y] + rng.normal(size=(len(y), d))
    head = rng.normal(size=(num_classes, d))
    return z.astype(COMPUTE), y.astype("int32"), head.astype(COMPUTE)


def _measures(z, y, head, num_classes, **kwargs):
    stats = nc_ops.class_statistics(z, y, num_classes)
    values = nc_ops.neural_collapse_measures(stats, head, **kwargs)
    return {key: float(to_numpy(value)) for key, value in values.items()}


@pytest.mark.parametrize(
    "num_classes, d, block_size",
    [
        (10, 16, None),  # C <= d: the C x C Gram, one tile
        (10, 16, 3),  # C <= d, 4 blocks (the last padded)
        (40, 8, 7),  # C > d: the ETF error from d x d; 6 blocks
        (40, 8, None),
    ],
)
def test_measures_match_reference(rng, num_classes, d, block_size):
    z, y, head = _data(rng, num_classes, d)
    want = ref.neural_collapse(z.astype(np.float64), y, head, num_classes)
    got = _measures(z, y, head, num_classes, block_size=block_size)
    for key in NC_KEYS:
        np.testing.assert_allclose(got[key], want[key], rtol=NC_RTOL, err_msg=key)


@pytest.mark.parametrize("block_size", [1, 7])
def test_tiles_equal_one_block(rng, block_size):
    """The tiled CDNV is the untiled one up to the reordering of C^2 positive terms."""
    num_classes = 17 if block_size == 1 else 40
    z, y, head = _data(rng, num_classes, 8)
    whole = _measures(z, y, head, num_classes)
    tiled = _measures(z, y, head, num_classes, block_size=block_size)
    for key in NC_KEYS:
        np.testing.assert_allclose(tiled[key], whole[key], rtol=4 * num_classes**2 * EPS)


@pytest.mark.parametrize("num_classes, d", [(10, 16), (30, 6)])
def test_compiled_with_absent_classes(rng, num_classes, d):
    """Traced (static shapes): every row is kept and the absent ones masked, tiles in a loop."""
    z, y, head = _data(rng, num_classes, d, absent=(2, 5, 6))
    want = ref.neural_collapse(z.astype(np.float64), y, head, num_classes)

    def fn(z, y, head):
        stats = nc_ops.class_statistics(z, y, num_classes)
        return nc_ops.neural_collapse_measures(stats, head, block_size=4)

    got = compiled(fn)(z, y, head)
    # NC1 (unchanged here, an SVD) is left to tests/metrics/test_class_measures.py: XLA's float64
    # SVD is accurate to ~1e-9 relative, not to the 1e-13 of LAPACK's.
    for key in NC_KEYS[1:]:
        np.testing.assert_allclose(float(to_numpy(got[key])), want[key], rtol=NC_RTOL, err_msg=key)


def _near_etf(rng, num_classes, d, perturbation):
    """Class means at distance ~`perturbation` from a simplex ETF, with an offset."""
    etf = np.asarray(theory.simplex_etf(num_classes), np.float64)  # (C, C), rows sum to 0
    _, _, vt = np.linalg.svd(etf)
    means = etf @ vt[: num_classes - 1].T  # (C, C - 1), the same Gram
    means = np.pad(means, ((0, 0), (0, d - num_classes + 1)))
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    means = 5.0 * means @ rotation + 3.0 + perturbation * rng.normal(size=(num_classes, d))
    y = np.repeat(np.arange(num_classes), 2)
    return means[y], y


def test_etf_error_near_collapse_from_width_side(rng):
    """C = d + 1 > d (the d x d route) at ETF error ~1e-6 (float64) or ~1e-2 (float32).

    The expansion `E^2 = 2 - 2 g / f` would lose half the digits (absolute
    error sqrt(eps) = 1.5e-8 in float64: 1e-2 relative here); the route
    taken keeps the relative error of order eps * cond (float64: below 1e-9
    relative; float32: the rounding of the float32 statistics, 1e-7 absolute,
    1e-5 relative at E = 1e-2).
    """
    num_classes, d = 9, 8
    perturbation, rtol = (1e-6, 1e-7) if FLOAT64 else (1e-2, 1e-3)
    z, y = _near_etf(rng, num_classes, d, perturbation)
    want = ref.neural_collapse(z, y, np.ones((num_classes, d)), num_classes)["etf_error"]
    assert want < 20 * perturbation  # near the ETF indeed
    stats = nc_ops.class_statistics(z.astype(COMPUTE), y, num_classes, second_moment=False)
    got = nc_ops.neural_collapse_measures(stats, measures=["etf_error"])
    np.testing.assert_allclose(float(to_numpy(got["etf_error"])), want, rtol=rtol)


@pytest.mark.parametrize("num_classes", [10, 40])
def test_equinorm_conventions(rng, num_classes):
    """ddof=0: NumPy's std of the norms over their mean; ddof=1: torch.std's (C - 1)."""
    z, y, head = _data(rng, num_classes, 8)
    z64 = z.astype(np.float64)
    means = np.stack([z64[y == c].mean(axis=0) for c in range(num_classes)])
    norms = np.linalg.norm(means - z64.mean(axis=0), axis=1)
    for ddof in (0, 1):
        got = _measures(z, y, head, num_classes, equinorm_ddof=ddof, measures=["equinorm"])
        assert set(got) == {"equinorm"}
        want = norms.std(ddof=ddof) / norms.mean()
        np.testing.assert_allclose(got["equinorm"], want, rtol=NC_RTOL)
    ratio = np.sqrt((num_classes - 1) / num_classes)
    both = [_measures(z, y, head, num_classes, equinorm_ddof=k)["equinorm"] for k in (0, 1)]
    np.testing.assert_allclose(both[0], both[1] * ratio, rtol=NC_RTOL)


def test_measure_arguments_are_checked(rng):
    z, y, head = _data(rng, 10, 16)
    stats = nc_ops.class_statistics(z, y, 10)
    with pytest.raises(ValueError, match="equinorm_ddof"):
        nc_ops.neural_collapse_measures(stats, equinorm_ddof=2)
    with pytest.raises(ValueError, match="measures"):
        nc_ops.neural_collapse_measures(stats, measures=["nc5"])
    with pytest.raises(ValueError, match="block_size"):
        nc_ops.neural_collapse_measures(stats, block_size=0)
    subset = nc_ops.neural_collapse_measures(stats, head, measures=["cdnv", "self_duality"])
    assert set(subset) == {"cdnv", "self_duality"}


@pytest.mark.parametrize(
    "num_classes, d, block_size",
    [
        (12, 16, None),  # C <= d: C x C Hadamard product
        (40, 8, 6),  # d < C <= d^2: C x C, built from 7 blocks of rows; tiled order 2
        (80, 4, 9),  # C > d^2: the d^2 x d^2 side
    ],
)
@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
def test_class_pairing_sides(rng, num_classes, d, block_size, alpha):
    z, y, head = _data(rng, num_classes, d)
    k_m, k_w = ref.class_pairing(z.astype(np.float64), y, head, num_classes)
    h = [ref.entropy(k, alpha) for k in (k_m, k_w, k_m * k_w)]
    joint_size = num_classes if num_classes <= d * d else d * d
    sizes = (min(num_classes, d), min(num_classes, d), joint_size)
    errors = [
        entropy_tolerance(k, alpha, size=s, dtype=COMPUTE)
        for k, s in zip((k_m, k_w, k_m * k_w), sizes, strict=True)
    ]
    stats = nc_ops.class_statistics(z, y, num_classes)
    got = nc_ops.class_pairing_ratios(
        stats["counts"], stats["sums"], head, alpha=alpha, block_size=block_size
    )
    hdr_alone = nc_ops.class_pairing_hdr(stats["counts"], stats["sums"], head, alpha=alpha)
    got = (*got, hdr_alone)
    for value, kind, want in zip(
        got, ("mir", "hdr", "hdr"), (ref.mir, ref.hdr, ref.hdr), strict=True
    ):
        # The means come from sums of 12 rows: 12 eps relative in the Grams.
        tol = ratio_tolerance(*h, *errors, kind) + 24 * EPS
        np.testing.assert_allclose(  # tol: rtol=0, the bound is absolute
            float(to_numpy(value)), want(k_m, k_w, alpha), atol=tol, rtol=0, err_msg=kind
        )


def test_class_pairing_order_two_compiled(rng):
    """The tiled order-2 sum inside a compiled function (`fori_loop` over 15 tiles)."""
    num_classes, d = 30, 8
    z, y, head = _data(rng, num_classes, d)
    eager = nc_ops.class_pairing_ratios(
        *[nc_ops.class_statistics(z, y, num_classes)[k] for k in ("counts", "sums")],
        head,
        alpha=2.0,
    )

    def fn(z, y, head):
        stats = nc_ops.class_statistics(z, y, num_classes)
        return nc_ops.class_pairing_ratios(
            stats["counts"], stats["sums"], head, alpha=2.0, block_size=6
        )

    got = compiled(fn)(z, y, head)
    for a, b in zip(got, eager, strict=True):
        np.testing.assert_allclose(
            float(to_numpy(a)), float(to_numpy(b)), rtol=4 * num_classes**2 * EPS, atol=EPS
        )


@pytest.mark.skipif(BACKEND != "torch", reason="one backend is enough for a memory check")
def test_no_class_by_class_matrix(rng):
    """CDNV and the ETF error at C = 3000 with 256-row tiles: no 3000 x 3000 tensor is made."""
    num_classes, d = 3000, 16
    z, y, _ = _data(rng, num_classes, d, per_class=2)
    stats = nc_ops.class_statistics(z, y, num_classes, second_moment=False)
    sizes = []
    with _Recorder(sizes):
        nc_ops.neural_collapse_measures(stats, measures=["cdnv", "etf_error"], block_size=256)
    assert sizes and max(sizes) <= 256 * 256, max(sizes)


class _Recorder:
    """Records the number of elements of every tensor torch functions return."""

    def __init__(self, sizes):
        self.sizes = sizes
        self.mode = None

    def __enter__(self):
        import torch

        sizes = self.sizes

        class Mode(torch.overrides.TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                if isinstance(out, torch.Tensor):
                    sizes.append(out.numel())
                return out

        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def test_keras_float64_stays_float64(rng):
    if not FLOAT64:
        pytest.skip("float32 compute")
    z, y, _ = _data(rng, 30, 4)
    stats = nc_ops.class_statistics(z, y, 30)
    value = nc_ops.neural_collapse_measures(stats, block_size=7)["cdnv"]
    assert keras.backend.standardize_dtype(value.dtype) == "float64"


def test_equinorm_metric_ddof(rng):
    """`Equinorm(ddof=1)` reads the sample-std convention; the default the population one."""
    from keras_nc import metrics

    num_classes, d = 10, 16
    z, y, head = _data(rng, num_classes, d)
    z64 = z.astype(np.float64)
    means = np.stack([z64[y == c].mean(axis=0) for c in range(num_classes)])
    norms = np.linalg.norm(means - z64.mean(axis=0), axis=1)
    # The metric's statistics are float32: a class mean sums 12 rows, the global
    # mean n rows (relative to max ||z_i||, amplified by the centring to
    # ||mean_c - mean||), a norm d terms. std / mean then divides the norms'
    # relative error by the coefficient of variation (cancellation in the std).
    amplification = np.linalg.norm(z64, axis=1).max() / norms.min()
    terms = 12 + 2 + len(z64) * amplification + d
    rtol = float32_tolerance(terms, scale=2 * (1 + norms.mean() / norms.std()))
    for ddof in (0, 1):
        metric = metrics.Equinorm(ddof=ddof)
        metric.update_state(y, features=z.astype("float32"), head_weights=head.astype("float32"))
        want = norms.std(ddof=ddof) / norms.mean()
        np.testing.assert_allclose(float(to_numpy(metric.result())), want, rtol=rtol)
        assert metrics.Equinorm.from_config(metric.get_config()).ddof == ddof
    with pytest.raises(ValueError, match="ddof"):
        metrics.Equinorm(ddof=2)


def test_class_pairing_eigenvalues_without_eigenvectors(rng, monkeypatch):
    """Order-1 class MIR takes the eigenvalues-only kernel (`compat.eigvalsh`), exact.

    The host path (NumPy's LAPACK, eager TensorFlow and JAX) is forced at this
    small size; PyTorch always takes `torch.linalg.eigvalsh`. No eigenvector
    (`eigh`) is computed for the class-by-class joint entropy.
    """
    from keras_nc import compat

    num_classes, d = 40, 8  # d < C <= d^2: the C x C Hadamard product
    z, y, head = _data(rng, num_classes, d)
    k_m, k_w = ref.class_pairing(z.astype(np.float64), y, head, num_classes)
    h = [ref.entropy(k) for k in (k_m, k_w, k_m * k_w)]
    sizes = (d, d, num_classes)
    errors = [
        entropy_tolerance(k, size=s, dtype=COMPUTE)
        for k, s in zip((k_m, k_w, k_m * k_w), sizes, strict=True)
    ]
    want = (ref.mir(k_m, k_w), ref.hdr(k_m, k_w))
    stats = nc_ops.class_statistics(z, y, num_classes)
    monkeypatch.setattr(compat.linalg, "HOST_EIGVALSH_MIN_SIZE", {"tensorflow": 0, "jax": 0})
    calls = {"eigvalsh": [], "eigh": 0}
    eigvalsh, eigh = compat.eigvalsh, keras.ops.eigh

    def counting_eigvalsh(k):
        calls["eigvalsh"].append((k.shape[-1], compat.host_eigenvalues_apply(k)))
        return eigvalsh(k)

    def counting_eigh(k):
        calls["eigh"] += 1
        return eigh(k)

    monkeypatch.setattr(compat, "eigvalsh", counting_eigvalsh)
    monkeypatch.setattr(keras.ops, "eigh", counting_eigh)
    got = nc_ops.class_pairing_ratios(stats["counts"], stats["sums"], head)
    assert calls["eigh"] == 0
    assert (num_classes, BACKEND != "torch") in calls["eigvalsh"]
    for value, kind, expected in zip(got, ("mir", "hdr"), want, strict=True):
        tol = ratio_tolerance(*h, *errors, kind) + 24 * EPS
        # tol: rtol=0, the bound is absolute
        np.testing.assert_allclose(float(to_numpy(value)), expected, atol=tol, rtol=0)
