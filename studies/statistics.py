"""Small-sample statistics for the studies' tables: t intervals, paired tests, rank correlation.

With three seeds per cell, a mean is reported with its 95% Student-t interval
(`mean_interval`, `t(0.975, 2) = 4.30`, so the interval is wide on purpose),
a difference between two settings on the same seeds with a paired t-test
(`paired_difference`), and an association between two measures with
Spearman's rank correlation and its permutation p-value (`spearman`). An
interval that contains 0 is reported as "no effect detected at n = 3", never
as an effect.

Example:

>>> from studies import statistics
>>> interval = statistics.mean_interval([1.0, 2.0, 3.0])
>>> round(interval.mean, 3), round(interval.half_width, 3)
(2.0, 2.484)
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with the half-width of its Student-t interval (`nan` for fewer than two values)."""

    mean: float
    half_width: float
    count: int

    @property
    def low(self):
        return self.mean - self.half_width

    @property
    def high(self):
        return self.mean + self.half_width

    def contains(self, value):
        return self.low <= value <= self.high

    def text(self, digits=3):
        """`"m ± h"` (`"m"` alone for one value, `"n/a"` for none)."""
        if self.count == 0 or not math.isfinite(self.mean):
            return "n/a"
        if self.count == 1 or not math.isfinite(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def finite(values):
    """The finite values of `values` (records store non-finite numbers as `None`)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_interval(values, level=LEVEL):
    """The mean of the finite `values` and its two-sided Student-t interval at `level`."""
    values = finite(values)
    count = len(values)
    if count == 0:
        return Interval(math.nan, math.nan, 0)
    mean = float(np.mean(values))
    if count == 1:
        return Interval(mean, math.nan, 1)
    spread = float(np.std(values, ddof=1)) / math.sqrt(count)
    return Interval(mean, float(stats.t.ppf(0.5 + level / 2, count - 1)) * spread, count)


@dataclass(frozen=True)
class Paired:
    """A paired comparison: the mean difference `a - b`, its interval and t-test p-value."""

    difference: Interval
    p_value: float

    def text(self, digits=3):
        p = "n/a" if not math.isfinite(self.p_value) else f"{self.p_value:.2f}"
        return f"{self.difference.text(digits)} (p = {p})"


def paired_difference(a, b, level=LEVEL):
    """Paired t-test of `a - b` over seeds (pairs with a missing value are dropped)."""
    pairs = [
        (float(x), float(y))
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    differences = [x - y for x, y in pairs]
    interval = mean_interval(differences, level)
    if len(differences) < 2 or np.std(differences) == 0:
        return Paired(interval, math.nan)
    return Paired(interval, float(stats.ttest_1samp(differences, 0.0).pvalue))


@dataclass(frozen=True)
class Correlation:
    """Spearman's rank correlation with its exact permutation p-value (small n)."""

    rho: float
    p_value: float
    count: int

    def text(self):
        if not math.isfinite(self.rho):
            return "n/a"
        return f"{self.rho:+.2f} (p = {self.p_value:.2f}, n = {self.count})"


def spearman(x, y, permutations=10000, seed=0):
    """Spearman's rho of paired finite values, p-value by permutation of `y`'s ranks."""
    pairs = [
        (float(a), float(b))
        for a, b in zip(x, y, strict=True)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
    ]
    if len(pairs) < 3:
        return Correlation(math.nan, math.nan, len(pairs))
    xs, ys = (np.array(column) for column in zip(*pairs, strict=True))
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return Correlation(math.nan, math.nan, len(pairs))
    rho = float(stats.spearmanr(xs, ys).statistic)
    rng = np.random.default_rng(seed)
    ranks_x, ranks_y = stats.rankdata(xs), stats.rankdata(ys)
    null = np.array(
        [np.corrcoef(ranks_x, rng.permutation(ranks_y))[0, 1] for _ in range(permutations)]
    )
    p_value = float((np.sum(np.abs(null) >= abs(rho) - 1e-12) + 1) / (permutations + 1))
    return Correlation(rho, p_value, len(pairs))
