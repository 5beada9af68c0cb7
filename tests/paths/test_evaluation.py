"""`keras_nc.paths.evaluate_model`: compiling an uncompiled model like a reference."""

import keras
import numpy as np
import pytest

import keras_nc
from keras_nc.paths import evaluate_model
from tests import reference as reference_lib
from tests.helpers import to_numpy
from tests.tolerances import cross_entropy_tolerance


def _data(n=24, d=5, classes=3):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)).astype("float32"), (np.arange(n) % classes).astype("int32")


def _classifier(seed=0):
    keras.utils.set_random_seed(seed)
    backbone = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu")])
    return keras_nc.models.CollapseClassifier(backbone, 3)


def _linear(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])


def test_uncompiled_model_is_compiled_like_the_reference_with_fresh_metrics():
    x, y = _data()
    reference = _classifier()
    reference.compile(metrics=["accuracy", keras_nc.metrics.MIR(), keras_nc.metrics.NC1()])
    # The reference's metrics hold state from another data set: the copy's must not.
    reference.evaluate(x[:6] * 3.0, y[:6], verbose=0)
    model = _classifier()
    model.set_weights(reference.get_weights())
    result = evaluate_model(model, (x, y), reference=reference, batch_size=8)
    assert sorted(result) == ["accuracy", "loss", "mir", "nc1"]
    assert all(isinstance(value, float) for value in result.values())
    assert model.compiled
    expected = reference.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
    # Same weights, data, batches and metric classes: the same float32 computation.
    for name, value in expected.items():
        assert result[name] == float(to_numpy(value)), name


def test_loss_and_metrics_are_used_and_the_loss_matches_the_float64_cross_entropy():
    x, y = _data()
    model = _linear()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    result = evaluate_model(model, (x, y), loss=loss, metrics=["accuracy"], batch_size=len(x))
    logits = to_numpy(model(x)).astype("float64")
    expected = reference_lib.cross_entropy(logits, y)
    assert abs(result["loss"] - expected) <= cross_entropy_tolerance(logits, y, expected)
    # Accuracy: a float32 division of two exact integer counts (correctly rounded).
    correct = np.sum(np.argmax(logits, axis=1) == y)
    assert result["accuracy"] == float(np.float32(correct) / np.float32(len(y)))


def test_given_metrics_replace_the_references_and_the_loss_comes_from_it():
    x, y = _data()
    reference = _linear()
    reference.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    result = evaluate_model(_linear(), (x, y), reference=reference, metrics=["accuracy"])
    assert sorted(result) == ["accuracy", "loss"]


def test_compiled_model_is_evaluated_as_compiled():
    x, y = _data()
    model = _linear()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert sorted(evaluate_model(model, (x, y), metrics=["accuracy"])) == ["loss"]


def test_a_dataset_is_evaluated():
    x, y = _data()
    model = _linear()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return x[8 * index : 8 * index + 8], y[8 * index : 8 * index + 8]

    from_batches = evaluate_model(model, Batches(), loss=loss)
    # The same batches through the same compiled model: the same float32 computation.
    assert from_batches == evaluate_model(model, (x, y), batch_size=8)


def test_errors_name_the_arguments():
    x, y = _data()
    with pytest.raises(ValueError, match=r"`reference`.*`loss`.*`metrics`"):
        evaluate_model(_linear(), (x, y))
    with pytest.raises(ValueError, match="`reference` must be a compiled model"):
        evaluate_model(_linear(), (x, y), reference=_linear())
    with pytest.raises(ValueError, match="`data` must be"):
        evaluate_model(_linear(), (x,), loss="mse")
