"""`keras_nc.metrics` in a custom loop, against keras_nc.ops and the float64 NumPy reference.

The losses: tests/test_losses.py.
"""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import metrics
from keras_nc import ops as nc
from keras_nc import step as step_module
from keras_nc.ops import pairing
from tests.helpers import labelled_batches, to_numpy
from tests.tolerances import (
    entropy_tolerance,
    float32_tolerance,
    information_tolerance,
    nc_tolerance,
)

# The data of `labelled_batches`: C classes in D dimensions.
C, D = 6, 9


@pytest.fixture
def head(rng):
    return rng.normal(size=(C, D)).astype("float32")


def test_one_batch_values_equal_ops(rng, head):
    z, y = labelled_batches(rng, sizes=(30,))[0]
    k_z, k_w = nc.gram(z, center=True), nc.gram(head[y])
    expected = {
        "mir": to_numpy(nc.mir(k_z, k_w)),
        "hdr": to_numpy(nc.hdr(k_z, k_w)),
        "matrix_entropy": to_numpy(nc.matrix_entropy(k_z)),
    }
    kz, kw = ref.gram(z, center=True), ref.gram(head[y])
    bounds = {
        "mir": information_tolerance(kz, kw, "mir"),
        "hdr": information_tolerance(kz, kw, "hdr"),
        "matrix_entropy": entropy_tolerance(kz, size=min(z.shape)),
    }
    for metric in (metrics.MIR(), metrics.HDR(), metrics.MatrixEntropy()):
        metric.update_state(y, features=z, head_weights=head)
        # Two float32 computations (the metric's path and the ops'), each to its bound.
        bound = 2 * bounds[metric.name]
        np.testing.assert_allclose(to_numpy(metric.result()), expected[metric.name], atol=bound)
    # And the reference, in float64.
    np.testing.assert_allclose(expected["mir"], ref.mir(kz, kw), atol=bounds["mir"])
    head_entropy = metrics.MatrixEntropy(of="head", name="head_entropy")
    head_entropy.update_state(y, features=z, head_weights=head)
    k_h = ref.gram(head)
    np.testing.assert_allclose(
        to_numpy(head_entropy.result()), ref.entropy(k_h), atol=entropy_tolerance(k_h)
    )


def test_sample_pairing_averages_batches_by_size(rng, head):
    batches = labelled_batches(rng)
    metric = metrics.MIR(center=False, sample_size=None)  # one estimate per batch
    values, sizes, bounds = [], [], []
    for z, y in batches:
        metric.update_state(y, features=z, head_weights=head)
        values.append(ref.mir(ref.gram(z), ref.gram(head[y])))
        bounds.append(information_tolerance(ref.gram(z), ref.gram(head[y]), "mir"))
        sizes.append(len(y))
    # The weighted mean of the batches' bounds, plus the float32 weighted mean's
    # rounding (a sum of 3 products and a division, values <= 1).
    bound = np.average(bounds, weights=sizes) + float32_tolerance(terms=2 * len(sizes) + 1)
    np.testing.assert_allclose(
        to_numpy(metric.result()), np.average(values, weights=sizes), atol=bound
    )
    metric.reset_state()
    assert float(to_numpy(metric.result())) == 0.0


@pytest.mark.parametrize("ratio", ["mir", "hdr"])
def test_class_pairing_accumulates_like_concatenated_data(ratio, rng, head):
    batches = labelled_batches(rng)
    metric = (metrics.MIR if ratio == "mir" else metrics.HDR)(pairing="class", num_classes=C)
    for z, y in batches:
        metric.update_state(y, features=z, head_weights=head)
    z = np.concatenate([b[0] for b in batches]).astype(np.float64)
    y = np.concatenate([b[1] for b in batches])
    k_m, k_w = ref.class_pairing(z, y, head, C)
    expected = ref.mir(k_m, k_w) if ratio == "mir" else ref.hdr(k_m, k_w)
    # The ratio's bound on the class Grams, plus the class sums' relative rounding
    # (float32 sums of n rows) that the Grams' entries carry.
    bound = information_tolerance(k_m, k_w, ratio) + float32_tolerance(terms=len(z))
    np.testing.assert_allclose(to_numpy(metric.result()), expected, atol=bound)


