"""The supervised recipe's final table and `report.png`."""

import math

from keras_nc import theory
from keras_nc.plotting import collapse_panels, draw_panel, new_figure


def summary_rows(test, monitor_row, num_classes):
    """`(measure, final value, value at Neural Collapse)` rows of the final table.

    Args:
        test: dict of `model.evaluate(..., return_dict=True)` on the test set.
        monitor_row: the last `CollapseMonitor.history` row.
        num_classes: `C`.
    """
    mir_star = theory.mir_at_collapse(num_classes) if num_classes >= 3 else math.nan
    log_c = theory.entropy_at_collapse(num_classes) if num_classes >= 3 else math.nan
    return [
        ("test accuracy", test["accuracy"], math.nan),
        ("MIR, sample-head (test batches)", test["mir"], mir_star),
        ("HDR, sample-head (test batches)", test["hdr"], 0.0),
        ("MIR, class pairing (monitor)", monitor_row["mir"], mir_star),
        ("HDR, class pairing (monitor)", monitor_row["hdr"], 0.0),
        ("feature entropy (monitor)", monitor_row["feature_entropy"], log_c),
        ("head entropy", monitor_row["head_entropy"], log_c),
        ("NC1 within-class variability", monitor_row["nc1"], 0.0),
        ("NC2 ETF error", monitor_row["etf_error"], 0.0),
        ("NC2 equinorm", monitor_row["equinorm"], 0.0),
        ("NC3 self-duality", monitor_row["self_duality"], 0.0),
        ("NC4 NCC agreement", monitor_row["ncc_agreement"], 1.0),
    ]


def format_table(rows):
    """Plain-text table of `summary_rows`."""
    lines = [f"{'measure':<34}{'final':>10}{'at collapse':>14}"]
    for name, value, target in rows:
        target_text = "" if math.isnan(target) else f"{target:.4f}"
        lines.append(f"{name:<34}{value:>10.4f}{target_text:>14}")
    return "\n".join(lines)


def plot_report(history, monitor_rows, num_classes, path, title=None, validation_every=1):
    """Writes `report.png`: training curves and every collapse measure over epochs.

    Args:
        history: `keras.callbacks.History.history` (per-epoch lists).
        monitor_rows: `CollapseMonitor.history`.
        num_classes: `C`, for the reference lines MIR*, HDR* = 0, log(C-1).
        path: output PNG path.
        title: figure title.
        validation_every: `fit`'s `validation_freq`: `val_*` values exist for
            every k-th epoch only.
    """
    epochs = list(range(1, len(history["loss"]) + 1))
    checks = [row["epoch"] for row in monitor_rows]

    validated = epochs[validation_every - 1 :: validation_every]

    def logged(*keys):
        return {
            key: (validated if key.startswith("val_") else epochs, history[key])
            for key in keys
            if key in history
        }

    def monitored(*keys, prefix="monitor "):
        return {prefix + key: (checks, [row[key] for row in monitor_rows]) for key in keys}

    panels = collapse_panels(num_classes)
    mir_ref, hdr_ref, entropy_ref = panels[0][2], panels[1][2], panels[2][2]
    figure_panels = [
        ("Loss", logged("loss", "val_loss"), None, None),
        ("Accuracy", logged("accuracy", "val_accuracy"), 1.0, "1"),
        ("MIR (batches: sample-head; monitor: class)",
         {**logged("mir", "val_mir"), **monitored("mir")}, mir_ref, "MIR*"),
        ("HDR (batches: sample-head; monitor: class)",
         {**logged("hdr", "val_hdr"), **monitored("hdr")}, hdr_ref, "HDR* = 0"),
        ("Matrix entropy (nats)",
         {**logged("matrix_entropy"), **monitored("feature_entropy", "head_entropy")},
         entropy_ref, "log(C-1)"),
    ]  # fmt: skip
    for name, keys, ref, ref_label in panels[3:]:
        figure_panels.append((name, monitored(*keys, prefix=""), ref, ref_label))
    fig, axes = new_figure(2, 4, (20, 8.5))
    for ax, (name, curves, ref, ref_label) in zip(axes.flat, figure_panels, strict=True):
        draw_panel(ax, name, curves, ref, ref_label, log_scale=name.startswith(("NC1", "Loss")))
    fig.suptitle(title or "Training and Neural Collapse")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
