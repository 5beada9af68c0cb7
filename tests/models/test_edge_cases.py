"""Edge cases of `CollapseClassifier`: duplicate metric names, ragged batches, heads."""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import losses, metrics
from keras_nc import ops as nc
from keras_nc.models import CollapseClassifier
from tests.helpers import (
    EDGE_CLASSES,
    EDGE_DIM,
    edge_case_data,
    every_collapse_metric,
    identity_classifier,
    to_numpy,
)
from tests.tolerances import entropy_tolerance, information_tolerance

C, D = EDGE_CLASSES, EDGE_DIM


def test_duplicate_metric_names_are_refused():
    model = identity_classifier()
    with pytest.raises(ValueError, match=r"several metrics named \['mir'\]"):
        model.compile(metrics=[metrics.MIR(), metrics.MIR(center=False)])


@pytest.mark.parametrize("batch_size", [256, 1])
def test_ragged_last_batch_of_one_in_fit_and_evaluate(batch_size, rng):
    n = 257 if batch_size == 256 else 12
    z, y, head = edge_case_data(rng, n=n)
    model = identity_classifier()
    model.head.kernel.assign(head.T)
    model.compile(
        optimizer="sgd",
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              losses.CMALoss(0.5), losses.InformationRegularizer(0.5, 0.5)],
        metrics=every_collapse_metric(),
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
    # Two float32 evaluations of each group (the metric's and keras_nc.ops'), each
    # within its float64 bound: within twice. Normalising divides by a constant: the
    # entropy's bound relative to the entropy.
    grams = [(ref.gram(z[g], center=True), ref.gram(head[y[g]])) for g in groups]
    entropy_rtol = max(entropy_tolerance(k_z) / ref.entropy(k_z) for k_z, _ in grams)
    mir_atol = max(information_tolerance(k_z, k_w) for k_z, k_w in grams)
    assert result["matrix_entropy_normalized"] == pytest.approx(
        expected_entropy, rel=2 * entropy_rtol
    )
    assert result["mir"] == pytest.approx(expected_mir, abs=2 * mir_atol)
    history = model.fit(z, y, batch_size=batch_size, epochs=1, verbose=0)
    for key, values in history.history.items():
        assert np.all(np.isfinite(values)), key


def test_a_head_with_an_activation_is_refused():
    inputs = keras.Input((D,))
    backbone = keras.Model(inputs, keras.layers.Dense(D)(inputs))
    with pytest.raises(ValueError, match="`head` must output logits"):
        CollapseClassifier(backbone, C, head=keras.layers.Dense(C, activation="softmax"))
