"""What the studies' figures share: each seed as a dot, the seeds' mean with its 95% t interval.

Example:

```python
import matplotlib.pyplot as plt

from studies import plots

axis = plt.figure().add_subplot()
plots.seeds_and_means(axis, [0.0, 0.5], [[0.81, 0.84, 0.86], [0.70, 0.75]], color="C0",
                      label="test accuracy")
```
"""

from studies import statistics


def seeds_and_means(axis, xs, points, color, label, size=10, alpha=0.5):
    """Draws `points[i]` (one value per seed, `None` or NaN left out) at `xs[i]`.

    Each finite value is a dot; where any is left, the mean is a marker with
    its 95% Student-t interval as the error bar (`studies.statistics`; no bar
    for a single value), joined across `xs`.
    """
    drawn, means, halves = [], [], []
    for x, values in zip(xs, points, strict=True):
        values = statistics.finite(values)
        axis.scatter([x] * len(values), values, s=size, color=color, alpha=alpha)
        interval = statistics.mean_interval(values)
        if interval.count:
            drawn.append(x)
            means.append(interval.mean)
            halves.append(0.0 if interval.count < 2 else interval.half_width)
    axis.errorbar(drawn, means, yerr=halves, color=color, marker="o", ms=4, capsize=3,
                  label=label)  # fmt: skip
