"""Chance levels of the class pairing (`class_pairing_chance`, `ClassMIR(baseline=...)`)."""

import numpy as np
import pytest

import tests.reference as ref
from keras_nc import metrics, theory
from keras_nc import ops as nc
from keras_nc.ops.chance import head_permutations
from tests.helpers import to_numpy
from tests.tolerances import (
    chance_tolerance,
    information_tolerance,
)


def test_chance_is_the_mean_over_permutations(rng):
    c, d = 10, 32
    means, head = rng.normal(size=(c, d)), rng.normal(size=(c, d))
    mir_chance, hdr_chance = nc.class_pairing_chance(np.ones(c), means, head, center=False)
    perms = head_permutations(c, 16)
    values, bound = ref.permuted_mir(means, head, perms), chance_tolerance(means, head, perms)
    assert float(to_numpy(mir_chance)) == pytest.approx(values.mean(), abs=bound)
    # A permutation keeps the head's spectrum: HDR's chance level is HDR itself.
    _, hdr = nc.class_pairing_ratios(np.ones(c), means, head, center=False)
    # Two float32 computations of the same HDR, each to its bound.
    hdr_bound = 2 * information_tolerance(ref.gram(means), ref.gram(head), "hdr")
    assert float(to_numpy(hdr_chance)) == pytest.approx(float(to_numpy(hdr)), abs=hdr_bound)


@pytest.mark.parametrize("d", [16, 64])
def test_unrelated_rows_score_at_chance(rng, d):
    """Random means and head rows: MIR within sampling error of its chance level."""
    c = 10
    means, head = rng.normal(size=(c, d)), rng.normal(size=(c, d))
    mir, _ = nc.class_pairing_ratios(np.ones(c), means, head, center=False)
    chance, _ = nc.class_pairing_chance(np.ones(c), means, head, center=False)
    # The spread of MIR over relabellings (many of them): the value of an
    # unrelated pairing is one draw from that distribution.
    perms = head_permutations(c, 200, seed=1)
    values, chance_bound = (
        ref.permuted_mir(means, head, perms),
        chance_tolerance(means, head, perms),
    )
    # Plus the float32 round-off of the two values: MIR's bound and the chance level's
    # (a mean of permuted MIRs, within the largest of their bounds).
    round_off = information_tolerance(ref.gram(means), ref.gram(head)) + chance_bound
    assert abs(float(to_numpy(mir)) - float(to_numpy(chance))) <= 4 * values.std() + round_off


def test_etf_aligned_head_is_at_collapse_and_at_chance():
    """An ETF's Gram is the same under every relabelling: MIR* is also its chance level."""
    c = 6
    means = np.linalg.cholesky(ref.etf_gram(c) + 1e-12 * np.eye(c))  # rows: a simplex ETF
    metric_value, hdr = nc.class_pairing_ratios(np.ones(c), means, means, center=False)
    chance, _ = nc.class_pairing_chance(np.ones(c), means, means, center=False)
    k = ref.etf_gram(c)
    bound = information_tolerance(k, k)
    assert float(to_numpy(metric_value)) == pytest.approx(theory.mir_at_collapse(c), abs=bound)
    assert float(to_numpy(hdr)) == pytest.approx(0.0, abs=information_tolerance(k, k, "hdr"))
    assert float(to_numpy(chance)) == pytest.approx(theory.mir_at_collapse(c), abs=bound)


def test_shared_class_structure_scores_above_chance(rng):
    """Means and head rows with the same class structure (two families of classes)."""
    c, d = 8, 32
    family = np.repeat(rng.normal(size=(2, d)) * 3.0, c // 2, axis=0)
    means = family + rng.normal(size=(c, d))
    head = family + rng.normal(size=(c, d))
    mir, _ = nc.class_pairing_ratios(np.ones(c), means, head, center=False)
    chance, _ = nc.class_pairing_chance(np.ones(c), means, head, center=False)
    spread = ref.permuted_mir(means, head, head_permutations(c, 200, seed=1)).std()
    assert float(to_numpy(mir)) - float(to_numpy(chance)) > 3 * spread


def test_absent_classes_keep_their_rows():
    present = np.array([True, False, True, True, False])
    for perm in head_permutations(5, 20, present=present):
        assert perm[1] == 1 and perm[4] == 4
        assert sorted(perm[present]) == [0, 2, 3]


@pytest.mark.parametrize(
    "kwargs, name",
    [({"baseline": "random"}, "`baseline`"), ({"permutations": 0}, "`permutations`"),
     ({"permutations": 2.0}, "`permutations`")],
)  # fmt: skip
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        metrics.ClassMIR(**kwargs)
