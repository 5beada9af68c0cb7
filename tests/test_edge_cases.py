"""Edge cases of ordinary training: extreme feature scales, metric names, ragged batches, heads.

Scale: every measure is scale-invariant, so features multiplied by 1e-30 ... 1e30
(finite in float32) must give the values of the unscaled features. Multiplying
by a power of ten rounds every entry (relative `eps = 6e-8`); on this
well-conditioned data the measures move by a few `eps` at first order, so
`rtol = 1e-5` (plus `atol = 1e-6` for values near 0) is the float32 bound with
room, not a value read off one machine.
"""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import losses, metrics
from keras_nc import ops as nc
from keras_nc.callbacks import TerminateOnNonFiniteWeights
from keras_nc.models import CollapseClassifier
from tests.helpers import compiled, to_numpy
from tests.tolerances import entropy_tolerance, ratio_tolerance

C, D = 5, 8
SCALES = [1e-30, 1e-20, 1e20, 1e30]
RTOL, ATOL = 1e-5, 1e-6


def _data(rng, n=40):
    centres = 3.0 * rng.normal(size=(C, D))
    y = np.arange(n) % C
    z = centres[y] + rng.normal(size=(n, D))
    head = rng.normal(size=(C, D))
    return z.astype("float32"), y.astype("int32"), head.astype("float32")


def _op_values(z, y, head):
    """Every public op that reads features, as a flat dict of scalars."""
    stats = nc.class_statistics(z, y, C, exponent="auto")
    means, _, present = nc.class_means(stats["counts"], stats["sums"])
    logits = keras.ops.matmul(keras.ops.convert_to_tensor(np.asarray(z) / np.abs(z).max()), head.T)
    mir, hdr = nc.sample_head_ratios(z, y, head)
    class_mir, class_hdr = nc.class_pairing_ratios(stats["counts"], stats["sums"], head)
    k_z, k_w = nc.sample_head_grams(z, y, head)
    values = {
        "gram_entropy": nc.matrix_entropy(nc.gram(z, center=True)),
        "feature_entropy": nc.feature_entropy(z, center=True),
        "renyi2": nc.feature_entropy(z, center=True, alpha=2.0),
        "mir": mir,
        "hdr": hdr,
        "mir_grams": nc.mir(k_z, k_w),
        "class_mir": class_mir,
        "class_hdr": class_hdr,
        "cma": nc.cma_entropy(z, head, y),
        "ncc": nc.ncc_agreement(z, logits, means, present, means_exponent=stats["exponent"]),
        **nc.neural_collapse_measures(stats, head),
    }
    return {key: float(to_numpy(value)) for key, value in values.items()}


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_every_op_is_scale_invariant(scale, mode, rng):
    z, y, head = _data(rng)
    want = _op_values(z, y, head)

    def values(features):
        return _op_values(features, y, head)

    if mode == "compiled":
        # The logits' scaling above reads NumPy: compile the rest, feed tensors.
        def run(features):
            stats = nc.class_statistics(features, y, C, exponent="auto")
            mir, hdr = nc.sample_head_ratios(features, y, head)
            measures = nc.neural_collapse_measures(stats, head)
            return {
                "feature_entropy": nc.feature_entropy(features, center=True),
                "mir": mir,
                "hdr": hdr,
                "class_mir": nc.class_pairing_ratios(stats["counts"], stats["sums"], head)[0],
                "cma": nc.cma_entropy(features, head, y),
                **measures,
            }

        got = {
            k: float(to_numpy(v)) for k, v in compiled(run)((z * scale).astype("float32")).items()
        }
    else:
        got = values((z * scale).astype("float32"))
    bounds = _float32_bounds(z, y, head)
    for key, value in got.items():
        assert np.isfinite(value), key
        # Scaled features round differently, and a compiled graph may take
        # another exact path: both sides carry the float32 error of the value.
        bound = max(RTOL * abs(want[key]) + ATOL, 2 * bounds.get(key, 0.0))
        assert value == pytest.approx(want[key], abs=bound), key


def _float32_bounds(z, y, head):
    """Float32 error bounds (`tests/tolerances.py`) of the entropy-based values, from float64."""
    k_z, k_w = ref.gram(z, center=True), ref.gram(head[y])
    k_m, k_h = ref.class_pairing(z, y, head, C)
    bounds = {}
    for prefix, (k1, k2) in (("", (k_z, k_w)), ("class_", (k_m, k_h))):
        h = [ref.entropy(k1), ref.entropy(k2), ref.entropy(k1 * k2)]
        e = [entropy_tolerance(k1), entropy_tolerance(k2), entropy_tolerance(k1 * k2)]
        bounds[prefix + "mir"] = ratio_tolerance(*h, *e, "mir")
        bounds[prefix + "hdr"] = ratio_tolerance(*h, *e, "hdr")
    bounds["mir_grams"] = bounds["mir"]
    bounds["feature_entropy"] = bounds["gram_entropy"] = entropy_tolerance(k_z)
    return bounds


def _identity_model():
    inputs = keras.Input((D,))
    return CollapseClassifier(keras.Model(inputs, keras.layers.Identity()(inputs)), C)


def _every_metric():
    return [
        metrics.MIR(),
        metrics.HDR(),
        metrics.MIR(pairing="class"),
        metrics.HDR(pairing="class"),
        metrics.MatrixEntropy(),
        metrics.MatrixEntropy(normalize=True, name="matrix_entropy_normalized"),
        metrics.MatrixEntropy(of="head"),
        metrics.NC1(),
        metrics.CDNV(),
        metrics.ETFError(),
        metrics.Equinorm(),
        metrics.SelfDuality(),
        metrics.NCCAgreement(),
    ]


