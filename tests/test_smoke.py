"""The smoke subset: what every Keras release keras-nc declares must run.

`make test-oldest-keras` runs this file (with `tests/compat/`, the Keras
private hooks, and `tests/test_version.py`) on the oldest Keras in
`pyproject.toml`'s range (`requirements/oldest.txt`); the main suite runs it on
the newest tested. A `CollapseClassifier` with the sample (MIR, HDR) and class
(ClassMIR, NC1) metrics and the CMA loss fits with a `CollapseMonitor`,
evaluates, and saves and loads in safe mode. The monitor's epoch-end measures
are checked against the float64 NumPy references of `tests/reference.py`.
"""

import keras
import numpy as np
import pytest

import keras_nc
import tests.reference as ref
import tests.tolerances as tol
from keras_nc.callbacks import CollapseMonitor
from keras_nc.losses import CMALoss
from keras_nc.metrics import HDR, MIR, NC1, ClassMIR
from tests.helpers import to_numpy

NUM_CLASSES = 4
# The logits: two Dense layers of fan-in at most 12.
LOGIT_TERMS = 2 * 12


def _data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(NUM_CLASSES), 24).astype("int32")
    x = (rng.normal(size=(NUM_CLASSES, 12))[y] + 0.6 * rng.normal(size=(96, 12))).astype("float32")
    return x, y


def _head_weights(model):
    """The head weights `(C, d)` as NumPy (`head_weights`, or the head's kernel transposed)."""
    if isinstance(getattr(type(model), "head_weights", None), property):
        return to_numpy(model.head_weights)
    return to_numpy(model.head.kernel).T


@pytest.fixture(scope="module")
def fitted():
    """A fitted model, its backbone, data and the monitor's history."""
    keras.utils.set_random_seed(0)
    x, y = _data()
    inputs = keras.Input((12,))
    backbone = keras.Model(inputs, keras.layers.Dense(8, activation="relu")(inputs))
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=NUM_CLASSES)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(0.5)],
        metrics=["accuracy", MIR(), HDR(), ClassMIR(), NC1()],
    )
    monitor = CollapseMonitor(x, y, prefix="smoke_")
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[monitor])
    return model, backbone, x, y, history.history


def test_fit_logs_every_metric_and_loss_finite(fitted):
    *_, history = fitted
    for key in ("loss", "cma_loss", "mir", "hdr", "mir_class", "nc1", "smoke_nc1"):
        assert key in history, f"{key} missing from {sorted(history)}"
        assert np.all(np.isfinite(history[key])), (key, history[key])
    for key in ("mir", "hdr", "mir_class"):
        assert all(0.0 <= value <= 1.0 for value in history[key]), (key, history[key])


def test_monitor_measures_equal_the_float64_reference(fitted):
    model, backbone, x, y, history = fitted
    z = np.asarray(to_numpy(backbone(x)), np.float64)
    head = np.asarray(_head_weights(model), np.float64)
    k_m, k_w = ref.class_pairing(z, y, head, NUM_CLASSES)
    grams = (k_m, k_w, k_m * k_w)
    entropies = [ref.entropy(k) for k in grams]
    bounds = [tol.entropy_tolerance(k) for k in grams]
    mir_tol = tol.ratio_tolerance(*entropies, *bounds, "mir")
    np.testing.assert_allclose(history["smoke_mir_class"][-1], ref.mir(k_m, k_w), atol=mir_tol)
    nc1 = ref.neural_collapse(z, y, head, NUM_CLASSES)["nc1"]
    np.testing.assert_allclose(history["smoke_nc1"][-1], nc1, rtol=tol.NC_RTOL)


def test_save_and_load_in_safe_mode_keep_predictions_and_metrics(fitted, tmp_path):
    model, _, x, y, _ = fitted
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, keras_nc.models.CollapseClassifier)
    logits = model.predict(x, verbose=0)
    # Two float32 evaluations of the same weights: twice the round-off of the logits.
    atol = 2 * tol.float32_tolerance(terms=LOGIT_TERMS, scale=np.abs(logits).max())
    np.testing.assert_allclose(restored.predict(x, verbose=0), logits, atol=atol)
    np.testing.assert_array_equal(_head_weights(restored), _head_weights(model))
    before = model.evaluate(x, y, batch_size=96, verbose=0, return_dict=True)
    after = restored.evaluate(x, y, batch_size=96, verbose=0, return_dict=True)
    assert set(before) == set(after)
    bounds = _bounds(model, x, y)
    for key in before:
        # Two float32 evaluations, each within its float64 bound: within twice.
        atol = 2 * bounds[key]
        # tol: rtol=0, the bound is the absolute one above
        np.testing.assert_allclose(after[key], before[key], rtol=0, atol=atol, err_msg=key)


def _bounds(model, x, y):
    """Float32 bounds of the evaluation's values on one batch, from the float64 reference.

    Cross-entropy: a log-sum-exp of C terms and a mean of n; CMA (weight 0.5): each class
    group's entropy bound (a matrix of n + C rows) over the log of its size; accuracy: a
    count of the n rows; NC1: the 1% rule.
    """
    z = np.asarray(to_numpy(model.extract_features(x)), np.float64)
    head = np.asarray(_head_weights(model), np.float64)
    cma = 0.5 * tol.cma_tolerance(z, head, y)
    k_z, k_w = ref.gram(z, center=True), ref.gram(head[y])
    k_m, k_h = ref.class_pairing(z, y, head, NUM_CLASSES)
    return {
        "loss": tol.cross_entropy_tolerance(z @ head.T + to_numpy(model.head.bias), y) + cma,
        "cma_loss": cma,
        "accuracy": 0.5 / len(y),
        "mir": tol.information_tolerance(k_z, k_w),
        "hdr": tol.information_tolerance(k_z, k_w, "hdr"),
        "mir_class": tol.information_tolerance(k_m, k_h),
        "nc1": tol.NC_RTOL * ref.neural_collapse(z, y, head, NUM_CLASSES)["nc1"],
    }
