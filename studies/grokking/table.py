"""The grokking study's table: the steps at which accuracy and the collapse measures move.

Each row is one record (`studies/grokking/records/`): the steps of its
`steps_to` (what `python -m recipes.grokking` wrote into results.json, from
its `history.csv`) for the columns of `COLUMNS`, and the training minutes.

Example:

```python
from studies.grokking import table

record = {"steps_to": {"val_accuracy_50": 1600, "train_nc1_min": 950}, "train_seconds": 151.0}
print(table.row("default", 0, record))
# | default | 0 | never | 1600 | never | never | never | never | 950 (-650) | never | never |
#   never | 2.5 |
```
"""

from studies import docs

# (summary key, column title): accuracy thresholds, 90% of the final change of
# the training set's NC1, sample-head MIR and HDR, and the extrema (turns) of
# NC1, MIR, class MIR and feature entropy. The measures' cells also give their
# step minus the step at which test accuracy reaches 50% (negative: it leads).
COLUMNS = (
    ("train_accuracy_99", "train acc. 99%"),
    ("val_accuracy_50", "test acc. 50%"),
    ("val_accuracy_95", "test acc. 95%"),
    ("train_nc1_90", "NC1"),
    ("train_mir_90", "MIR"),
    ("train_hdr_90", "HDR"),
    ("train_nc1_min", "NC1 min."),
    ("train_mir_max", "MIR max."),
    ("train_mir_class_max", "class MIR max."),
    ("train_matrix_entropy_max", "entropy max."),
)
# What the printed table's columns mean (docs/grokking.md says it in its text).
LEGEND = (
    "Steps (every --log-every) at which: train acc. 99%, test acc. 50%, test acc. 95%: "
    "the accuracy first reaches it; NC1, MIR, HDR: the training set's measure has made 90% "
    "of its change from the first logged value to the last (NC1 on a log scale); NC1 min., "
    "MIR max., class MIR max., entropy max.: the step of that extremum over the run. (+N): "
    "the step minus that of test acc. 50% (negative: the measure moves first). never: not "
    "reached within the run."
)


def cells(record):
    """The step cells of one record, in the order of `COLUMNS`."""
    summary = record["steps_to"]
    jump = summary.get("val_accuracy_50")
    cells = []
    for key, _ in COLUMNS:
        step = summary.get(key)
        if step is None:
            cells.append("never")
        elif key.startswith(("train_accuracy", "val_accuracy")) or jump is None:
            cells.append(str(step))
        else:
            cells.append(f"{step} ({step - jump:+d})")
    return cells


def row(name, seed, record):
    """A table row: run, seed, the steps of `COLUMNS`, training minutes."""
    minutes = record["train_seconds"] / 60
    return "| " + " | ".join([name, str(seed), *cells(record), f"{minutes:.1f}"]) + " |"


def table(records):
    """The Markdown table of `{(run, seed): record}`, in the dict's order."""
    header = ["run", "seed", *(title for _, title in COLUMNS), "minutes"]
    rows = [row(name, seed, record) for (name, seed), record in records.items()]
    return "\n".join([docs.table(header, "l" + " r" * (len(header) - 1), []), *rows])
