"""The pruning study's figure: accuracy, MIR, HDR and NC1 against sparsity, per variant.

Example:

```python
from studies.pruning import cli, figure

figure.figure(cli.records(cli.parse([])), "outputs/pruning.png")
```
"""

from studies import docs, statistics
from studies.pruning.table import MEASURES, VARIANTS, sparsities, values

PANELS = [(key, title, scale) for key, title, scale in MEASURES if key != "loss"]
COLORS = {"direct": "C3", "bn": "C1", "tuned": "C0"}


def _panel(axis, records, key, title, scale):
    grid = sparsities(records)
    for variant, label in VARIANTS:
        xs, means, halves = [], [], []
        for s in grid:
            points = statistics.finite(values(records, variant, s, key, scale))
            axis.scatter([s] * len(points), points, s=8, color=COLORS[variant], alpha=0.4)
            interval = statistics.mean_interval(points)
            if interval.count:
                xs.append(s)
                means.append(interval.mean)
                halves.append(0.0 if interval.count < 2 else interval.half_width)
        axis.errorbar(xs, means, yerr=halves, color=COLORS[variant], marker="o", ms=4,
                      capsize=3, label=label)  # fmt: skip
    if key == "nc1":  # from about 1 to 1e5 at 0.95 without fine-tuning
        axis.set_yscale("log")
    axis.set_title(f"{title} (test split)", fontsize=10)
    axis.set_xlabel("sparsity (fraction of kernel weights pruned)")
    axis.grid(alpha=0.3)


def figure(records, path):
    """One panel per measure against sparsity (mean, 95% t interval, seeds as dots)."""
    plt = docs.pyplot()
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.0 * len(PANELS), 3.6))
    for axis, (key, title, scale) in zip(axes, PANELS, strict=True):
        _panel(axis, records, key, title, scale)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "Global magnitude pruning of the conv net (Fashion-MNIST subset, 3 seeds)", fontsize=11
    )
    fig.tight_layout()
    docs.save_figure(fig, path)
