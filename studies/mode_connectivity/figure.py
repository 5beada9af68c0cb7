"""The linear-mode-connectivity study's figure: the measures along the path, per spawn epoch.

One panel per measure (test loss, accuracy, MIR, HDR, NC1) against alpha:
thin lines for the seeds, a thick line for their mean, one colour per spawn
epoch k.

Example:

```python
from studies.mode_connectivity import cli, figure

figure.figure(cli.records(cli.parse([])), cli.SPAWN_EPOCHS, "outputs/mode_connectivity.png")
```
"""

import numpy as np

from studies import docs

PANELS = (
    ("loss", "test loss", 1.0),
    ("accuracy", "test accuracy (%)", 100.0),
    ("mir", "MIR (test)", 1.0),
    ("hdr", "HDR (test)", 1.0),
    ("nc1", "NC1 (test)", 1.0),
)


def curves(records, spawn_epoch, key, scale=1.0):
    """`(alphas, [values per seed])` of one spawn epoch, the paths' common alphas."""
    paths = [r["path"] for (k, _), r in sorted(records.items()) if k == spawn_epoch]
    if not paths:
        return [], []
    alphas = [row["alpha"] for row in paths[0]]
    values = [[np.nan if row.get(key) is None else scale * row[key] for row in p] for p in paths]
    return alphas, values


def figure(records, spawn_epochs, path):
    """Draws `PANELS` against alpha for each spawn epoch and saves the figure to `path`."""
    plt = docs.pyplot()
    fig, axes = plt.subplots(1, len(PANELS), figsize=(3.2 * len(PANELS), 3.4))
    for axis, (key, title, scale) in zip(axes, PANELS, strict=True):
        for index, k in enumerate(spawn_epochs):
            alphas, values = curves(records, k, key, scale)
            if not values:
                continue
            color = f"C{index}"
            for seed_values in values:
                axis.plot(alphas, seed_values, color=color, lw=0.6, alpha=0.4)
            name = "independent" if k < 0 else f"k = {k}"
            axis.plot(alphas, np.nanmean(values, axis=0), color=color, lw=2, label=name)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("alpha (child A to child B)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    seeds = sorted({seed for _, seed in records})
    fig.suptitle(
        "Children spawned at epoch k (or independent), their segment on the Fashion-MNIST "
        "test subset "
        f"(BatchNormalization recomputed), seeds {', '.join(map(str, seeds))}: thin lines "
        "seeds, thick their mean",
        fontsize=9,
    )
    fig.tight_layout()
    docs.save_figure(fig, path, dpi=100)
