"""The label-smoothing study's figure: the measures against s, with their values at collapse.

Example:

```python
from studies.label_smoothing import cli, figure

figure.figure(cli.records(cli.parse([])), cli.SMOOTHINGS, "outputs/label_smoothing.png")
```
"""

import numpy as np

from keras_nc import theory
from studies import docs, plots
from studies.label_smoothing.table import NUM_CLASSES, values

# (title, [(split, key, label)], reference): one panel each; the reference is drawn as a
# dashed line: "floor" (the smoothed cross-entropy at collapse, per s), "mir" (MIR*), or a number.
PANELS = (
    ("accuracy (%)", [("test", "accuracy", "test"), ("train", "accuracy", "train")], None),
    ("train loss (smoothed CE)", [("train", "loss", "train")], "floor"),
    ("NC1", [("test", "nc1", "test"), ("train", "nc1", "train")], 0.0),
    ("MIR (test split)", [("test", "mir", "sample"), ("test", "mir_class", "class")], "mir"),
    ("HDR (test split)", [("test", "hdr", "sample"), ("test", "hdr_class", "class")], 0.0),
)


def _reference(axis, reference, smoothings):
    if reference is None:
        return
    grid = np.linspace(0.0, max(smoothings), 61)
    if reference == "floor":
        floor = [theory.cross_entropy_at_collapse(NUM_CLASSES, s) for s in grid]
        axis.plot(grid, floor, "k--", lw=1, label="at collapse (theory)")
        return
    level = theory.mir_at_collapse(NUM_CLASSES) if reference == "mir" else reference
    axis.axhline(level, color="k", ls="--", lw=1, label="at collapse (theory)")


def _panel(axis, records, smoothings, series, reference):
    colors = ["C0", "C1"]
    for index, (split, key, label) in enumerate(series):
        scale = 100.0 if key == "accuracy" else 1.0
        points = [values(records, s, split, key, scale) for s in smoothings]
        plots.seeds_and_means(axis, smoothings, points, colors[index], f"{label} (mean, 95% t)")
    _reference(axis, reference, smoothings)


def _history(axis, records, smoothings, key="mir_class"):
    """The training split's `key` per epoch, the mean over the seeds of each smoothing."""
    cmap = docs.pyplot().get_cmap("viridis")
    for index, s in enumerate(smoothings):
        curves = [r["history"][key] for (smoothing, _), r in records.items() if smoothing == s]
        if not curves:
            continue
        length = min(len(curve) for curve in curves)
        mean = np.mean([curve[:length] for curve in curves], axis=0)
        color = cmap(index / max(1, len(smoothings) - 1))
        axis.plot(np.arange(1, length + 1), mean, color=color, label=f"s = {s:g}")
    _reference(axis, "mir", smoothings)
    axis.set_title("class MIR during training (train split)", fontsize=10)
    axis.set_xlabel("epoch")


def figure(records, smoothings, path):
    """One panel per measure of `PANELS` against the smoothing s, and the class MIR per epoch."""
    plt = docs.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(12.0, 7.0))
    axes = axes.ravel()
    _history(axes[-1], records, smoothings)
    axes[-1].grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    for axis, (title, series, reference) in zip(axes[:-1], PANELS, strict=True):
        _panel(axis, records, smoothings, series, reference)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("label smoothing s")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    seeds = sorted({seed for _, seed in records})
    fig.suptitle(
        f"Conv net on the Fashion-MNIST subset, seeds {', '.join(map(str, seeds))}: final "
        "values (dots: seeds); dashed: the values at Neural Collapse (keras_nc.theory)",
        fontsize=9,
    )
    fig.tight_layout()
    docs.save_figure(fig, path, dpi=100)
