"""CollapseMonitor: exact epoch-end measures in `logs`, written by Keras' own callbacks.

Also: the inputs it accepts (one-hot labels, `(x, y, sample_weight)` batches,
plain functional models), the errors it raises when `fit` starts (not after an
epoch), epoch numbers across `fit` calls.
"""

import csv
import os

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc.callbacks import MEASURES, CollapseMonitor
from tests.helpers import small_classification_data, small_classifier_and_data, to_numpy
from tests.tolerances import EPS32, NC_RTOL, entropy_tolerance, information_tolerance

NC_KEYS = ("nc1", "cdnv", "etf_error", "equinorm", "self_duality")
# A float32 value logged by Keras, written by CSVLogger as its shortest text and read
# back as float64: half a float32 unit in the last place.
CSV_RTOL = EPS32


def _plain_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12,))
    features = keras.layers.Dense(8, activation="relu", name="features")(inputs)
    logits = keras.layers.Dense(4, name="logits")(keras.layers.Dropout(0.0)(features))
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _reference(z, y, head):
    k_m, k_w = ref.class_pairing(z, y, head, 4)
    nc = ref.neural_collapse(z, y, head, 4)
    k_z = ref.gram(z, center=True)
    return {
        "mir": ref.mir(k_m, k_w),
        "hdr": ref.hdr(k_m, k_w),
        "matrix_entropy": ref.entropy(k_z),
        # The float32 bounds of the measures, from the float64 reference Grams.
        "tol": {
            "mir_class": information_tolerance(k_m, k_w, "mir"),
            "hdr_class": information_tolerance(k_m, k_w, "hdr"),
            "matrix_entropy": entropy_tolerance(k_z),
            "head_entropy": entropy_tolerance(ref.gram(head)),
            # Agreements are counts of the n rows: the same count, or not.
            "ncc_agreement": 0.5 / len(z),
        },
        **nc,
    }


def _assert_matches_reference(row, expected, z):
    tol = expected["tol"]
    np.testing.assert_allclose(row["mir_class"], expected["mir"], atol=tol["mir_class"])
    np.testing.assert_allclose(row["hdr_class"], expected["hdr"], atol=tol["hdr_class"])
    np.testing.assert_allclose(row["nc1"], expected["nc1"], rtol=NC_RTOL)
    np.testing.assert_allclose(row["etf_error"], expected["etf_error"], rtol=NC_RTOL)
    np.testing.assert_allclose(
        row["matrix_entropy"], expected["matrix_entropy"], atol=tol["matrix_entropy"]
    )


def _assert_same_report(row, other, expected):
    """Two float32 reports of one set of features, each within its float64 bound: within twice."""
    for key in MEASURES:
        if key in NC_KEYS:
            assert other[key] == pytest.approx(row[key], rel=2 * NC_RTOL), key
        else:
            assert other[key] == pytest.approx(row[key], abs=2 * expected["tol"][key]), key


def _tensorboard_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir)
    events.Reload()
    return set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])