@pytest.mark.parametrize(
    "cls, key",
    [
        (metrics.NC1, "nc1"),
        (metrics.CDNV, "cdnv"),
        (metrics.ETFError, "etf_error"),
        (metrics.Equinorm, "equinorm"),
        (metrics.SelfDuality, "self_duality"),
    ],
)
def test_nc_measures_accumulate_like_concatenated_data(cls, key, rng, head):
    batches = labelled_batches(rng)
    metric = cls()  # sized on the first update from head_weights
    for z, y in batches:
        metric.update_state(y, features=z, head_weights=head)
    z = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    expected = ref.neural_collapse(z, y, head, C)[key]
    rtol = nc_tolerance(z, y, key)  # the values are O(0.1 .. 1): relative
    np.testing.assert_allclose(to_numpy(metric.result()), expected, rtol=rtol)


def test_ncc_agreement_with_final_means_on_one_batch(rng, head):
    z, y = labelled_batches(rng, sizes=(40,))[0]
    logits = z @ head.T
    metric = metrics.NCCAgreement(num_classes=C, feature_dim=D)
    metric.update_state(y, features=z, head_weights=head, logits=logits)
    stats = ref.neural_collapse(z, y, head, C)
    present = stats["present"]
    dist = ((z[:, None, :] - stats["means"][None]) ** 2).sum(-1)
    nearest = np.asarray(present)[dist.argmin(axis=1)]
    expected = np.mean(nearest == logits.argmax(axis=1))
    # A count over 40 rows divided by 40: one float32 rounding of a value <= 1.
    np.testing.assert_allclose(to_numpy(metric.result()), expected, atol=float32_tolerance())


def test_collapsed_features_give_collapse_values(rng):
    from keras_nc import theory

    c = 5
    means = theory.simplex_etf(c, dim=8, seed=0)
    y = np.repeat(np.arange(c), 4).astype("int32")
    z = (3.0 * means[y] + 1.0).astype("float32")  # collapsed, shifted like ReLU features
    w = means.astype("float32")
    # The head at collapse: rows along the centred means and a bias that removes
    # the shift (b = -W mu_G), so that the classifier's argmax is the label for
    # any orientation of the frame (without the bias, 1 . w_c decides it).
    logits = z @ w.T - w.sum(axis=1)
    values = {}
    for metric in (
        metrics.MIR(),
        metrics.HDR(),
        metrics.MIR(pairing="class", name="mir_class"),
        metrics.NC1(),
        metrics.ETFError(),
        metrics.Equinorm(),
        metrics.SelfDuality(),
        metrics.NCCAgreement(),
    ):
        metric.update_state(y, features=z, head_weights=w, logits=logits)
        values[metric.name] = float(to_numpy(metric.result()))
    # The float64 Grams of the same data are collapsed exactly (to float64
    # round-off): the float32 bounds of the test's own data apply to the closed forms.
    kz, kw = ref.gram(z, center=True), ref.gram(w[y])
    k_m, k_h = ref.class_pairing(z.astype(np.float64), y, w, c)
    mir_star = theory.mir_at_collapse(c)
    assert values["mir"] == pytest.approx(mir_star, abs=information_tolerance(kz, kw, "mir"))
    bound = information_tolerance(k_m, k_h, "mir") + float32_tolerance(terms=len(z))
    assert values["mir_class"] == pytest.approx(mir_star, abs=bound)
    assert values["hdr"] == pytest.approx(0.0, abs=information_tolerance(kz, kw, "hdr"))
    for key in ("nc1", "etf_error", "equinorm", "self_duality"):
        assert values[key] == pytest.approx(0.0, abs=nc_tolerance(z, y, key)), key
    assert values["ncc_agreement"] == 1.0


