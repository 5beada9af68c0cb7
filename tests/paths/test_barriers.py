"""`keras_nc.paths.barrier`, `loss_barrier`, `accuracy_barrier` on hand-made paths."""

import math

import pytest

from keras_nc import paths


def _path(key, values, alphas=(0.0, 0.25, 0.5, 0.75, 1.0)):
    return [{"alpha": a, key: v} for a, v in zip(alphas, values, strict=True)]


def test_the_barrier_is_the_largest_excess_over_the_line_between_the_end_points():
    # Ends 1 and 3: the line is 1.5, 2, 2.5 at 0.25, 0.5, 0.75; excesses 0.5, 2, -0.5.
    # Dyadic values: every operation is exact in binary floating point.
    path = _path("loss", [1.0, 2.0, 4.0, 2.0, 3.0])
    assert paths.loss_barrier(path) == 2.0
    assert paths.barrier(path, "loss") == 2.0
    # Frankle et al.'s mean of the end points (2) would give 4 - 2 = 2 as well only at 0.5;
    # at 0.25 the line (1.5) and the mean (2) differ: the line is used.
    assert paths.barrier(_path("loss", [1.0, 2.5, 2.0, 2.5, 3.0]), "loss") == 1.0


def test_accuracy_barrier_is_the_shortfall_under_the_line():
    path = _path("accuracy", [0.75, 0.5, 0.25, 0.75, 0.75])
    assert paths.accuracy_barrier(path) == 0.5
    assert paths.barrier(path, "accuracy", higher_is_better=True) == 0.5
    # A path above its line has no barrier: 0, never negative.
    assert paths.accuracy_barrier(_path("accuracy", [0.5, 0.75, 1.0, 0.75, 0.5])) == 0.0
    assert paths.loss_barrier(_path("loss", [1.0, 0.5, 0.25, 0.5, 1.0])) == 0.0


def test_points_outside_the_segment_do_not_count_and_order_does_not_matter():
    path = _path("loss", [9.0, 1.0, 2.0, 1.0, 9.0], alphas=(-0.5, 0.0, 0.5, 1.0, 1.5))
    assert paths.loss_barrier(list(reversed(path))) == 1.0


def test_nan_on_the_segment_gives_nan():
    assert math.isnan(paths.loss_barrier(_path("loss", [1.0, 1.0, math.nan, 1.0, 1.0])))


def test_errors_name_the_missing_end_point_and_the_available_keys():
    with pytest.raises(ValueError, match=r"alpha = 0 and alpha = 1.*\[0.0, 0.5\]"):
        paths.loss_barrier([{"alpha": 0.0, "loss": 1.0}, {"alpha": 0.5, "loss": 1.0}])
    path = [{"alpha": a, "loss": 1.0, "mir": 0.5} for a in (0.0, 1.0)]
    with pytest.raises(ValueError, match=r"no 'accuracy' values; its keys: \['loss', 'mir'\]"):
        paths.accuracy_barrier(path)
