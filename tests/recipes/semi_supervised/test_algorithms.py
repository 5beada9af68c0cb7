"""recipes.semi_supervised.algorithms: FixMatch/FreeMatch mathematics against float64 NumPy."""

import keras
import numpy as np

from keras_nc.losses import InformationRegularizer
from recipes.semi_supervised import algorithms
from tests import reference
from tests.helpers import to_numpy
from tests.recipes.semi_supervised.support import (
    LOSS_RTOL,
    STATE_ATOL,
    C,
    fairness_cross_entropy,
    masked_ce,
    sat,
    softmax,
)
from tests.tolerances import information_tolerance


def test_fixmatch_mask_and_loss_match_numpy(rng):
    logits_w = (rng.normal(size=(16, C)) * np.linspace(0.5, 8, 16)[:, None]).astype("float32")
    logits_s = rng.normal(size=(16, C)).astype("float32") * 3
    p = softmax(logits_w)
    want_mask = (p.max(axis=1) >= 0.95).astype(np.float64)
    assert 0 < want_mask.sum() < len(want_mask)  # both branches exercised
    mask, pseudo = algorithms.fixmatch_mask(keras.ops.softmax(logits_w), 0.95)
    np.testing.assert_array_equal(to_numpy(mask), want_mask)
    np.testing.assert_array_equal(to_numpy(pseudo), p.argmax(axis=1))
    loss = algorithms.masked_cross_entropy(logits_s, pseudo, mask)
    want = masked_ce(logits_s, p.argmax(axis=1), want_mask)
    np.testing.assert_allclose(float(to_numpy(loss)), want, rtol=LOSS_RTOL)


def test_sat_and_saf_match_numpy_over_several_steps(rng):
    m = 0.7  # a fast EMA, so that the state moves visibly within a few steps
    state = (1 / C, np.full(C, 1 / C), np.full(C, 1 / C))
    ours = tuple(np.asarray(s, "float32") for s in state)
    mixed = 0
    for step in range(6):
        # Peaked and flat rows, a class never predicted (zero histogram bins).
        logits = rng.normal(size=(12, C)) * rng.uniform(0.2, 4.0, size=(12, 1))
        logits[:, C - 1] -= 6.0
        p = softmax(logits)
        p_strong = softmax(rng.normal(size=(12, C)) * 2)
        *state, thresholds, mask = sat(p, *state, m)
        if step == 5:
            mask = np.zeros_like(mask)  # no confident sample: L_f = 0
        mixed += 0 < mask.sum() < len(mask)

        new = algorithms.sat_update(p.astype("float32"), *ours, momentum=m)
        ours = tuple(to_numpy(v) for v in new)
        for got, want in zip(ours, state, strict=True):
            np.testing.assert_allclose(got, want, rtol=LOSS_RTOL, atol=STATE_ATOL)
        got_mask, got_thresholds = algorithms.sat_mask(p.astype("float32"), ours[0], ours[1])
        np.testing.assert_allclose(to_numpy(got_thresholds), thresholds, rtol=LOSS_RTOL)
        if step < 5:
            np.testing.assert_array_equal(to_numpy(got_mask), mask)
        fairness = algorithms.saf_loss(p_strong.astype("float32"), mask, ours[1], ours[2])
        # FreeMatch's paper and USB minimise L_f = -H(., .): the cross-entropy, negated.
        want = -fairness_cross_entropy(p_strong, mask, state[1], state[2])
        np.testing.assert_allclose(float(to_numpy(fairness)), want, rtol=LOSS_RTOL, atol=STATE_ATOL)
    assert mixed >= 2


def _subset(rng):
    """Features, labels, head rows and a mask; the float64 Grams of the selected subset."""
    features = rng.normal(size=(10, 6)).astype("float32")
    labels = rng.integers(0, C, size=10).astype("int32")
    head = rng.normal(size=(C, 6)).astype("float32")
    mask = np.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 0], "float32")
    keep = mask > 0
    k_z = reference.gram(features[keep], center=True)
    k_w = reference.gram(head[labels[keep]])
    return (features, labels, head, mask), (k_z, k_w)


def test_masked_information_ratios_equal_those_of_the_subset(rng):
    (features, labels, head, mask), (k_z, k_w) = _subset(rng)
    mir, hdr, valid = algorithms.masked_information_ratios(features, labels, head, mask)
    # The library decomposes the full 10 x 10 matrices (zero rows for the others).
    for got, want, kind in ((mir, reference.mir(k_z, k_w), "mir"),
                            (hdr, reference.hdr(k_z, k_w), "hdr")):  # fmt: skip
        tol = information_tolerance(k_z, k_w, kind, size=len(mask))
        # tol: rtol=0, the computed atol is the whole bound
        np.testing.assert_allclose(float(to_numpy(got)), want, rtol=0, atol=tol)
    assert float(to_numpy(valid)) == 1.0
    one = np.eye(10, dtype="float32")[0]
    *_, valid = algorithms.masked_information_ratios(features, labels, head, one)
    assert float(to_numpy(valid)) == 0.0


def test_regularizer_of_the_confident_samples_is_that_of_the_subset(rng):
    # The unlabelled MIR/HDR term: the library's InformationRegularizer's formula on
    # the confident samples only, `hdr_weight * HDR - mir_weight * MIR` of the subset.
    (features, labels, head, mask), (k_z, k_w) = _subset(rng)
    regularizer = InformationRegularizer(mir_weight=0.3, hdr_weight=0.2)

    def term(selection):
        value = algorithms.confident_information_term(regularizer, labels, *rest, selection)
        return float(to_numpy(value))

    def want_and_tolerance(k_z, k_w):
        want = 0.2 * reference.hdr(k_z, k_w) - 0.3 * reference.mir(k_z, k_w)
        tol = 0.2 * information_tolerance(k_z, k_w, "hdr", size=len(mask))
        return want, tol + 0.3 * information_tolerance(k_z, k_w, "mir", size=len(mask))

    rest = (features, head)
    want, tol = want_and_tolerance(k_z, k_w)
    # tol: rtol=0, the computed atol is the whole bound
    np.testing.assert_allclose(term(mask), want, rtol=0, atol=tol)
    assert abs(want) > 10 * tol  # a value that could be wrong
    assert term(np.eye(10, dtype="float32")[0]) == 0.0  # fewer than two confident samples
    # Every sample selected: the regulariser of the whole batch.
    want, tol = want_and_tolerance(
        reference.gram(features, center=True), reference.gram(head[labels])
    )
    # tol: rtol=0, the computed atol is the whole bound
    np.testing.assert_allclose(term(np.ones(10, "float32")), want, rtol=0, atol=tol)
