"""`keras_nc.losses` (CMALoss, InformationRegularizer) against the float64 NumPy reference.

Also: their argument checks, and scale invariance: features multiplied by
1e-30 ... 1e30 (finite in float32) give the values of the unscaled features
(`SCALE_RTOL`, `SCALE_ATOL`: tests/tolerances.py says why).
"""

import numpy as np
import pytest

import tests.reference as ref
from keras_nc import losses
from tests.helpers import EXTREME_SCALES, compiled, edge_case_data, grad, labelled_batches, to_numpy
from tests.tolerances import SCALE_ATOL, SCALE_RTOL, cma_tolerance, information_tolerance

# The data of `labelled_batches`: C classes in D dimensions.
C, D = 6, 9


@pytest.fixture
def head(rng):
    return rng.normal(size=(C, D)).astype("float32")


def test_cma_loss_matches_reference_with_absent_and_single_sample_classes(rng):
    num_classes = 7
    anchors = rng.normal(size=(num_classes, D)).astype("float32")
    # Class 2 has one sample; classes 0, 4, 6 are absent from the batch.
    y = np.array([1, 1, 1, 2, 3, 3, 5, 5, 5, 5], dtype="int32")
    z = (anchors[y] + 0.5 * rng.normal(size=(len(y), D))).astype("float32")
    loss = losses.CMALoss(weight=0.5)
    value = to_numpy(loss(y, features=z, head_weights=anchors))
    # CMA decomposed at n + P, P the classes present (the block-diagonal matrix).
    atol = 0.5 * cma_tolerance(z, anchors, y, size=len(z) + len(np.unique(y)))
    np.testing.assert_allclose(value, 0.5 * ref.cma(z, anchors, y), atol=atol)


def test_information_regularizer_value_and_gradients(rng, head):
    z, y = labelled_batches(rng, sizes=(16,))[0]
    reg = losses.InformationRegularizer(mir_weight=0.3, hdr_weight=0.2)
    kz, kw = ref.gram(z, center=True), ref.gram(head[y])
    expected = 0.2 * ref.hdr(kz, kw) - 0.3 * ref.mir(kz, kw)
    atol = 0.2 * information_tolerance(kz, kw, "hdr") + 0.3 * information_tolerance(kz, kw)
    np.testing.assert_allclose(to_numpy(reg(y, features=z, head_weights=head)), expected, atol=atol)
    g_z = grad(lambda x: reg(y, features=x, head_weights=head), z)
    g_w = grad(lambda w: reg(y, features=z, head_weights=w), head)
    for g in (g_z, g_w):
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 1e-6


def test_loss_arguments_are_checked():
    with pytest.raises(ValueError, match="`weight` must be > 0"):
        losses.CMALoss(weight=-1.0)
    with pytest.raises(ValueError, match="`mir_weight` must be >= 0"):
        losses.InformationRegularizer(mir_weight=-0.1)
    with pytest.raises(ValueError, match="reads the features and head rows"):
        losses.CMALoss()(np.zeros(3, "int32"))
    with pytest.raises(ValueError, match="not its predictions"):  # as a plain model calls it
        losses.CMALoss()(np.zeros(3, "int32"), np.zeros((3, 4), "float32"))


def test_collapse_losses_are_scale_invariant(rng):
    z, y, head = edge_case_data(rng)
    for loss in (losses.CMALoss(1.0), losses.InformationRegularizer(0.5, 0.5)):
        want = float(to_numpy(loss(y, features=z, head_weights=head)))

        def value(features, loss=loss):
            return loss(y, features=features, head_weights=head)

        for scale in EXTREME_SCALES:
            features = (z * scale).astype("float32")
            for call in (value, compiled(value)):
                got = float(to_numpy(call(features)))
                assert got == pytest.approx(want, rel=SCALE_RTOL, abs=SCALE_ATOL), (
                    type(loss).__name__,
                    scale,
                )
