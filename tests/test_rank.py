"""RankMe and alpha-ReQ (`keras_nc.ops.rank`) against float64 NumPy references, and `RankMe`.

The references are written from the definitions: the singular values of the
full `(n, d)` matrix from `numpy.linalg.svd` (RankMe), the eigenvalues of the
`d x d` covariance from `numpy.linalg.eigvalsh` and `numpy.polyfit` (alpha-ReQ),
with NumPy's `matrix_rank` tolerance for round-off.
"""

import keras
import numpy as np
import pytest
from conftest import compiled, float64_supported, to_numpy

import keras_nc
from keras_nc import ops as nc_ops


def ref_rank_me(z, center=False):
    z = np.asarray(z, np.float64)
    if center:
        z = z - z.mean(axis=0)
    s = np.linalg.svd(z, compute_uv=False)
    if s.size == 0 or s.max() == 0:
        return 1.0
    s = s[s > np.sqrt(max(z.shape) * np.finfo(np.float64).eps) * s.max()]
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def ref_alpha_req(z, fit_range=None):
    z = np.asarray(z, np.float64)
    z = z - z.mean(axis=0)
    lam = np.sort(np.linalg.eigvalsh(z.T @ z / len(z)))[::-1]
    lam = lam[lam > max(z.shape) * np.finfo(np.float64).eps * max(lam.max(), 0.0)]
    ranks = np.arange(1, lam.size + 1)
    if fit_range is not None:
        keep = (ranks >= fit_range[0]) & (ranks <= fit_range[1])
        lam, ranks = lam[keep], ranks[keep]
    if lam.size < 2:
        return 0.0
    return float(-np.polyfit(np.log(ranks), np.log(lam), 1)[0])


def _power_law(n, d, decay, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.arange(1, d + 1) ** (-decay / 2)


@pytest.mark.parametrize("shape", [(40, 12), (12, 40)])  # the d x d side, then the n x n side
@pytest.mark.parametrize("center", [False, True])
def test_rank_me_matches_reference(shape, center):
    z = _power_law(*shape, decay=1.5) + 0.3
    expected = ref_rank_me(z, center)
    value = float(to_numpy(nc_ops.rank_me(z.astype("float32"), center=center)))
    # float32: eigenvalues to ~1e-6 relative; RankMe is a smooth function of them.
    assert value == pytest.approx(expected, rel=1e-4)
    if float64_supported():
        assert float(to_numpy(nc_ops.rank_me(z, center=center))) == pytest.approx(expected, 1e-10)


def test_rank_me_of_known_spectra():
    # k equal singular values give exactly k; rank-deficient input counts its rank.
    assert float(to_numpy(nc_ops.rank_me(np.eye(5, 8)))) == pytest.approx(5.0, rel=1e-6)
    low_rank = np.random.default_rng(0).normal(size=(30, 3)) @ np.random.default_rng(1).normal(
        size=(3, 20)
    )
    value = float(to_numpy(nc_ops.rank_me(low_rank.astype("float32"))))
    assert value == pytest.approx(ref_rank_me(low_rank), rel=1e-4)
    assert 1.0 <= value <= 3.0
    # Zero features: 1 by definition (the entropy of an empty spectrum is 0); finite.
    assert float(to_numpy(nc_ops.rank_me(np.zeros((6, 4), "float32")))) == 1.0
    # Scale invariance.
    assert float(to_numpy(nc_ops.rank_me(1e20 * low_rank))) == pytest.approx(value, rel=1e-4)


@pytest.mark.parametrize("decay", [0.0, 1.0, 2.0])
def test_alpha_req_matches_reference(decay):
    z = _power_law(400, 24, decay)
    expected = ref_alpha_req(z)
    value = float(to_numpy(nc_ops.alpha_req(z.astype("float32"))))
    assert value == pytest.approx(expected, abs=2e-3)
    assert value == pytest.approx(decay, abs=0.35)  # the sample spectrum follows the law
    ranged = float(to_numpy(nc_ops.alpha_req(z.astype("float32"), fit_range=(2, 10))))
    assert ranged == pytest.approx(ref_alpha_req(z, (2, 10)), abs=2e-3)


def test_alpha_req_exact_spectrum_and_degenerate_input():
    spectrum = np.arange(1, 9, dtype="float64") ** -1.7
    value = float(to_numpy(nc_ops.alpha_req_of_gram(np.diag(spectrum).astype("float32"))))
    assert value == pytest.approx(1.7, rel=1e-4)
    # Rank <= 1 and zero features: 0 by definition, finite.
    assert float(to_numpy(nc_ops.alpha_req(np.zeros((5, 3), "float32")))) == 0.0
    rank_one = np.outer(np.arange(1.0, 7.0), np.ones(4)).astype("float32")
    assert float(to_numpy(nc_ops.alpha_req(rank_one, center=False))) == 0.0
    # Rank-deficient: the round-off eigenvalues are left out of the fit.
    low = (np.random.default_rng(0).normal(size=(50, 4)) @ np.eye(4, 16)).astype("float32")
    assert float(to_numpy(nc_ops.alpha_req(low))) == pytest.approx(ref_alpha_req(low), abs=2e-3)
    with pytest.raises(ValueError, match="fit_range"):
        nc_ops.alpha_req(low, fit_range=(3, 2))


def test_rank_measures_compile_with_static_shapes():
    z = _power_law(32, 10, 1.0).astype("float32")
    fn = compiled(lambda t: (nc_ops.rank_me(t), nc_ops.alpha_req(t)))
    rank, alpha = (float(to_numpy(v)) for v in fn(keras.ops.convert_to_tensor(z)))
    assert rank == pytest.approx(ref_rank_me(z), rel=1e-4)
    assert alpha == pytest.approx(ref_alpha_req(z), abs=2e-3)


def test_rank_me_eager_bad_input_raises():
    with pytest.raises(ValueError, match="features"):
        nc_ops.rank_me(np.array([[1.0, np.nan], [0.0, 1.0]], "float32"))


def test_rank_me_metric_in_a_collapse_classifier(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)
    inputs = keras.Input((6,))
    backbone = keras.Model(inputs, keras.layers.Dense(5)(inputs))
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=3)
    model.compile(optimizer="sgd", loss="auto", metrics=[keras_nc.metrics.RankMe()])
    result = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    z = to_numpy(model.extract_features(x))
    expected = np.mean([ref_rank_me(z[:32]), ref_rank_me(z[32:])])
    assert result["rank_me"] == pytest.approx(expected, rel=1e-4)
    metric = keras_nc.metrics.RankMe(center=True, name="r")
    restored = keras_nc.metrics.RankMe.from_config(metric.get_config())
    assert (restored.center, restored.name) == (True, "r")