def test_metrics_in_evaluate_are_scale_invariant(rng):
    z, y, head = _data(rng, n=60)
    model = _identity_model()
    model.head.kernel.assign(head.T)
    model.compile(loss="sparse_categorical_crossentropy", metrics=_every_metric())
    want = model.evaluate(z, y, batch_size=20, verbose=0, return_dict=True)
    keys = [m.name for m in _every_metric()]
    for scale in SCALES:
        got = model.evaluate((z * scale).astype("float32"), y, batch_size=20, verbose=0,
                             return_dict=True)  # fmt: skip
        for key in keys:
            assert np.isfinite(got[key]), (scale, key)
            assert got[key] == pytest.approx(want[key], rel=RTOL, abs=ATOL), (scale, key)


def test_collapse_losses_are_scale_invariant(rng):
    z, y, head = _data(rng)
    for loss in (losses.CMALoss(1.0), losses.InformationRegularizer(0.5, 0.5)):
        want = float(to_numpy(loss(y, features=z, head_weights=head)))

        def value(features, loss=loss):
            return loss(y, features=features, head_weights=head)

        for scale in SCALES:
            features = (z * scale).astype("float32")
            for call in (value, compiled(value)):
                got = float(to_numpy(call(features)))
                assert got == pytest.approx(want, rel=RTOL, abs=ATOL), (type(loss).__name__, scale)


def test_default_names_keep_both_pairings(rng):
    z, y, _ = _data(rng)
    model = _identity_model()
    model.compile(
        loss="sparse_categorical_crossentropy",
        metrics=[metrics.MIR(), metrics.MIR(pairing="class"), metrics.HDR(),
                 metrics.HDR(pairing="class"), metrics.MatrixEntropy(),
                 metrics.MatrixEntropy(of="head")],
    )  # fmt: skip
    result = model.evaluate(z, y, verbose=0, return_dict=True)
    history = model.fit(z, y, batch_size=20, epochs=1, verbose=0)
    for key in ("mir", "mir_class", "hdr", "hdr_class", "matrix_entropy", "head_entropy"):
        assert key in result, key
        assert key in history.history, key
    assert result["mir"] != result["mir_class"]


def test_duplicate_metric_names_are_refused():
    model = _identity_model()
    with pytest.raises(ValueError, match=r"several metrics named \['mir'\]"):
        model.compile(metrics=[metrics.MIR(), metrics.MIR(center=False)])


@pytest.mark.parametrize("batch_size", [256, 1])
def test_ragged_last_batch_of_one_in_fit_and_evaluate(batch_size, rng):
    n = 257 if batch_size == 256 else 12
    z, y, head = _data(rng, n=n)
    model = _identity_model()
    model.head.kernel.assign(head.T)
    model.compile(
        optimizer="sgd",
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              losses.CMALoss(0.5), losses.InformationRegularizer(0.5, 0.5)],
        metrics=_every_metric(),
    )  # fmt: skip
    result = model.evaluate(z, y, batch_size=batch_size, verbose=0, return_dict=True)
    for key, value in result.items():
        assert np.isfinite(value), key
    # The per-sample measures are means over groups of `sample_size` = 128
    # rows gathered across batches, whatever the batch size: two groups of the
    # 257 rows (the last row is left over); 12 rows fill no group, so the
    # value is that of the 12 rows (batches of one sample included).
    groups = [slice(0, 128), slice(128, 256)] if batch_size == 256 else [slice(0, n)]
    expected_entropy = np.mean(
        [float(to_numpy(nc.feature_entropy(z[g], center=True, normalize=True))) for g in groups]
    )
    expected_mir = np.mean([float(to_numpy(nc.sample_head_ratios(z[g], y[g], head)[0]))
                            for g in groups])  # fmt: skip
    assert result["matrix_entropy_normalized"] == pytest.approx(expected_entropy, rel=1e-5)
    assert result["mir"] == pytest.approx(expected_mir, rel=1e-5)
    history = model.fit(z, y, batch_size=batch_size, epochs=1, verbose=0)
    for key, values in history.history.items():
        assert np.all(np.isfinite(values)), key


def test_a_head_with_an_activation_is_refused():
    inputs = keras.Input((D,))
    backbone = keras.Model(inputs, keras.layers.Dense(D)(inputs))
    with pytest.raises(ValueError, match="`head` must output logits"):
        CollapseClassifier(backbone, C, head=keras.layers.Dense(C, activation="softmax"))


def test_terminate_on_non_finite_weights(rng):
    z, y, _ = _data(rng)
    model = _identity_model()
    model.compile(optimizer="sgd")  # (collapse metrics would raise on NaN head rows on torch)
    kernel = to_numpy(model.head.kernel).copy()
    kernel[0, 0] = np.nan
    model.head.kernel.assign(kernel)
    stopper = TerminateOnNonFiniteWeights()
    history = model.fit(z, y, batch_size=8, epochs=3, verbose=0, callbacks=[stopper])
    assert len(history.history["loss"]) == 1
    assert stopper.stopped_on is not None and "head" in stopper.stopped_on
    with pytest.raises(ValueError, match="every_n_batches"):
        TerminateOnNonFiniteWeights(every_n_batches=0)


def test_terminate_on_non_finite_weights_leaves_a_finite_run_alone(rng):
    z, y, _ = _data(rng)
    model = _identity_model()
    model.compile(optimizer="sgd")
    stopper = TerminateOnNonFiniteWeights(every_n_batches=2)
    history = model.fit(z, y, batch_size=8, epochs=2, verbose=0, callbacks=[stopper])
    assert len(history.history["loss"]) == 2 and stopper.stopped_on is None
