"""`report.png` of the grokking recipe: every curve on a log step axis."""

from keras_nc import theory
from keras_nc.plotting import draw_panel, new_figure


def plot_report(history, num_classes, path, title=None):
    """Writes `report.png`: loss, accuracy and the collapse measures of train and test.

    Args:
        history: `{column: [values]}` with a `step` column
            (`recipes.grokking.progress.read_history`).
        num_classes: `p`, for MIR* and log(C - 1).
        path: output PNG path.
        title: figure title.
    """
    steps = history["step"]

    def curves(*keys):
        return {key: (steps, history[key]) for key in keys if key in history}

    mir_star, log_c = theory.mir_at_collapse(num_classes), theory.entropy_at_collapse(num_classes)
    panels = [
        ("Loss", curves("train_loss", "val_loss"), None, None, True),
        ("Accuracy", curves("train_accuracy", "val_accuracy"), 1.0, "1", False),
        ("NC1 (log scale)", curves("train_nc1", "val_nc1"), None, None, True),
        ("Sample-head MIR", curves("train_mir", "val_mir"), mir_star, "MIR*", False),
        ("Sample-head HDR", curves("train_hdr", "val_hdr"), 0.0, "HDR* = 0", False),
        ("Class MIR", curves("train_mir_class", "val_mir_class"), mir_star, "MIR*", False),
        ("Class HDR", curves("train_hdr_class", "val_hdr_class"), 0.0, "HDR* = 0", False),
        ("Matrix entropy (nats)",
         curves("train_matrix_entropy", "val_matrix_entropy", "train_head_entropy"),
         log_c, "log(C-1)", False),
    ]  # fmt: skip
    fig, axes = new_figure(2, 4, (20, 8.5))
    for ax, (name, drawn, ref, ref_label, log_scale) in zip(axes.flat, panels, strict=True):
        draw_panel(ax, name, drawn, ref, ref_label, log_scale=log_scale)
        ax.set_xscale("log")
        ax.set_xlabel("step")
    fig.suptitle(title or "Grokking")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
