"""Edge cases of the metrics: extreme feature scales in `evaluate`, default names.

Scale: every measure is scale-invariant, so features multiplied by 1e-30 ... 1e30
(finite in float32) must give the values of the unscaled features, within
`SCALE_RTOL`/`SCALE_ATOL` (tests/tolerances.py says why).
"""

import numpy as np
import pytest

from keras_nc import metrics
from tests.helpers import (
    EDGE_CLASSES,
    EDGE_DIM,
    EXTREME_SCALES,
    edge_case_data,
    every_collapse_metric,
    identity_classifier,
)
from tests.tolerances import SCALE_ATOL, SCALE_RTOL

C, D = EDGE_CLASSES, EDGE_DIM


def test_metrics_in_evaluate_are_scale_invariant(rng):
    z, y, head = edge_case_data(rng, n=60)
    model = identity_classifier()
    model.head.kernel.assign(head.T)
    model.compile(loss="sparse_categorical_crossentropy", metrics=every_collapse_metric())
    want = model.evaluate(z, y, batch_size=20, verbose=0, return_dict=True)
    keys = [m.name for m in every_collapse_metric()]
    for scale in EXTREME_SCALES:
        got = model.evaluate((z * scale).astype("float32"), y, batch_size=20, verbose=0,
                             return_dict=True)  # fmt: skip
        for key in keys:
            assert np.isfinite(got[key]), (scale, key)
            assert got[key] == pytest.approx(want[key], rel=SCALE_RTOL, abs=SCALE_ATOL), (
                scale,
                key,
            )


def test_default_names_keep_both_pairings(rng):
    z, y, _ = edge_case_data(rng)
    model = identity_classifier()
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
