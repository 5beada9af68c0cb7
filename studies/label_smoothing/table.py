"""The label-smoothing study's tables: the measures per smoothing, and each against s = 0.

`report(records, smoothings)` gives two Markdown tables from the records
(`{(smoothing, seed): record}`): the mean and 95% t interval over seeds of the
final values per smoothing, beside their values at Neural Collapse
(`keras_nc.theory`: `MIR*`, `HDR* = 0`, and the smoothed cross-entropy's floor
`cross_entropy_at_collapse(10, s)`), and the paired differences of each
smoothing from `s = 0` on the same seeds (`studies.statistics`).

Example:

```python
from studies.label_smoothing import cli, table

print(table.report(cli.records(cli.parse([])), cli.SMOOTHINGS))
```
"""

from keras_nc import theory
from studies import docs, statistics

NUM_CLASSES = 10
# (split, key, title, scale, digits): the final values of a record, `record["final"][split][key]`.
MEASURES = (
    ("test", "accuracy", "test acc. (%)", 100.0, 1),
    ("train", "accuracy", "train acc. (%)", 100.0, 1),
    ("test", "nc1", "NC1", 1.0, 2),
    ("test", "mir", "MIR", 1.0, 3),
    ("test", "hdr", "HDR", 1.0, 3),
    ("test", "mir_class", "class MIR", 1.0, 3),
    ("test", "hdr_class", "class HDR", 1.0, 3),
    ("train", "loss", "train loss", 1.0, 3),
)
LEGEND = (
    "Final values after the last epoch, mean ± 95% t half-width over the seeds (n in the "
    "first column). test acc., train acc.: accuracy on the test and training splits; NC1, "
    "MIR, HDR (sample pairing, per batch of 500), class MIR, class HDR (class pairing: the "
    "split's centred class means against the head rows): on the test split (arXiv "
    "2409.16767); train loss: the smoothed cross-entropy on the training split, evaluated "
    "after training; floor: its value at collapse, keras_nc.theory.cross_entropy_at_collapse"
    "(10, s). The last row gives the values at Neural Collapse (keras_nc.theory), the same "
    "for every s < 1. Second table: the difference from s = 0 on the same seeds, with the "
    "paired t-test's p-value; an interval containing 0 is no effect detected."
)


def values(records, smoothing, split, key, scale=1.0):
    """`[value * scale or None]` of the recorded seeds of one smoothing, in seed order."""
    seeds = sorted(seed for s, seed in records if s == smoothing)
    out = []
    for seed in seeds:
        value = records[smoothing, seed]["final"][split].get(key)
        out.append(None if value is None else scale * value)
    return out


def measures_table(records, smoothings):
    """Per smoothing: the mean ± interval of each of `MEASURES`, the floor; the theory row."""
    header = ["s", "n", *(title for _, _, title, _, _ in MEASURES), "floor"]
    rows = []
    for s in smoothings:
        count = sum(1 for smoothing, _ in records if smoothing == s)
        cells = [f"{s:g}", str(count)]
        for split, key, _, scale, digits in MEASURES:
            interval = statistics.mean_interval(values(records, s, split, key, scale))
            cells.append(interval.text(digits))
        cells.append(f"{theory.cross_entropy_at_collapse(NUM_CLASSES, s):.3f}")
        rows.append(cells)
    mir, hdr = theory.mir_at_collapse(NUM_CLASSES), theory.hdr_at_collapse(NUM_CLASSES)
    at_collapse = {"NC1": "0", "MIR": f"{mir:.3f}", "HDR": f"{hdr:.3f}"}
    at_collapse.update({"class MIR": f"{mir:.3f}", "class HDR": f"{hdr:.3f}"})
    at_collapse["train loss"] = "floor"
    theory_row = ["collapse", "theory"]
    theory_row += [at_collapse.get(title, "") for _, _, title, _, _ in MEASURES]
    rows.append([*theory_row, "(per s)"])
    return docs.table(header, " ".join(["r"] * len(header)), rows)


def differences_table(records, smoothings, baseline=0.0):
    """Per smoothing other than `baseline`: the paired difference of each measure from it."""
    header = ["s", "pairs", *(f"Δ {title}" for _, _, title, _, _ in MEASURES)]
    rows = []
    for s in smoothings:
        if s == baseline:
            continue
        seeds = sorted(seed for smoothing, seed in records if smoothing == s)
        seeds = [seed for seed in seeds if (baseline, seed) in records]
        cells = [f"{s:g}", str(len(seeds))]
        for split, key, _, scale, digits in MEASURES:
            a = [_scaled(records[s, seed], split, key, scale) for seed in seeds]
            b = [_scaled(records[baseline, seed], split, key, scale) for seed in seeds]
            cells.append(statistics.paired_difference(a, b).text(digits))
        rows.append(cells)
    return docs.table(header, " ".join(["r"] * len(header)), rows)


def _scaled(record, split, key, scale):
    value = record["final"][split].get(key)
    return None if value is None else scale * value


def report(records, smoothings):
    """Both tables, separated by a blank line (what `--report` writes into the docs page)."""
    if not records:
        return "No finished cell yet: run `python -m studies.label_smoothing`."
    return f"{measures_table(records, smoothings)}\n\n{differences_table(records, smoothings)}"
