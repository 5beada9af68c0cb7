"""Loss and accuracy barriers of an interpolation path.

The barrier of a metric along the segment between two models is the largest
excess of the metric over the straight line between its values at the end
points (for a loss; the largest shortfall for an accuracy):

    B = max over alpha in [0, 1] of
        m(alpha) - ((1 - alpha) m(0) + alpha m(1))

as used by Entezari, Sedghi, Saukh and Neyshabur ("The Role of Permutation
Invariance in Linear Mode Connectivity of Neural Networks", ICLR 2022).
Frankle, Dziugaite, Roy and Carbin ("Linear Mode Connectivity and the Lottery
Ticket Hypothesis", ICML 2020) subtract the mean of the end points'
values, `m(alpha) - (m(0) + m(1)) / 2`, instead of the line: the two agree
when the end points' values are equal (as for two children of one parent,
trained alike). Two models are linearly mode connected when the barrier is
about 0 (docs/mode_connectivity.md).
"""

import math


def barrier(path, key, higher_is_better=False):
    """The barrier of `key` along `path` (see the module docstring).

    Args:
        path: rows `{"alpha": ..., key: ...}`, as `interpolation_path`
            returns; it must contain `alpha = 0` and `alpha = 1`. Points
            outside `[0, 1]` (extrapolation) are not part of the barrier.
        key: the metric read (e.g. `"loss"`).
        higher_is_better: False for a loss (the excess over the line), True
            for an accuracy (the shortfall under it).

    Returns:
        A Python float, `>= 0` since the end points are on the path; NaN when
        a value on `[0, 1]` is NaN.

    Raises:
        ValueError: when `path` lacks `alpha = 0` or `alpha = 1`, or a row
            lacks `key` (the message names the keys available).

    Example:

    >>> from keras_nc.paths import barrier
    >>> path = [{"alpha": 0.0, "loss": 1.0}, {"alpha": 0.5, "loss": 2.5},
    ...         {"alpha": 1.0, "loss": 2.0}]
    >>> barrier(path, "loss")
    1.0
    """
    rows = list(path)
    missing = [row for row in rows if key not in row]
    if missing:
        available = sorted(key for key in missing[0] if key != "alpha")
        raise ValueError(f"The path has no {key!r} values; its keys: {available}.")
    ends = {}
    for row in rows:
        if float(row["alpha"]) in (0.0, 1.0):
            ends[float(row["alpha"])] = float(row[key])
    if len(ends) < 2:
        raise ValueError(
            "A barrier needs the path's end points, alpha = 0 and alpha = 1; the path's "
            f"alphas: {[row['alpha'] for row in rows]}."
        )
    sign = -1.0 if higher_is_better else 1.0
    excess = 0.0
    for row in rows:
        alpha = float(row["alpha"])
        if not 0.0 <= alpha <= 1.0:
            continue
        value = float(row[key])
        line = (1.0 - alpha) * ends[0.0] + alpha * ends[1.0]
        if math.isnan(value) or math.isnan(line):
            return math.nan
        excess = max(excess, sign * (value - line))
    return excess


def loss_barrier(path, key="loss"):
    """The loss barrier of `path`: `barrier(path, key)`, the excess over the line.

    Example:

    >>> from keras_nc.paths import loss_barrier
    >>> loss_barrier([{"alpha": 0.0, "loss": 0.25}, {"alpha": 0.5, "loss": 0.75},
    ...               {"alpha": 1.0, "loss": 0.25}])
    0.5
    """
    return barrier(path, key, higher_is_better=False)


def accuracy_barrier(path, key="accuracy"):
    """The accuracy barrier of `path`: the shortfall under the line between the ends.

    Example:

    >>> from keras_nc.paths import accuracy_barrier
    >>> accuracy_barrier([{"alpha": 0.0, "accuracy": 0.75}, {"alpha": 0.5, "accuracy": 0.25},
    ...                   {"alpha": 1.0, "accuracy": 0.75}])
    0.5
    """
    return barrier(path, key, higher_is_better=True)