def test_values_go_to_logs_and_keras_writers_write_them(tmp_path):
    pytest.importorskip("tensorboard")
    model, x, y = small_classifier_and_data()
    monitor = CollapseMonitor(x[:80], y[:80], every=2)
    # A held-out set named as Keras names validation values.
    held_out = CollapseMonitor(x[80:], y[80:], every=5, prefix="val_collapse_")
    log = str(tmp_path / "log.csv")
    board = str(tmp_path / "tb")
    writers = [keras.callbacks.CSVLogger(log), keras.callbacks.TensorBoard(board)]
    callbacks = [monitor, held_out, *writers]
    history = model.fit(x, y, epochs=5, batch_size=40, callbacks=callbacks, verbose=0).history
    # Evaluated after the first epoch, every second one and the last one.
    assert [row["epoch"] for row in monitor.history] == [1, 2, 4, 5]
    for key in MEASURES:
        assert len(history[f"collapse_{key}"]) == 4, key
    # The last evaluation against the float64 reference on the same weights.
    z = to_numpy(model.extract_features(x[:80]))
    last = monitor.history[-1]
    _assert_matches_reference(last, _reference(z, y[:80], to_numpy(model.head.kernel).T), z)
    assert history["collapse_mir_class"][-1] == pytest.approx(last["mir_class"])
    # CSVLogger (after the monitor) saw the same logs: one row per epoch, NA when not evaluated.
    with open(log) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    assert [r["collapse_nc1"] != "NA" for r in rows] == [True, True, False, True, True]
    assert float(rows[-1]["collapse_nc1"]) == pytest.approx(last["nc1"], rel=CSV_RTOL)
    assert float(rows[-1]["loss"]) == pytest.approx(history["loss"][-1], rel=CSV_RTOL)
    # TensorBoard (after the monitor) wrote them as training scalars.
    tags = _tensorboard_tags(os.path.join(board, "train"))
    assert {"epoch_loss", "epoch_collapse_mir_class", "epoch_collapse_ncc_agreement"} <= tags
    # The val_ prefix: in History under its name, in TensorBoard's validation run.
    assert history["val_collapse_mir_class"] == [row["mir_class"] for row in held_out.history]
    assert [row["epoch"] for row in held_out.history] == [1, 5]
    assert "epoch_collapse_mir_class" in _tensorboard_tags(os.path.join(board, "validation"))


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return 3

    def __getitem__(self, index):
        rows = slice(32 * index, 32 * index + 32)
        return self.x[rows], self.y[rows]


def test_datasets_one_hot_labels_and_sample_weights_give_the_same_report():
    model, x, y = small_classifier_and_data()
    one_hot = np.eye(4, dtype="float32")[y[:96]]
    weights = np.ones(96, "float32")
    monitors = [
        CollapseMonitor(x[:96], y[:96], batch_size=50),
        CollapseMonitor(x[:96], y[:96, None], batch_size=50),  # (n, 1)
        CollapseMonitor(x[:96], one_hot),  # one-hot y
        CollapseMonitor([(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)]),
        CollapseMonitor(  # (x, y, sample_weight) batches with one-hot labels
            [(x[i : i + 32], one_hot[i : i + 32], weights[i : i + 32]) for i in range(0, 96, 32)]
        ),
        CollapseMonitor(_Batches(x[:96], one_hot)),  # a keras.utils.PyDataset
    ]
    tf = pytest.importorskip("tensorflow")
    monitors.append(CollapseMonitor(tf.data.Dataset.from_tensor_slices((x[:96], y[:96])).batch(40)))
    rows = []
    for monitor in monitors:
        monitor.set_model(model)
        monitor.on_train_begin()
        rows.append(monitor.evaluate(0))
    z = to_numpy(model.extract_features(x[:96]))
    expected = _reference(z, y[:96], to_numpy(model.head.kernel).T)
    _assert_matches_reference(rows[0], expected, z)
    for row in rows[1:]:
        _assert_same_report(rows[0], row, expected)


def test_one_hot_dataset_with_sample_weights_in_fit():
    model, x, y = small_classifier_and_data()
    one_hot = np.eye(4, dtype="float32")[y]
    batches = [(x[i : i + 40], one_hot[i : i + 40], np.ones(40, "float32")) for i in (0, 40, 80)]
    monitor = CollapseMonitor(batches)
    history = model.fit(x, y, epochs=1, batch_size=40, callbacks=[monitor], verbose=0)
    assert np.isfinite(history.history["collapse_nc1"][0])


def test_plain_functional_model_is_split_at_its_dense_head():
    model = _plain_model()
    x, y = small_classification_data()
    monitor = CollapseMonitor(x, y)
    named = CollapseMonitor(x, y, features_layer="features", head_layer="logits")
    history = model.fit(x, y, epochs=1, batch_size=40, callbacks=[monitor, named], verbose=0)
    z = to_numpy(keras.Model(model.inputs[0], model.get_layer("features").output)(x))
    head = to_numpy(model.get_layer("logits").kernel).T
    expected = _reference(z, y, head)
    _assert_matches_reference(monitor.history[0], expected, z)
    _assert_same_report(monitor.history[0], named.history[0], expected)
    assert history.history["collapse_nc1"] == [monitor.history[0]["nc1"]]


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(4)

    def call(self, x):
        return self.dense(x)


