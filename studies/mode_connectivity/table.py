"""The linear-mode-connectivity study's tables: barriers and the measures at the midpoint.

`report(records, spawn_epochs)` gives, from the records
(`{(spawn_epoch, seed): record}`):

1. per spawn epoch k, the mean and 95% t interval over seeds of the loss and
   accuracy barriers and of MIR, HDR and NC1 at the midpoint (alpha = 0.5);
2. per spawn epoch k, the paired difference midpoint minus end points (the
   mean of alpha = 0 and alpha = 1) of loss, accuracy, MIR, HDR and NC1, with
   the paired t-test's p-value (`studies.statistics`);
3. Spearman's rank correlation between the loss barrier and the midpoint's
   drop of MIR (end points minus midpoint), and likewise the rise of HDR and
   of NC1, over the spawned cells (k >= 0) and over all cells (the control
   k = -1, two independent initialisations, included).

Example:

```python
from studies.mode_connectivity import cli, table

print(table.report(cli.records(cli.parse([])), cli.SPAWN_EPOCHS))
```
"""

from studies import docs, statistics

# (key, title, scale, digits) of the measures at the midpoint.
MEASURES = (
    ("loss", "loss", 1.0, 3),
    ("accuracy", "acc. (%)", 100.0, 1),
    ("mir", "MIR", 1.0, 3),
    ("hdr", "HDR", 1.0, 3),
    ("nc1", "NC1", 1.0, 2),
)
# (record key, title, scale, digits) of the barriers.
BARRIERS = (("loss_barrier", "loss barrier", 1.0, 3), ("accuracy_barrier", "acc. barrier (pp)",
            100.0, 1))  # fmt: skip
# (key, sign, label): the midpoint's change that a barrier would come with: the end points'
# MIR minus the midpoint's (a drop), the midpoint's HDR and NC1 minus the end points' (a rise).
CHANGES = (("mir", -1.0, "MIR drop"), ("hdr", 1.0, "HDR rise"), ("nc1", 1.0, "NC1 rise"))


def label(spawn_epoch):
    """The row label of a spawn epoch: `k`, or "indep." for the control (-1)."""
    return "indep." if spawn_epoch < 0 else str(spawn_epoch)


def seeds_of(records, spawn_epoch):
    return sorted(seed for k, seed in records if k == spawn_epoch)


def barriers_table(records, spawn_epochs):
    """Per k: n, the barriers and the midpoint's measures, mean ± 95% t half-width."""
    header = ["k", "n", *(t for _, t, _, _ in BARRIERS), *(f"mid. {t}" for _, t, _, _ in MEASURES)]
    rows = []
    for k in spawn_epochs:
        cells_of = [records[k, seed] for seed in seeds_of(records, k)]
        cells = [label(k), str(len(cells_of))]
        for key, _, scale, digits in BARRIERS:
            interval = statistics.mean_interval([_scaled(r[key], scale) for r in cells_of])
            cells.append(interval.text(digits))
        for key, _, scale, digits in MEASURES:
            points = [_scaled(r["midpoint"].get(key), scale) for r in cells_of]
            cells.append(statistics.mean_interval(points).text(digits))
        rows.append(cells)
    return docs.table(header, " ".join(["r"] * len(header)), rows)


def differences_table(records, spawn_epochs):
    """Per k: the paired difference midpoint minus end points of each of `MEASURES`."""
    header = ["k", "pairs", *(f"Δ {title}" for _, title, _, _ in MEASURES)]
    rows = []
    for k in spawn_epochs:
        cells_of = [records[k, seed] for seed in seeds_of(records, k)]
        cells = [label(k), str(len(cells_of))]
        for key, _, scale, digits in MEASURES:
            middle = [_scaled(r["midpoint"].get(key), scale) for r in cells_of]
            ends = [_scaled(r["end_points"].get(key), scale) for r in cells_of]
            cells.append(statistics.paired_difference(middle, ends).text(digits))
        rows.append(cells)
    return docs.table(header, " ".join(["r"] * len(header)), rows)


def change(record, key, sign):
    """The midpoint's change of `key` from the end points, signed as in `CHANGES`."""
    middle, ends = record["midpoint"].get(key), record["end_points"].get(key)
    if middle is None or ends is None:
        return None
    return sign * (middle - ends)


def correlations(records):
    """`{name: Correlation}`: Spearman of the loss barrier against each of `CHANGES`."""
    barriers = [record["loss_barrier"] for record in records.values()]
    return {
        name: statistics.spearman(barriers, [change(r, key, sign) for r in records.values()])
        for key, sign, name in CHANGES
    }


def correlation_table(records):
    """Spearman's rho (permutation p-value, n cells) of the loss barrier and each change."""
    spawned = {cell: record for cell, record in records.items() if cell[0] >= 0}
    within, overall = correlations(spawned), correlations(records)
    rows = [[name, within[name].text(), overall[name].text()] for name in within]
    header = ["midpoint change", "Spearman, spawned (k >= 0)", "Spearman, all (with indep.)"]
    return docs.table(header, "l r r", rows)


def _scaled(value, scale):
    return None if value is None else scale * value


def report(records, spawn_epochs):
    """The three tables, separated by blank lines (what `--report` writes into the page)."""
    if not records:
        return "No finished cell yet: run `python -m studies.mode_connectivity`."
    tables = (
        barriers_table(records, spawn_epochs),
        differences_table(records, spawn_epochs),
        correlation_table(records),
    )
    return "\n\n".join(tables)