def test_metric_errors_are_clear(rng, head):
    z, y = labelled_batches(rng, sizes=(10,))[0]
    with pytest.raises(ValueError, match="needs `head_weights`"):
        metrics.MIR().update_state(y, features=z)
    with pytest.raises(ValueError, match="`pairing` must be"):
        metrics.MIR(pairing="batch")
    with pytest.raises(ValueError, match="`of` must be"):
        metrics.MatrixEntropy(of="logits")
    with pytest.raises(ValueError, match="`y_true` must hold integer class indices"):
        metrics.MIR().update_state(np.eye(C + 1)[y], features=z, head_weights=head)


@pytest.mark.parametrize(
    "metric",
    [
        metrics.MIR(pairing="class", num_classes=C, feature_dim=D, center=False),
        metrics.HDR(alpha=2.0),
        metrics.MatrixEntropy(of="head", normalize=True),
        metrics.NC1(num_classes=C, feature_dim=D),
        metrics.NCCAgreement(),
    ],
)
def test_metric_config_round_trip(metric):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is type(metric)
    assert restored.get_config() == metric.get_config()


def test_mir_and_hdr_share_one_step_computation(rng, head, monkeypatch):
    z, y = labelled_batches(rng, sizes=(24,))[0]
    calls = []
    compute = pairing.sample_head_entropies_of

    def counted(*args, **kwargs):
        calls.append(kwargs.get("feature_entropy"))
        return compute(*args, **kwargs)

    monkeypatch.setattr(pairing, "sample_head_entropies_of", counted)
    step = step_module.CollapseStep(y, z, head)
    h_z = step.feature_entropy(True, 1.0)
    first = step.sample_ratios(True, 1.0)
    second = step_module.CollapseStep(y, z, head, cache=step.cache).sample_ratios(True, 1.0)
    step.sample_ratios(True, 1.0)
    assert len(calls) == 1 and calls[0] is h_z  # one computation, reusing H(K_Z)
    np.testing.assert_array_equal(to_numpy(first[0]), to_numpy(second[0]))
    step.sample_ratios(False, 1.0)
    assert len(calls) == 2  # another setting
    shared = {m.name: m for m in (metrics.MIR(), metrics.HDR())}
    alone = {m.name: m for m in (metrics.MIR(), metrics.HDR())}
    kz, kw = ref.gram(z, center=True), ref.gram(head[y])
    for name in shared:
        shared[name].update_state(y, features=z, head_weights=head, step=step)
        alone[name].update_state(y, features=z, head_weights=head)
        # Two float32 computations of one ratio, each to its bound.
        bound = 2 * information_tolerance(kz, kw, name)
        np.testing.assert_allclose(
            to_numpy(shared[name].result()), to_numpy(alone[name].result()), atol=bound
        )
    hdr_bound = information_tolerance(kz, kw, "hdr")
    np.testing.assert_allclose(to_numpy(shared["hdr"].result()), ref.hdr(kz, kw), atol=hdr_bound)


def test_class_statistics_head_is_a_deprecated_alias_of_head_weights(rng, head):
    """`ClassStatistics.head` and `.head_rows` warn and return the new names' values."""
    z, y = labelled_batches(rng, sizes=(12,))[0]
    stats = metrics.ClassStatistics(num_classes=head.shape[0], feature_dim=z.shape[1])
    stats.update_state(y, features=z, head_weights=head)
    np.testing.assert_array_equal(to_numpy(stats.head_weights), head)  # a stored copy
    for old, new in (("head", "head_weights"), ("head_rows", "last_head_weights")):
        with pytest.warns(DeprecationWarning, match=f"ClassStatistics.{new}"):
            value = getattr(stats, old)
        np.testing.assert_array_equal(to_numpy(value), to_numpy(getattr(stats, new)))
