"""Collapse metrics and losses under the mixed_float16 and mixed_bfloat16 policies.

The backbone then computes in 16 bits and hands 16-bit features to the metrics
and losses, which compute in float32 (`keras_nc.ops` casts its inputs). The
values must stay finite and close to the float32 model with the same weights.
"""

import keras
import numpy as np
import pytest

from keras_nc import losses, metrics, models

# Largest |mixed - float32| allowed for the metric values below (nats for the
# entropy, unitless for the rest): the features are rounded to 16 bits.
TOLERANCE = {"mixed_float16": 1e-3, "mixed_bfloat16": 5e-3}
METRICS = ("mir", "hdr", "matrix_entropy", "nc1", "class_mir", "cma")


def _data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 16).astype("int32")
    x = (rng.normal(size=(4, 12))[y] + 0.5 * rng.normal(size=(64, 12))).astype("float32")
    return x, y


def _model(policy):
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((12,))
        features = keras.layers.Dense(8, activation="relu")(inputs)
        model = models.CollapseClassifier(keras.Model(inputs, features), num_classes=4)
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=[
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            losses.CMALoss(0.5),
            losses.InformationRegularizer(),
        ],
        metrics=[
            metrics.MIR(),
            metrics.HDR(),
            metrics.MatrixEntropy(),
            metrics.NC1(),
            metrics.MIR(pairing="class", name="class_mir"),
        ],
    )
    return model


def _cma(model, x, y):
    z = model.extract_features(x)
    head = keras.ops.transpose(model.head.kernel)
    return float(keras.ops.convert_to_numpy(losses.CMALoss(1.0)(y, features=z, head_weights=head)))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_values_match_float32(policy):
    x, y = _data()
    reference = _model("float32")
    mixed = _model(policy)
    assert keras.backend.standardize_dtype(mixed.extract_features(x[:2]).dtype) == policy[6:]
    mixed.set_weights(reference.get_weights())
    want = reference.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    got = mixed.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    want["cma"], got["cma"] = _cma(reference, x, y), _cma(mixed, x, y)
    for key in METRICS:
        assert np.isfinite(got[key]), key
        assert abs(got[key] - want[key]) <= TOLERANCE[policy], (key, got[key], want[key])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_training_stays_finite(policy):
    x, y = _data()
    model = _model(policy)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    for key in ("loss", *METRICS[:-1]):
        assert np.all(np.isfinite(history[key])), key
    assert history["loss"][-1] < history["loss"][0]
    for weight in model.trainable_weights:
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(weight)))
