"""The early-stopping study's figure: each seed's per-epoch curves with each rule's stop marked.

One row per recorded seed; panels: test accuracy, validation loss, MIR, HDR
and NC1 (arXiv 2409.16767) over the epochs of the full run; a dashed line
per monitor at the last epoch `EarlyStopping` (patience `PATIENCE`) trains
and, on the test-accuracy panel, a marker at the epoch whose weights it
restores.

Example:

```python
from studies.early_stopping import cli, figure

runs, _ = cli.records(cli.parse([]))
figure.draw(runs, "early_stopping.png")
```
"""

from studies import docs
from studies.early_stopping import replay, table

PATIENCE = 5
PANELS = (
    ("test_accuracy", "test accuracy"),
    ("val_loss", "val loss"),
    ("val_mir", "val MIR"),
    ("val_hdr", "val HDR"),
    ("val_nc1", "val NC1 (log)"),
)
# Colour, marker and size per monitor: coinciding markers stay visible (largest first).
STYLES = dict(
    zip(
        replay.MONITORS,
        (("C0", "o", 11), ("C1", "s", 9), ("C2", "^", 7), ("C3", "D", 5), ("C4", "v", 4)),
        strict=True,
    )
)


def draw_seed(axes, seed, history, model):
    """One row: the seed's curves, each rule's last epoch trained and restored epoch."""
    stops = {m: replay.replay(history, model, m, PATIENCE) for m in replay.MONITORS}
    epochs = range(1, len(history["test_accuracy"]) + 1)
    for ax, (key, title) in zip(axes, PANELS, strict=True):
        ax.plot(epochs, history[key], color="k", lw=1.2)
        if key == "val_nc1":
            ax.set_yscale("log")
        for monitor, stop in stops.items():
            ax.axvline(stop.epochs_trained, color=STYLES[monitor][0], ls="--", lw=1)
        ax.set_title(f"seed {seed}: {title}", fontsize=9)
    for monitor, stop in stops.items():
        color, marker, size = STYLES[monitor]
        axes[0].plot(
            stop.best_epoch + 1,
            history["test_accuracy"][stop.best_epoch],
            marker,
            color=color,
            markersize=size,
            label=f"{monitor}: stop {stop.epochs_trained}, restore {stop.best_epoch + 1}",
        )
    axes[0].legend(fontsize=6, loc="lower right")


def draw(runs, path, model=None):
    """Draws every recorded seed's row; writes the PNG to `path`."""
    plt = docs.pyplot()
    model = table.replay_model() if model is None else model
    seeds = sorted(runs)
    fig, axes = plt.subplots(len(seeds), len(PANELS), figsize=(17, 3 * len(seeds)), squeeze=False)
    for row, seed in zip(axes, seeds, strict=True):
        draw_seed(row, seed, runs[seed]["history"], model)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.suptitle(
        f"EarlyStopping(mode='auto', patience={PATIENCE}, restore_best_weights=True) per "
        "monitor: dashed, last epoch trained; marker, restored epoch",
        fontsize=10,
    )
    fig.tight_layout()
    docs.save_figure(fig, path)
