"""The `RankMe` metric (`keras_nc.metrics.rank`) in a `CollapseClassifier`, saved and loaded."""

import keras
import numpy as np
import pytest

import keras_nc
import tests.reference as ref
from tests.helpers import to_numpy
from tests.tolerances import EPS32, rank_me_tolerance


def test_rank_me_metric_in_a_collapse_classifier(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)
    inputs = keras.Input((6,))
    backbone = keras.Model(inputs, keras.layers.Dense(5)(inputs))
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=3)
    reptrix = keras_nc.metrics.RankMe(center=True, spectrum="covariance", name="r2")
    metrics = [keras_nc.metrics.RankMe(), reptrix]
    model.compile(optimizer="sgd", loss="auto", metrics=metrics)
    result = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    z = to_numpy(model.extract_features(x))
    halves = (z[:32], z[32:])
    expected = np.mean([ref.rank_me(h) for h in halves])
    tolerance = max(rank_me_tolerance(h) for h in halves)
    assert abs(result["rank_me"] / expected - 1) <= tolerance + 8 * EPS32  # + the float32 mean
    expected = np.mean([ref.rank_me(h, center=True, spectrum="covariance") for h in halves])
    tolerance = max(rank_me_tolerance(h, True, "covariance") for h in halves)
    assert abs(result["r2"] / expected - 1) <= tolerance + 8 * EPS32
    metric = keras_nc.metrics.RankMe(center=True, spectrum="covariance", epsilon=1e-7, name="r")
    restored = keras_nc.metrics.RankMe.from_config(metric.get_config())
    assert (restored.center, restored.spectrum, restored.epsilon, restored.name) == (
        True,
        "covariance",
        1e-7,
        "r",
    )
    with pytest.raises(ValueError, match="spectrum"):
        keras_nc.metrics.RankMe(spectrum="svd")
