"""CollapseMonitor: exact epoch-end measures, logs, CSV, PNG and TensorBoard output."""

import csv
import os

import keras
import numpy as np
import pytest
import reference as ref
from conftest import to_numpy

import keras_nc
from keras_nc.callbacks import MEASURES, CollapseMonitor


def _model_and_data():
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    y = np.repeat(np.arange(4), 30).astype("int32")
    x = (rng.normal(size=(4, 12))[y] + 0.7 * rng.normal(size=(120, 12))).astype("float32")
    inputs = keras.Input((12,))
    backbone = keras.Model(inputs, keras.layers.Dense(8, activation="relu")(inputs))
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=4)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model, x, y


def test_monitor_logs_equal_reference_and_files_are_written(tmp_path):
    model, x, y = _model_and_data()
    out = str(tmp_path / "nc")
    monitor = CollapseMonitor(x[:80], y[:80], every=2, output_dir=out, tensorboard=True)
    history = model.fit(x, y, epochs=5, batch_size=40, callbacks=[monitor], verbose=0).history
    # Evaluated after the first epoch, every second one and the last one.
    assert [row["epoch"] for row in monitor.history] == [1, 2, 4, 5]
    for key in MEASURES:
        assert f"collapse_{key}" in history
    # The last evaluation against the float64 reference on the same weights.
    z = to_numpy(model.extract_features(x[:80]))
    head = to_numpy(model.head.kernel).T
    k_m, k_w = ref.class_pairing(z, y[:80], head, 4)
    nc = ref.neural_collapse(z, y[:80], head, 4)
    last = monitor.history[-1]
    np.testing.assert_allclose(last["mir"], ref.mir(k_m, k_w), atol=2e-4)
    np.testing.assert_allclose(last["hdr"], ref.hdr(k_m, k_w), atol=2e-4)
    np.testing.assert_allclose(last["nc1"], nc["nc1"], rtol=2e-3)
    np.testing.assert_allclose(last["etf_error"], nc["etf_error"], rtol=1e-4)
    np.testing.assert_allclose(
        last["feature_entropy"], ref.entropy(ref.gram(z, center=True)), rtol=1e-4
    )
    assert history["collapse_mir"][-1] == pytest.approx(last["mir"])
    with open(os.path.join(out, "collapse.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 4, 5]
    assert float(rows[-1]["nc1"]) == pytest.approx(last["nc1"], rel=1e-6)
    png = os.path.join(out, "collapse.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert any(name.startswith("events") for name in os.listdir(os.path.join(out, "tensorboard")))


def test_monitor_accepts_a_dataset_of_batches():
    model, x, y = _model_and_data()
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)]
    from_batches = CollapseMonitor(batches)
    from_arrays = CollapseMonitor(x[:96], y[:96], batch_size=50)
    for monitor in (from_batches, from_arrays):
        monitor.set_model(model)
    a, b = from_batches.evaluate(0), from_arrays.evaluate(0)
    for key in MEASURES:
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_monitor_argument_errors():
    with pytest.raises(ValueError, match="`every` must be a positive integer"):
        CollapseMonitor(np.zeros((2, 2)), np.zeros(2), every=0)
    with pytest.raises(ValueError, match="`tensorboard=True` needs an `output_dir`"):
        CollapseMonitor(np.zeros((2, 2)), np.zeros(2), tensorboard=True)
