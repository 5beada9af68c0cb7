"""The supervised recipe's final table and `report.png`.

The table gives each measure's final value, its chance level where it has one
(MIR and HDR: the same features against the head rows of relabelled classes)
and its value at Neural Collapse, and ends with a verdict that rests on NC1
and the ETF error only: a MIR or HDR near its collapse value is necessary for
collapse, not sufficient (random rows come close to both, and MIR can exceed
MIR*; see the "Reading the measures" section of the Concepts page).
"""

import math

import keras
import numpy as np

from keras_nc import theory
from keras_nc.metrics import HDR, MIR
from keras_nc.ops import class_pairing_chance
from keras_nc.plotting import collapse_panels, draw_panel, new_figure

# NC1 and the ETF error both below this: the verdict says "collapsed" (a rule of
# thumb of this recipe, not a theorem: both are 0 at exact collapse).
COLLAPSE_THRESHOLD = 0.1


def relabellings(num_classes, permutations=4, seed=0):
    """`(P, C)` random permutations of the classes (fixed by `seed`)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(num_classes) for _ in range(permutations)])


def sample_pairing_chance(features, labels, head_weights, sample_size=128, permutations=None):
    """Chance level of the sample-pairing MIR and HDR, as `MIR()`/`HDR()` read them.

    The rows are read in their order in groups of `sample_size` (as the metrics
    gather them during `evaluate`), each time with the labels mapped by a
    permutation of the classes: each sample is paired with another class's
    head row, the block structure of both Grams is kept.

    Args:
        features: `(n, d)` features.
        labels: `(n,)` integer labels.
        head_weights: `(C, d)` head rows.
        sample_size: rows per group (the metrics' `sample_size`).
        permutations: `(P, C)` class permutations (default `relabellings(C)`).

    Returns:
        `(mir_chance, hdr_chance)`: Python floats, means over the permutations.
    """
    labels = np.asarray(labels).astype("int32")
    head = np.asarray(head_weights, "float32")
    if permutations is None:
        permutations = relabellings(head.shape[0])
    values = []
    for perm in np.asarray(permutations):
        metrics = [MIR(sample_size=sample_size), HDR(sample_size=sample_size)]
        for metric in metrics:
            metric.update_state(perm[labels], features=features, head_weights=head)
        values.append([float(keras.ops.convert_to_numpy(m.result())) for m in metrics])
    mir, hdr = np.mean(values, axis=0)
    return float(mir), float(hdr)


def class_chance(features, labels, head_weights, num_classes):
    """Chance level of the class-pairing MIR and HDR (`keras_nc.ops.class_pairing_chance`)."""
    features = np.asarray(features, "float64")
    labels = np.asarray(labels).astype("int64")
    counts = np.bincount(labels, minlength=num_classes).astype("float32")
    sums = np.zeros((num_classes, features.shape[1]))
    np.add.at(sums, labels, features)
    mir, hdr = class_pairing_chance(counts, sums.astype("float32"), head_weights)
    return float(keras.ops.convert_to_numpy(mir)), float(keras.ops.convert_to_numpy(hdr))


def summary_rows(test, monitor_row, num_classes, sample_chance=None, class_chance=None):
    """`(measure, final value, chance level, value at Neural Collapse)` rows of the table.

    Args:
        test: dict of `model.evaluate(..., return_dict=True)` on the test set.
        monitor_row: the last `CollapseMonitor.history` row.
        num_classes: `C`.
        sample_chance: optional `(mir, hdr)` chance levels of the test set's
            sample pairing (`sample_pairing_chance`).
        class_chance: optional `(mir, hdr)` chance levels of the monitored
            subset's class pairing (`class_chance`).
    """
    nan = math.nan
    mir_star = theory.mir_at_collapse(num_classes) if num_classes >= 3 else nan
    log_c = theory.entropy_at_collapse(num_classes) if num_classes >= 3 else nan
    sample_chance = sample_chance or (nan, nan)
    class_chance = class_chance or (nan, nan)
    return [
        ("test accuracy", test["accuracy"], nan, nan),
        ("MIR, sample-head (test)", test["mir"], sample_chance[0], mir_star),
        ("HDR, sample-head (test)", test["hdr"], sample_chance[1], 0.0),
        ("MIR, class pairing (monitor)", monitor_row["mir_class"], class_chance[0], mir_star),
        ("HDR, class pairing (monitor)", monitor_row["hdr_class"], class_chance[1], 0.0),
        ("feature entropy (monitor)", monitor_row["matrix_entropy"], nan, log_c),
        ("head entropy", monitor_row["head_entropy"], nan, log_c),
        ("NC1 within-class variability", monitor_row["nc1"], nan, 0.0),
        ("NC2 ETF error", monitor_row["etf_error"], nan, 0.0),
        ("NC2 equinorm", monitor_row["equinorm"], nan, 0.0),
        ("NC3 self-duality", monitor_row["self_duality"], nan, 0.0),
        ("NC4 NCC agreement", monitor_row["ncc_agreement"], nan, 1.0),
    ]


def _flag(name, value, chance, target):
    if name.startswith("MIR") and not math.isnan(target) and value > target:
        return "above MIR*: not a maximum"
    if name.startswith(("MIR", "HDR")) and not math.isnan(chance):
        if abs(value - chance) < 0.01:
            return "at chance"
    return ""


def verdict(rows):
    """One line on Neural Collapse, from NC1 and the ETF error only."""
    values = {name: value for name, value, _, _ in rows}
    nc1, etf = values["NC1 within-class variability"], values["NC2 ETF error"]
    duality = values["NC3 self-duality"]
    measured = f"NC1 {nc1:.3g}, ETF error {etf:.3g}, self-duality {duality:.3g}"
    if nc1 < COLLAPSE_THRESHOLD and etf < COLLAPSE_THRESHOLD:
        return f"Neural Collapse: shown ({measured}; NC1 and ETF error < {COLLAPSE_THRESHOLD})."
    return (
        f"Neural Collapse: not shown ({measured}; it needs NC1 and the ETF error near 0, "
        f"here < {COLLAPSE_THRESHOLD}). MIR and HDR near their collapse values are "
        "necessary, not sufficient."
    )


def format_table(rows):
    """Plain-text table of `summary_rows`, with flags and the verdict."""
    lines = [f"{'measure':<32}{'final':>10}{'chance':>10}{'at collapse':>14}  note"]
    for name, value, chance, target in rows:
        chance_text = "" if math.isnan(chance) else f"{chance:.4f}"
        target_text = "" if math.isnan(target) else f"{target:.4f}"
        note = _flag(name, value, chance, target)
        line = f"{name:<32}{value:>10.4f}{chance_text:>10}{target_text:>14}  {note}"
        lines.append(line.rstrip())
    lines.append(verdict(rows))
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
         {**logged("mir", "val_mir"), **monitored("mir_class")}, mir_ref, "MIR*"),
        ("HDR (batches: sample-head; monitor: class)",
         {**logged("hdr", "val_hdr"), **monitored("hdr_class")}, hdr_ref, "HDR* = 0"),
        ("Matrix entropy (nats)",
         {**logged("matrix_entropy"), **monitored("matrix_entropy", "head_entropy")},
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
