"""RankMe and alpha-ReQ (`keras_nc.ops.rank`) against float64 NumPy references.

The references (`tests/reference.py`: `rank_me`, `alpha_req`) are written from the
definitions: the singular values of the full `(n, d)` matrix (the float32 array
the library gets, converted exactly) from `numpy.linalg.svd` in float64, with a
float64 round-off cut (NumPy's `matrix_rank` convention). reptrix's variants
(`get_rankme`, `get_alpha`) are written again here in NumPy from its code (the PCA
spectrum of the centred features, `+ 1e-7`, the `1 / k`-weighted normal
equations).

Tolerances (the suite's policy, tests/tolerances.py): every singular value
the library computes for a float32 matrix is off by at most about
`delta = sqrt(max(n, d)) * eps * s_max` (`eps = 2**-23`; a backward-stable
SVD, Wilkinson's rule of thumb; the float64 Gram of the float32 features,
where the backend computes in float64, is at least as exact). RankMe is
`exp(H)`, `H = -sum p_k log p_k` with `p_k = v_k / T` (`v_k = s_k`, or
`s_k^2` for the covariance spectrum, `T = sum v`), and
`dH / dv_k = -(log p_k + H) / T`; the relative error of RankMe is that of
`exp(H)`, `|dH|`, bounded to first order by `sum_k |log p_k + H| dv_k / T`
over the values that count, plus, for values within `delta` of the library's
cut (`sqrt(max(n, d)) * eps * s_max`, equal to `delta`), their whole term (they
may be dropped), plus, for true zeros of the reference, one surviving
round-off value of size `delta` each. alpha-ReQ is a least-squares slope in
`y_k = log lambda_k`; `dy_k = 2 ds_k / s_k`, `d alpha / d y_k = -w_k (x_k -
x_bar) / S_xx`. A safety factor of 2 covers second-order terms.
"""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import ops as nc_ops
from tests.helpers import BACKEND, compiled, float64_supported, grad, to_numpy
from tests.tolerances import (
    EPS32,
    SAFETY,
    alpha_tolerance,
    rank_me_float64_tolerance,
    rank_me_tolerance,
    spectrum_ratio_errors,
)

# A value printed to 4 decimals: half a unit of the last one.
PRINTED_4 = 5e-5


def marchenko_pastur_slope(n, d):
    """Statistical bound of alpha-ReQ's deviation from the population's decay.

    The sorted sample eigenvalues of `n` rows of a flat population spectrum
    spread over the Marchenko-Pastur support `[(1 - sqrt(g))^2, (1 + sqrt(g))^2]`
    (`g = d / n`), its edges fluctuating on the Tracy-Widom scale `n^(-2/3)`;
    that log width over the fit's `log d` is the slope it can add. A decaying
    population spectrum separates its eigenvalues, which then spread less.
    """
    g = d / n
    width = 2 * np.log((1 + np.sqrt(g)) / (1 - np.sqrt(g))) + 2 * n ** (-2 / 3)
    return width / np.log(d)


def exact_power_law_tolerance(spectrum, weighting="uniform"):
    """Float32 bound of alpha-ReQ of `diag(spectrum)`: each value rounded to float32
    (`eps` relative) and moved by `eigh` by `sqrt(m) eps max` (`dy_k` in `log lambda_k`),
    through the slope's `d alpha / d y_k = -w_k (x_k - x_bar) / S_xx`."""
    k = np.arange(1, spectrum.size + 1)
    w = 1.0 / k if weighting == "inverse_rank" else np.ones(k.size)
    x = np.log(k)
    x_bar = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - x_bar) ** 2)
    dy = EPS32 + np.sqrt(spectrum.size) * EPS32 * spectrum.max() / spectrum
    return SAFETY * float(np.sum(w * np.abs(x - x_bar) * dy) / sxx) + EPS32 * 2


def ref_reptrix_spectrum(z):
    """reptrix's `get_eigenspectrum`: PCA explained-variance ratios of the centred features."""
    s = ref.singular_values(ref.centred(z, True))
    variance = s**2 / (len(z) - 1)
    return variance / variance.sum()


def ref_reptrix_rankme(z):
    """reptrix's `get_rank` of that spectrum: `p = e / sum |e| + 1e-7`."""
    e = ref_reptrix_spectrum(z)
    p = e / np.sum(np.abs(e)) + 1e-7
    return float(np.exp(-np.sum(p * np.log(p))))


