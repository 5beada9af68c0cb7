"""Edge cases of the metrics: extreme feature scales in `evaluate`, default names.

Scale: every measure is scale-invariant, so features multiplied by 1e-30 ... 1e30
(finite in float32) must give the values of the unscaled features. Multiplying
by a power of ten rounds every entry (relative `eps = 6e-8`); on this
well-conditioned data the measures move by a few `eps` at first order, so
`rtol = 1e-5` (plus `atol = 1e-6` for values near 0) is the float32 bound with
room, not a value read off one machine.
"""

import keras
import numpy as np
import pytest

from keras_nc import metrics
from keras_nc.models import CollapseClassifier
from tests.helpers import every_collapse_metric

C, D = 5, 8


SCALES = [1e-30, 1e-20, 1e20, 1e30]


RTOL, ATOL = 1e-5, 1e-6


def _data(rng, n=40):
    centres = 3.0 * rng.normal(size=(C, D))
    y = np.arange(n) % C
    z = centres[y] + rng.normal(size=(n, D))
    head = rng.normal(size=(C, D))
    return z.astype("float32"), y.astype("int32"), head.astype("float32")


def _identity_model():
    inputs = keras.Input((D,))
    return CollapseClassifier(keras.Model(inputs, keras.layers.Identity()(inputs)), C)


def test_metrics_in_evaluate_are_scale_invariant(rng):
    z, y, head = _data(rng, n=60)
    model = _identity_model()
    model.head.kernel.assign(head.T)
    model.compile(loss="sparse_categorical_crossentropy", metrics=every_collapse_metric())
    want = model.evaluate(z, y, batch_size=20, verbose=0, return_dict=True)
    keys = [m.name for m in every_collapse_metric()]
    for scale in SCALES:
        got = model.evaluate((z * scale).astype("float32"), y, batch_size=20, verbose=0,
                             return_dict=True)  # fmt: skip
        for key in keys:
            assert np.isfinite(got[key]), (scale, key)
            assert got[key] == pytest.approx(want[key], rel=RTOL, abs=ATOL), (scale, key)


def test_default_names_keep_both_pairings(rng):
    z, y, _ = _data(rng)
    model = _identity_model()
    model.compile(
        loss="sparse_categorical_crossentropy",
        metrics=[metrics.MIR(), metrics.MIR(pairing="class"), metrics.HDR(),
                 metrics.HDR(pairing="class"), metrics.MatrixEntropy(),
                 metrics.MatrixEntropy(of="head")],
    )  # fmt: skip
    result = model.evaluate(z, y, verbose=0, return_dict=True)
    history = model.fit(z, y, batch_size=20, epochs=1, verbose=0)
    for key in ("mir", "mir_class", "hdr", "hdr_class", "matrix_entropy", "head_entropy"):
        assert key in result, key
        assert key in history.history, key
    assert result["mir"] != result["mir_class"]
