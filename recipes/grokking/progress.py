"""When does each curve move? Steps of the accuracy thresholds and of the measures' changes.

A run's `history.csv` has one row per logging interval (`epoch` 0, 1, ... for
steps `K`, `2K`, ...). `summarize` reports, from it:

- `val_accuracy_50`, `val_accuracy_95`: the first logged step at which test
  accuracy reaches 50% and 95% (`None`: never); `train_accuracy_99` likewise
  (memorisation);
- `<measure>_90` for the measures of `MEASURES`: the first logged step at
  which the measure has made 90% of its change from the first logged value
  (step `K`) to the last (NC1 on a log scale, since it falls by orders of
  magnitude). The last value is that of the run's last step, so a measure
  still moving when the run ends reaches "90%" late whatever it did before;
- `<measure>_min` / `<measure>_max` for the measures of `TURNS`: the step of
  the measure's extremum over the run (e.g. NC1's minimum, MIR's maximum),
  where a curve that first moves towards collapse turns back.
"""

import csv
import math

ACCURACY_THRESHOLDS = (("val_accuracy", 0.5), ("val_accuracy", 0.95), ("train_accuracy", 0.99))
# (column, on a log scale)
MEASURES = (
    ("train_nc1", True),
    ("val_nc1", True),
    ("train_mir", False),
    ("val_mir", False),
    ("train_hdr", False),
    ("val_hdr", False),
    ("train_mir_class", False),
    ("train_hdr_class", False),
    ("train_matrix_entropy", False),
    ("train_head_entropy", False),
)

# (column, "min" or "max"): the extremum that marks the curve's turn.
TURNS = (
    ("train_nc1", "min"),
    ("train_mir", "max"),
    ("train_mir_class", "max"),
    ("train_matrix_entropy", "max"),
)


def read_history(path, log_every):
    """`{column: [values]}` of a `history.csv`, with a `step` column `(epoch + 1) * log_every`."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    history = {key: [float(row[key]) for row in rows] for key in rows[0]} if rows else {}
    history["step"] = [(int(row["epoch"]) + 1) * log_every for row in rows]
    return history


def first_step(steps, values, threshold):
    """The first step whose value is `>= threshold`; `None` if none is."""
    return next((s for s, v in zip(steps, values, strict=True) if v >= threshold), None)


def change_step(steps, values, fraction=0.9, log=False):
    """The first step at which `values` made `fraction` of their first-to-last change.

    Returns `None` when the values do not change (or are not finite).

    Example:

    >>> change_step([1, 2, 3, 4], [0.0, 0.5, 0.95, 1.0])
    3
    """
    if log:
        values = [math.log10(v) if v > 0 else math.nan for v in values]
    start, end = values[0], values[-1]
    if not (math.isfinite(start) and math.isfinite(end)) or start == end:
        return None
    for step, value in zip(steps, values, strict=True):
        if (value - start) / (end - start) >= fraction:
            return step
    return None


def extremum_step(steps, values, kind):
    """The step of the first minimum (`kind="min"`) or maximum (`"max"`) of `values`.

    Example:

    >>> extremum_step([1, 2, 3], [5.0, 2.0, 4.0], "min")
    2
    """
    sign = 1 if kind == "min" else -1
    best = min(range(len(values)), key=lambda i: sign * values[i])
    return steps[best]


def summarize(history, fraction=0.9):
    """The steps of `ACCURACY_THRESHOLDS`, `MEASURES` and `TURNS` (see the module docstring)."""
    steps = history["step"]
    summary = {}
    for key, threshold in ACCURACY_THRESHOLDS:
        if key in history:
            summary[f"{key}_{round(100 * threshold)}"] = first_step(steps, history[key], threshold)
    for key, log in MEASURES:
        if key in history:
            summary[f"{key}_{round(100 * fraction)}"] = change_step(
                steps, history[key], fraction, log
            )
    for key, kind in TURNS:
        if key in history:
            summary[f"{key}_{kind}"] = extremum_step(steps, history[key], kind)
    return summary


def summary_legend(summary, fraction=0.9):
    """The lines that say what the keys of `summarize` (those present) and `never` mean.

    Example:

    >>> print(summary_legend({"val_accuracy_50": 300, "train_nc1_90": None}))
    Steps at which each curve moves (logged steps; train_: training set, val_: test set):
      <split>_accuracy_<P>  first step with accuracy >= P%
      <measure>_90          first step with 90% of the change from the first to the last value
      never                 not reached within the run
    """
    percent = round(100 * fraction)
    accuracy = [key for key in summary if "_accuracy_" in key]
    measures = [key for key in summary if key not in accuracy]
    rows = []
    if accuracy:
        rows.append(("<split>_accuracy_<P>", "first step with accuracy >= P%"))
    if any(key.endswith(f"_{percent}") for key in measures):
        rows.append(
            (
                f"<measure>_{percent}",
                f"first step with {percent}% of the change from the first to the last value",
            )
        )
    if any(key.endswith(("_min", "_max")) for key in measures):
        rows.append(("<measure>_min/_max", "step of the minimum/maximum (where the curve turns)"))
    if any(step is None for step in summary.values()):
        rows.append(("never", "not reached within the run"))
    width = max((len(name) for name, _ in rows), default=0)
    title = "Steps at which each curve moves (logged steps; train_: training set, val_: test set):"
    return "\n".join([title, *(f"  {name:<{width}}  {meaning}" for name, meaning in rows)])


def format_summary(summary, fraction=0.9):
    """Plain-text table of `summarize`: the legend (`summary_legend`), a header, `name  step`."""
    width = max(len(key) for key in summary)
    lines = [
        summary_legend(summary, fraction),
        "",
        f"{'column':<{width}}  step",
        f"{'-' * width}  ----",
    ]
    lines += [
        f"{key:<{width}}  {'never' if step is None else step}" for key, step in summary.items()
    ]
    return "\n".join(lines)