def _fit_raises(model, monitor, match):
    """`fit` raises `match` before a single training step."""
    x, y = small_classification_data()
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, epochs=1, batch_size=40, callbacks=[monitor], verbose=0)
    assert int(to_numpy(model.optimizer.iterations)) == 0


def test_unusable_model_or_data_fail_when_fit_starts():
    x, y = small_classification_data()
    model = _Subclassed()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    _fit_raises(model, CollapseMonitor(x, y), "needs a keras_nc.models.CollapseClassifier")
    softmax = keras.Sequential([keras.Input((12,)), keras.layers.Dense(4, activation="softmax")])
    softmax.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    _fit_raises(softmax, CollapseMonitor(x, y), "CollapseClassifier.*softmax")
    _fit_raises(_plain_model(), CollapseMonitor(x, y, head_layer="nope"), "nope")
    model, x, y = small_classifier_and_data()
    _fit_raises(model, CollapseMonitor(x, y + 1), r"labels must be in \[0, 4\).*1 to 4")
    _fit_raises(model, CollapseMonitor([(x,)]), r"`\(inputs, labels\)`.*tuple of length 1")
    _fit_raises(model, CollapseMonitor([(x[:5], y[:4])]), "5 inputs and 4 labels")
    _fit_raises(model, CollapseMonitor([]), "holds no batch")
    _fit_raises(model, CollapseMonitor(x, y, head_layer="head"), "for a plain functional model")


def test_argument_errors_at_construction():
    x, y = np.zeros((4, 2), "float32"), np.zeros(4)
    with pytest.raises(ValueError, match="`every` must be a positive integer"):
        CollapseMonitor(x, y, every=0)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        CollapseMonitor(x, y, batch_size=True)
    with pytest.raises(ValueError, match="same number of samples; received \\[4\\] inputs and 3"):
        CollapseMonitor(x, y[:3])
    with pytest.raises(ValueError, match="`y` is required when `x` is an array"):
        CollapseMonitor(x)
    with pytest.raises(ValueError, match="would be exhausted after the first evaluation"):
        CollapseMonitor(iter([(x, y)]))
    with pytest.raises(ValueError, match="must hold integer class labels"):
        CollapseMonitor(x, y + 0.5)
    with pytest.raises(ValueError, match=r"received shape \(4, 1, 1\)"):
        CollapseMonitor(x, y.reshape(4, 1, 1))
    with pytest.raises(TypeError, match=r"no longer takes `output_dir`, `tensorboard`.*CSVLogger"):
        CollapseMonitor(x, y, output_dir="out", tensorboard=True)


def test_epoch_numbers_continue_across_fits(tmp_path):
    model, x, y = small_classifier_and_data()
    monitor = CollapseMonitor(x, y, every=3)
    log = str(tmp_path / "log.csv")

    def fit(**kwargs):
        callbacks = [monitor, keras.callbacks.CSVLogger(log, append=True)]
        model.fit(x, y, batch_size=40, callbacks=callbacks, verbose=0, **kwargs)

    fit(epochs=2)
    fit(epochs=4, initial_epoch=2)  # Keras' epoch numbers continue: 3 and 4
    assert [row["epoch"] for row in monitor.history] == [1, 2, 3, 4]
    with open(log) as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == [0, 1, 2, 3]
    fit(epochs=3)  # restarts at 0: the monitor continues with 5, 6 (every 3rd) and 7
    assert [row["epoch"] for row in monitor.history] == [1, 2, 3, 4, 5, 6, 7]
    assert len({row["epoch"] for row in monitor.history}) == len(monitor.history)
