"""Bad input in `CollapseClassifier.fit`: one-hot targets, then NaN inputs."""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import losses, metrics
from keras_nc.models import CollapseClassifier
from tests.helpers import random_batch, to_numpy
from tests.tolerances import information_tolerance

C = 3


def test_collapse_classifier_with_one_hot_targets_and_then_nan_inputs():
    # A Keras user with one-hot targets and categorical cross-entropy keeps them:
    # collapse metrics read their argmax. Then NaN inputs: evaluate gives NaN
    # metrics, like the loss, on every backend (torch's eager step included);
    # direct eager calls keep their clear errors (tests above).
    z, y, _ = random_batch(n=16, d=6)
    targets = np.eye(C, dtype="float32")[y]
    model = _model(d=6)
    model.compile(
        optimizer="sgd",
        loss=["categorical_crossentropy", losses.CMALoss(0.5)],
        metrics=[metrics.MIR(), metrics.MIR(pairing="class", name="mir_class"), metrics.NC1()],
    )
    result = model.evaluate(z, targets, batch_size=16, verbose=0, return_dict=True)
    features = to_numpy(model.extract_features(z)).astype("float64")
    head = to_numpy(model.head.kernel).T.astype("float64")
    k_z, k_w = ref.gram(features, center=True), ref.gram(head[y])
    expected = ref.mir(k_z, k_w)
    assert result["mir"] == pytest.approx(expected, abs=information_tolerance(k_z, k_w))

    z[3, 2] = np.nan
    # The promise is about non-finite features: make them so for certain. A
    # ReLU may turn NaN into 0 (oneDNN's fused kernels do), a linear backbone
    # cannot (NaN * w is NaN for every w), and the claim is checked.
    model = _model(d=6, activation=None)
    model.compile(
        optimizer="sgd",
        loss=["categorical_crossentropy", losses.CMALoss(0.5)],
        metrics=[metrics.MIR(), metrics.MIR(pairing="class", name="mir_class"), metrics.NC1()],
    )
    assert not np.all(np.isfinite(to_numpy(model.extract_features(z))))
    result = model.evaluate(z, targets, batch_size=16, verbose=0, return_dict=True)
    # Epoch-end results of the accumulators are computed eagerly: NaN, no error.
    for key in ("loss", "mir", "mir_class", "nc1"):
        assert np.isnan(result[key]), key


def _model(d, activation="relu"):
    inputs = keras.Input((d,))
    backbone = keras.Model(inputs, keras.layers.Dense(5, activation=activation)(inputs))
    return CollapseClassifier(backbone, num_classes=C)
