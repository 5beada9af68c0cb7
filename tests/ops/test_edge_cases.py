"""Edge cases of the ops: extreme feature scales, eager and compiled.

Scale: every measure is scale-invariant, so features multiplied by 1e-30 ... 1e30
(finite in float32) must give the values of the unscaled features, within
`SCALE_RTOL`/`SCALE_ATOL` (tests/tolerances.py says why).
"""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import ops as nc
from tests.helpers import EDGE_CLASSES, EDGE_DIM, EXTREME_SCALES, compiled, edge_case_data, to_numpy
from tests.tolerances import SCALE_ATOL, SCALE_RTOL, entropy_tolerance, ratio_tolerance

C, D = EDGE_CLASSES, EDGE_DIM


def _op_values(z, y, head):
    """Every public op that reads features, as a flat dict of scalars."""
    stats = nc.class_statistics(z, y, C, exponent="auto")
    means, _, present = nc.class_means(stats["counts"], stats["sums"])
    logits = keras.ops.matmul(keras.ops.convert_to_tensor(np.asarray(z) / np.abs(z).max()), head.T)
    mir, hdr = nc.sample_head_ratios(z, y, head)
    class_mir, class_hdr = nc.class_pairing_ratios(stats["counts"], stats["sums"], head)
    k_z, k_w = nc.sample_head_grams(z, y, head)
    values = {
        "gram_entropy": nc.matrix_entropy(nc.gram(z, center=True)),
        "feature_entropy": nc.feature_entropy(z, center=True),
        "renyi2": nc.feature_entropy(z, center=True, alpha=2.0),
        "mir": mir,
        "hdr": hdr,
        "mir_grams": nc.mir(k_z, k_w),
        "class_mir": class_mir,
        "class_hdr": class_hdr,
        "cma": nc.cma_entropy(z, head, y),
        "ncc": nc.ncc_agreement(z, logits, means, present, means_exponent=stats["exponent"]),
        **nc.neural_collapse_measures(stats, head),
    }
    return {key: float(to_numpy(value)) for key, value in values.items()}


@pytest.mark.parametrize("scale", EXTREME_SCALES)
@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_every_op_is_scale_invariant(scale, mode, rng):
    z, y, head = edge_case_data(rng)
    want = _op_values(z, y, head)

    def values(features):
        return _op_values(features, y, head)

    if mode == "compiled":
        # The logits' scaling above reads NumPy: compile the rest, feed tensors.
        def run(features):
            stats = nc.class_statistics(features, y, C, exponent="auto")
            mir, hdr = nc.sample_head_ratios(features, y, head)
            measures = nc.neural_collapse_measures(stats, head)
            return {
                "feature_entropy": nc.feature_entropy(features, center=True),
                "mir": mir,
                "hdr": hdr,
                "class_mir": nc.class_pairing_ratios(stats["counts"], stats["sums"], head)[0],
                "cma": nc.cma_entropy(features, head, y),
                **measures,
            }

        got = {
            k: float(to_numpy(v)) for k, v in compiled(run)((z * scale).astype("float32")).items()
        }
    else:
        got = values((z * scale).astype("float32"))
    bounds = _float32_bounds(z, y, head)
    for key, value in got.items():
        assert np.isfinite(value), key
        # Scaled features round differently, and a compiled graph may take
        # another exact path: both sides carry the float32 error of the value.
        bound = max(SCALE_RTOL * abs(want[key]) + SCALE_ATOL, 2 * bounds.get(key, 0.0))
        assert value == pytest.approx(want[key], abs=bound), key


def _float32_bounds(z, y, head):
    """Float32 error bounds (`tests/tolerances.py`) of the entropy-based values, from float64."""
    k_z, k_w = ref.gram(z, center=True), ref.gram(head[y])
    k_m, k_h = ref.class_pairing(z, y, head, C)
    bounds = {}
    for prefix, (k1, k2) in (("", (k_z, k_w)), ("class_", (k_m, k_h))):
        h = [ref.entropy(k1), ref.entropy(k2), ref.entropy(k1 * k2)]
        e = [entropy_tolerance(k1), entropy_tolerance(k2), entropy_tolerance(k1 * k2)]
        bounds[prefix + "mir"] = ratio_tolerance(*h, *e, "mir")
        bounds[prefix + "hdr"] = ratio_tolerance(*h, *e, "hdr")
    bounds["mir_grams"] = bounds["mir"]
    bounds["feature_entropy"] = bounds["gram_entropy"] = entropy_tolerance(k_z)
    return bounds
