"""The semi-supervised study's figure: test accuracy per method, seed and label count.

Example:

```python
from studies.semi_supervised import cli, figure

args = cli.build_parser().parse_args([])
figure.figure(args, "outputs/ssl_study.png")  # from the committed records
```
"""

import shlex

import numpy as np

from studies import docs
from studies.semi_supervised import tables


def figure(args, path):
    """The accuracies of the finished grid cells, one column per label count.

    Top: test accuracy per method, one point per seed, at the last step (filled)
    and the best-validation epoch (hollow). Bottom: test accuracy against steps,
    the mean over the finished seeds.
    """
    plt = docs.pyplot()
    records = tables.grid_records(args)
    fig, axes = plt.subplots(
        2, len(args.labels), figsize=(5.5 * len(args.labels), 8.0), squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    options = shlex.split(f"{args.common} {args.extra}")
    dataset = options[options.index("--dataset") + 1] if "--dataset" in options else ""
    for column, labels in enumerate(args.labels):
        top, bottom = axes[0, column], axes[1, column]
        methods = [m for m in args.methods if (labels, m) in records]
        for i, method in enumerate(methods):
            runs = records[labels, method]
            seeds = sorted(runs)
            last = [100 * runs[s]["final"]["test_accuracy"] for s in seeds]
            best = [100 * runs[s]["best_validation"]["test_accuracy"] for s in seeds]
            offsets = np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else [0.0]
            color = colors[i % len(colors)]
            top.scatter(i + np.asarray(offsets), last, color=color, zorder=3)
            shifted = i + 0.04 + np.asarray(offsets)
            top.scatter(shifted, best, facecolors="none", edgecolors=color, zorder=3)
            top.hlines(np.mean(last), i - 0.3, i + 0.3, color=color)
            every = runs[seeds[0]]["settings"]["eval_every"]
            curves = [runs[s]["history"]["test_accuracy"] for s in seeds]
            length = min(len(curve) for curve in curves)
            mean = 100 * np.mean([curve[:length] for curve in curves], axis=0)
            steps = every * np.arange(1, length + 1)
            bottom.plot(steps, mean, color=color, marker=".", label=f"{method} ({len(seeds)})")
        top.set_xticks(range(len(methods)))
        top.set_xticklabels([m.replace(" + ", "\n+ ").replace(" (", "\n(") for m in methods])
        top.tick_params(axis="x", labelsize=7)
        if not methods:
            top.text(0.5, 0.5, "no finished cell yet", ha="center", transform=top.transAxes)
        top.set_title(f"{dataset or 'fashion_mnist'}, {labels * 10} labels")
        top.set_ylabel("test accuracy (%), EMA weights")
        top.grid(axis="y", alpha=0.3)
        bottom.set_xlabel("training step")
        bottom.set_ylabel("test accuracy (%), mean over seeds")
        bottom.grid(alpha=0.3)
        if methods:
            bottom.legend(fontsize=7, title="method (seeds)", title_fontsize=7)
    fig.suptitle(
        "Top: filled, last step (line: mean); hollow, best-validation epoch; one point per "
        "seed. Bottom: during training.",
        fontsize=9,
    )
    fig.tight_layout()
    docs.save_figure(fig, path, dpi=110)
