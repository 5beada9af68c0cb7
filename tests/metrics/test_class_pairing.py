"""The class-pairing metrics with `baseline=...` log the value, its chance level and the excess."""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import metrics
from keras_nc.models import CollapseClassifier
from keras_nc.ops.chance import head_permutations
from tests.helpers import to_numpy
from tests.tolerances import (
    chance_tolerance,
    float32_tolerance,
    information_tolerance,
)


def test_metrics_log_value_chance_and_excess(rng):
    c, d, n = 4, 8, 64
    y = np.arange(n) % c
    z = (3.0 * rng.normal(size=(c, d)))[y] + rng.normal(size=(n, d))
    inputs = keras.Input((d,))
    model = CollapseClassifier(keras.Model(inputs, keras.layers.Identity()(inputs)), c)
    model.compile(
        loss="sparse_categorical_crossentropy",
        metrics=[metrics.ClassMIR(), metrics.ClassMIR(baseline="chance"),
                 metrics.ClassMIR(baseline="excess"), metrics.ClassHDR(baseline="chance")],
    )  # fmt: skip
    logs = model.evaluate(z.astype("float32"), y, batch_size=16, verbose=0, return_dict=True)
    # The excess is the float32 difference of the two logged float32 values (each in
    # [0, 1]): one rounding of each and of the difference.
    assert logs["mir_class_excess"] == pytest.approx(
        logs["mir_class"] - logs["mir_class_chance"], abs=float32_tolerance(terms=3)
    )
    head = to_numpy(model.head.kernel).T
    k_m, _ = ref.class_pairing(z, y, head, c)
    means = z.reshape(-1, c, d).mean(axis=0) - z.mean(axis=0)  # y = arange % c
    perms = head_permutations(c, 16)
    values, bound = ref.permuted_mir(means, head, perms), chance_tolerance(means, head, perms)
    # The class means are float32 sums of the raw rows: the Gram's rounding, which
    # `entropy_tolerance` takes on unit rows, is amplified by the condition number of
    # centring, max ||z_i|| / min ||mu_c - mu_G|| (as in `gram_tolerance`).
    centring = np.linalg.norm(z, axis=1).max() / np.linalg.norm(means, axis=1).min()
    assert logs["mir_class_chance"] == pytest.approx(values.mean(), abs=bound * max(centring, 1))
    k_h = ref.gram(head)
    bound = information_tolerance(k_m, k_h, "hdr")
    assert logs["hdr_class_chance"] == pytest.approx(ref.hdr(k_m, k_h), abs=bound)
    config = metrics.ClassMIR(baseline="excess", permutations=8).get_config()
    restored = metrics.ClassMIR.from_config(config)
    assert (restored.baseline, restored.permutations, restored.direction) == ("excess", 8, "up")