def ref_reptrix_alpha(z, trange=None):
    """reptrix's `get_powerlaw`: normal equations of the `1 / k`-weighted log-log fit."""
    e = ref_reptrix_spectrum(z)
    trange = np.arange(10, 100) if trange is None else np.asarray(trange)
    y = np.log(np.abs(e))[trange][:, None]
    ranks = trange + 1
    x = np.concatenate([-np.log(ranks)[:, None], np.ones((ranks.size, 1))], axis=1)
    w = 1.0 / ranks[:, None]
    b = np.linalg.solve(x.T @ (x * w), (w * x).T @ y).ravel()
    return float(b[0])


def _power_law(n, d, decay, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.arange(1, d + 1) ** (-decay / 2)


def _digits_relu(offset, n=256, width=96):
    """load_digits (bundled with scikit-learn) through a fixed random ReLU layer, float32.

    Positive, with dead units (exact zero columns) and a spectrum spanning
    several decades, like a trained network's features; `offset` (a multiple
    of the largest feature) is a common part added to every entry.
    """
    datasets = pytest.importorskip("sklearn.datasets")
    x = datasets.load_digits().data[:n] / 16.0
    rng = np.random.default_rng(0)
    w = rng.normal(size=(x.shape[1], width)) / 4.0
    b = rng.normal(size=width) - 1.0
    h = np.maximum(x @ w + b, 0.0)
    return (h + offset * h.max()).astype("float32")


def _low_rank_plus_noise(n=120, d=80, rank=6, noise=1e-4, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
    return (signal + noise * np.abs(signal).max() * rng.normal(size=(n, d))).astype("float32")


def _value(x):
    return float(to_numpy(x))


def _assert_rank_me(z, **kwargs):
    expected = ref.rank_me(z, **kwargs)
    tolerance = rank_me_tolerance(
        z, kwargs.get("center", False), kwargs.get("spectrum", "singular_values")
    )
    value = _value(nc_ops.rank_me(z, **kwargs))
    assert abs(value / expected - 1.0) <= tolerance, (value, expected, tolerance)
    return value, expected, tolerance


ACCEPTANCE = 1e-4  # issue 31: RankMe within 1e-4 relative of the float64 SVD on these cases


def _assert_accepted(z, **kwargs):
    """The analysis bound holds, and so does the issue's 1e-4.

    Where the backend computes in float64 (the float64 Gram) the bound itself
    is below 1e-4; with JAX's float32 SVD (no x64) the worst-case bound can
    reach 4e-4 on these cases (31 or more small singular values each off by
    up to `delta`), and the 1e-4 is checked on the value.
    """
    value, expected, tolerance = _assert_rank_me(z, **kwargs)
    assert abs(value / expected - 1.0) <= ACCEPTANCE
    if float64_supported():
        assert tolerance < ACCEPTANCE
    return value, expected


def test_rank_me_resolves_small_singular_values():
    # One singular value 1, 31 at 1e-3: a float32 Gram's eigenvalues (1e-6)
    # are at its round-off cut, so a Gram-based RankMe in float32 returned 1.
    z = np.diag([1.0] + [1e-3] * 31).astype("float32")
    _, expected = _assert_accepted(z)
    assert expected == pytest.approx(1.2690, abs=PRINTED_4)


@pytest.mark.parametrize("offset", [0.0, 10.0])
def test_rank_me_on_relu_features_with_a_common_offset(offset):
    z = _digits_relu(offset)
    s = ref.singular_values(z)
    # The data are what they should be: dead units, a spectrum over > 3 decades.
    assert np.count_nonzero(np.ptp(z, axis=0) == 0) >= 5
    # tol: a precondition on the data: the smallest kept value three decades below the largest
    assert s[ref.nonzero_singular_values(s, z.shape).size - 1] < 1e-3 * s[0]
    _assert_accepted(z)
    _assert_accepted(z, center=True)


def test_rank_me_on_low_rank_plus_noise():
    z = _low_rank_plus_noise()
    _assert_accepted(z)
    _assert_accepted(z.T.copy())  # the n < d side


@pytest.mark.parametrize("shape", [(40, 12), (12, 40)])  # the d x d side, then the n x n side
@pytest.mark.parametrize("center", [False, True])
def test_rank_me_matches_reference(shape, center):
    z = _power_law(*shape, decay=1.5) + 0.3
    _assert_rank_me(z.astype("float32"), center=center)
    if float64_supported():
        value = _value(nc_ops.rank_me(z, center=center))
        bound = rank_me_float64_tolerance(z, center)
        assert value == pytest.approx(ref.rank_me(z, center), rel=bound)


def test_rank_me_of_known_spectra():
    # k equal singular values give exactly k; rank-deficient input counts its rank.
    eye = np.eye(5, 8)
    assert _value(nc_ops.rank_me(eye)) == pytest.approx(5.0, rel=rank_me_tolerance(eye))
    rng = np.random.default_rng(0)
    low_rank = (rng.normal(size=(30, 3)) @ rng.normal(size=(3, 20))).astype("float32")
    value, _, _ = _assert_rank_me(low_rank)
    assert 1.0 <= value <= 3.0
    # Zero features: 1 by definition (the entropy of an empty spectrum is 0); finite.
    assert _value(nc_ops.rank_me(np.zeros((6, 4), "float32"))) == 1.0
    assert _value(nc_ops.rank_me(np.zeros((6, 4), "float32"), epsilon=1e-7)) == 1.0
    # Scale invariance, down to float32's smallest normal numbers and up to its largest.
    tolerance = rank_me_tolerance(low_rank)
    for scale in (1e-30, 1e30):
        scaled = _value(nc_ops.rank_me((scale * low_rank.astype("float64")).astype("float32")))
        assert scaled == pytest.approx(value, rel=2 * tolerance)


def test_paper_epsilon_and_covariance_spectrum():
    z = _low_rank_plus_noise(n=60, d=40)
    # The paper's 1e-7 on every p_k, and the covariance spectrum, centred (reptrix) or not.
    for kwargs in ({"epsilon": 1e-7}, {"spectrum": "covariance", "center": True}):
        _assert_rank_me(z, **kwargs)
    _assert_rank_me(z, spectrum="covariance")  # uncentred: the second moment's spectrum
    # The Gram form: eigenvalues of the covariance, or singular values from them.
    cov = (ref.centred(z, True).T @ ref.centred(z, True)).astype("float64")
    if float64_supported():
        value = _value(nc_ops.rank_me_of_gram(cov, spectrum="covariance"))
        want = ref.rank_me(z, center=True, spectrum="covariance")
        bound = rank_me_float64_tolerance(z, True, "covariance")
        assert value == pytest.approx(want, rel=bound)
    for bad in ({"spectrum": "eigen"}, {"epsilon": -1.0}, {"epsilon": True}, {"center": "no"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            nc_ops.rank_me(z, **bad)


def test_reptrix_variants_against_an_independent_numpy_implementation():
    z = _power_law(300, 120, decay=1.2, seed=3).astype("float32")
    # get_rankme: the PCA spectrum of the centred features, + 1e-7 on each ratio.
    expected = ref_reptrix_rankme(z)
    value = _value(nc_ops.rank_me(z, center=True, spectrum="covariance", epsilon=1e-7))
    assert abs(value / expected - 1.0) <= rank_me_tolerance(z, True, "covariance")
    # get_alpha with its default trange (0-based 10..99: the ranks 11..100).
    expected = ref_reptrix_alpha(z)
    value = _value(nc_ops.alpha_req(z, fit_range=(11, 100), weighting="inverse_rank"))
    assert abs(value - expected) <= alpha_tolerance(z, (11, 100), "inverse_rank")
    # The two fits of one spectrum differ: the option is not a no-op.
    uniform = _value(nc_ops.alpha_req(z, fit_range=(11, 100)))
    assert abs(uniform - value) > 10 * alpha_tolerance(z, (11, 100))
    # The reference is reptrix's: scikit-learn's PCA spectrum, where installed.
    decomposition = pytest.importorskip("sklearn.decomposition")
    pca = decomposition.PCA(n_components=min(z.shape), svd_solver="full").fit(z)
    got, want = pca.explained_variance_ratio_, ref_reptrix_spectrum(z)
    assert np.all(np.abs(got - want) <= spectrum_ratio_errors(z))  # a float32 SVD (same dtype)


@pytest.mark.parametrize("decay", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("weighting", ["uniform", "inverse_rank"])
def test_alpha_req_matches_reference(decay, weighting):
    z = _power_law(400, 24, decay).astype("float32")
    value = _value(nc_ops.alpha_req(z, weighting=weighting))
    assert abs(value - ref.alpha_req(z, weighting=weighting)) <= alpha_tolerance(z, None, weighting)
    # The sample spectrum follows the law, to sampling error.
    assert value == pytest.approx(decay, abs=marchenko_pastur_slope(*z.shape))
    ranged = _value(nc_ops.alpha_req(z, fit_range=(2, 10), weighting=weighting))
    expected = ref.alpha_req(z, (2, 10), weighting)
    assert abs(ranged - expected) <= alpha_tolerance(z, (2, 10), weighting)


def test_alpha_req_exact_spectrum_and_degenerate_input():
    spectrum = np.arange(1, 9, dtype="float64") ** -1.7
    value = _value(nc_ops.alpha_req_of_gram(np.diag(spectrum).astype("float32")))
    assert value == pytest.approx(1.7, abs=exact_power_law_tolerance(spectrum))
    weighted = _value(nc_ops.alpha_req_of_gram(np.diag(spectrum), weighting="inverse_rank"))
    bound = exact_power_law_tolerance(spectrum, "inverse_rank")
    assert weighted == pytest.approx(1.7, abs=bound)  # an exact power law: any weights
    # Rank <= 1 and zero features: 0 by definition, finite.
    assert _value(nc_ops.alpha_req(np.zeros((5, 3), "float32"))) == 0.0
    rank_one = np.outer(np.arange(1.0, 7.0), np.ones(4)).astype("float32")
    assert _value(nc_ops.alpha_req(rank_one, center=False)) == 0.0
    # Rank-deficient: the round-off singular values are left out of the fit.
    low = (np.random.default_rng(0).normal(size=(50, 4)) @ np.eye(4, 16)).astype("float32")
    assert abs(_value(nc_ops.alpha_req(low)) - ref.alpha_req(low)) <= alpha_tolerance(low)
    with pytest.raises(ValueError, match="fit_range"):
        nc_ops.alpha_req(low, fit_range=(3, 2))
    with pytest.raises(ValueError, match="weighting"):
        nc_ops.alpha_req(low, weighting="1/k")


def test_rank_measures_compile_with_static_shapes():
    z = _digits_relu(10.0, n=64, width=48)
    power = _power_law(64, 24, 1.0).astype("float32")

    def measures(a, b):
        return (
            nc_ops.rank_me(a),
            nc_ops.rank_me(a, center=True, spectrum="covariance", epsilon=1e-7),
            nc_ops.alpha_req(b),
            nc_ops.alpha_req(b, fit_range=(3, 20), weighting="inverse_rank"),
        )

    values = compiled(measures)(keras.ops.convert_to_tensor(z), keras.ops.convert_to_tensor(power))
    rank, covariance, alpha, weighted = (_value(v) for v in values)
    assert abs(rank / ref.rank_me(z) - 1) <= rank_me_tolerance(z)
    expected = ref.rank_me(z, center=True, spectrum="covariance", epsilon=1e-7)
    assert abs(covariance / expected - 1) <= rank_me_tolerance(z, True, "covariance")
    assert abs(alpha - ref.alpha_req(power)) <= alpha_tolerance(power)
    expected = ref.alpha_req(power, (3, 20), "inverse_rank")
    assert abs(weighted - expected) <= alpha_tolerance(power, (3, 20), "inverse_rank")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="a batch size unknown when traced: TF")
def test_rank_me_with_an_unknown_batch_size():
    import tensorflow as tf

    z = _low_rank_plus_noise(n=12, d=30)  # n < d: the traced d x d Gram has 18 extra zeros
    fn = tf.function(
        lambda t: (nc_ops.rank_me(t), nc_ops.rank_me(t, epsilon=1e-7)),
        input_signature=[tf.TensorSpec((None, 30), "float32")],
    )
    plain, paper = (_value(v) for v in fn(tf.constant(z)))
    assert abs(plain / ref.rank_me(z) - 1) <= rank_me_tolerance(z)
    # epsilon counts min(n, d) = 12 values, not the Gram's 30.
    assert abs(paper / ref.rank_me(z, epsilon=1e-7) - 1) <= rank_me_tolerance(z)


def test_rank_me_gradient_is_finite():
    # Repeated and zero singular values (a diagonal with a zero, dead columns).
    for z in (np.diag([1.0, 1e-3, 1e-3, 0.0]).astype("float32"), _digits_relu(1.0, 32, 16)):
        for spectrum in ("singular_values", "covariance"):
            g = grad(lambda t, s=spectrum: nc_ops.rank_me(t, spectrum=s), z)
            assert np.all(np.isfinite(g)), spectrum
    g = grad(lambda t: nc_ops.alpha_req(t), _power_law(20, 6, 1.0))
    assert np.all(np.isfinite(g))


def test_rank_me_eager_bad_input_raises():
    with pytest.raises(ValueError, match="features"):
        nc_ops.rank_me(np.array([[1.0, np.nan], [0.0, 1.0]], "float32"))
