"""`studies.statistics`: the small-sample intervals and tests behind the studies' tables.

References are closed forms (Student's t with two degrees of freedom has the
quantile `t_p = (2p - 1) sqrt(2 / (4 p (1 - p)))`) and hand-computed ranks, not
SciPy's own output. Backend-independent: run on TensorFlow only.
"""

import math

import numpy as np
import pytest

from studies import statistics
from tests.helpers import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "tensorflow", reason="backend-independent NumPy/SciPy")

# tol: a handful of float64 operations on values of order 1.
FLOAT64_RTOL = 1e-12
# tol: SciPy's regularised incomplete beta function is accurate to ~1e-12 relative.
P_VALUE_RTOL = 1e-9
# tol: rho = 1 at n = 6 has exact permutation p = 2/720 = 0.0028; 10,000 permutations
# estimate it within a few 1e-3, far below this bound.
SIGNIFICANT = 0.01


def t_quantile_two_dof(p):
    return (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p)))


def test_three_values_use_the_t_quantile_with_two_degrees_of_freedom():
    values = [0.81, 0.84, 0.86]
    interval = statistics.mean_interval(values)
    standard_error = np.std(values, ddof=1) / math.sqrt(3)
    expected = t_quantile_two_dof(0.975) * standard_error
    assert interval.mean == pytest.approx(np.mean(values), rel=FLOAT64_RTOL)
    assert interval.half_width == pytest.approx(expected, rel=FLOAT64_RTOL)
    assert interval.contains(0.84) and not interval.contains(0.9)
    assert interval.text(2) == f"0.84 ± {expected:.2f}"


def test_missing_and_non_finite_values_are_dropped_and_said():
    assert statistics.mean_interval([None, float("nan"), 2.0]).text() == "2.000"
    assert statistics.mean_interval([]).text() == "n/a"
    assert statistics.mean_interval([None]).count == 0


def test_paired_difference_is_the_one_sample_test_of_the_differences():
    a, b = [0.90, 0.85, 0.88], [0.80, 0.81, 0.79]
    paired = statistics.paired_difference(a, b)
    d = np.subtract(a, b)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    # Two-sided p of t with 2 degrees of freedom: 1 - t / sqrt(2 + t^2) (closed form).
    assert paired.p_value == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), rel=P_VALUE_RTOL)
    assert paired.difference.mean == pytest.approx(d.mean(), rel=FLOAT64_RTOL)
    # Identical settings: no test, no claim.
    assert math.isnan(statistics.paired_difference(a, a).p_value)
    with pytest.raises(ValueError):
        statistics.paired_difference([1.0, 2.0], [1.0])


def test_spearman_of_a_monotone_relation_is_one_and_of_a_constant_is_undefined():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    result = statistics.spearman(x, [v**3 for v in x])
    assert result.rho == pytest.approx(1.0, rel=FLOAT64_RTOL)
    # Exact permutation p of rho = 1 at n = 6: 2 / 720 orderings reach |rho| = 1.
    assert result.p_value < SIGNIFICANT
    assert statistics.spearman(x, [-v for v in x]).rho == pytest.approx(-1.0, rel=FLOAT64_RTOL)
    assert math.isnan(statistics.spearman(x, [1.0] * 6).rho)
    assert statistics.spearman([1.0, 2.0], [2.0, 1.0]).text() == "n/a"
