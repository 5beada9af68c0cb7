"""Collapse metrics and losses on a plain `keras.Model`: one clear error naming the way out.

A plain model hands metrics and losses its predictions; the collapse terms need
features and head rows, which only `CollapseClassifier` (or explicit keyword
arguments in a custom loop) provides. The error says so, on every backend.
"""

import keras
import numpy as np
import pytest

from keras_nc.losses import CMALoss, InformationRegularizer
from keras_nc.metrics import HDR, MIR, NC1, MatrixEntropy, NCCAgreement


def _plain_model():
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(3)(keras.layers.Dense(5, activation="relu")(inputs))
    return keras.Model(inputs, outputs)


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 3, 16)


@pytest.mark.parametrize(
    "metric",
    [MIR, HDR, lambda: MIR(pairing="class"), NC1, MatrixEntropy, NCCAgreement],
    ids=["mir", "hdr", "mir_class", "nc1", "matrix_entropy", "ncc_agreement"],
)
def test_collapse_metric_on_a_plain_model_says_what_to_use(metric):
    model = _plain_model()
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[metric()],
    )
    x, y = _data()
    with pytest.raises(ValueError, match=r"not its predictions.*CollapseClassifier"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)


@pytest.mark.parametrize("loss", [CMALoss, InformationRegularizer], ids=["cma", "regularizer"])
def test_collapse_loss_on_a_plain_model_says_what_to_use(loss):
    model = _plain_model()
    model.compile(optimizer="sgd", loss=loss())
    x, y = _data()
    with pytest.raises(ValueError, match=r"not its predictions.*CollapseClassifier"):
        model.fit(x, y, sample_weight=np.ones(16, "float32"), batch_size=8, epochs=1, verbose=0)


def test_custom_loop_keywords_still_work():
    x, y = _data()
    features, head = x[:, :4], np.eye(3, 4, dtype="float32")
    metric = MIR()
    metric.update_state(y, features=features, head_weights=head)
    assert np.isfinite(float(metric.result()))
    assert np.isfinite(float(CMALoss()(y, features=features, head_weights=head)))
