"""The pruning study's figure: accuracy, MIR, HDR and NC1 against sparsity, per variant.

Example:

```python
from studies.pruning import cli, figure

figure.figure(cli.records(cli.parse([])), "outputs/pruning.png")
```
"""

from studies import docs, plots
from studies.pruning.table import MEASURES, VARIANTS, sparsities, values

PANELS = [(key, title, scale) for key, title, scale in MEASURES if key != "loss"]
COLORS = {"direct": "C3", "bn": "C1", "tuned": "C0"}


def _panel(axis, records, key, title, scale):
    grid = sparsities(records)
    for variant, label in VARIANTS:
        points = [values(records, variant, s, key, scale) for s in grid]
        plots.seeds_and_means(axis, grid, points, COLORS[variant], label, size=8, alpha=0.4)
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
