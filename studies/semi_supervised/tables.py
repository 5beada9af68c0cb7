"""The semi-supervised study's report: status, selection, per-cell and paired tables.

Every number comes from the records (`studies/semi_supervised/records/`):
`report(args)` is the Markdown that `python -m studies.semi_supervised
--report` writes between the markers of `docs/semi_supervised.md`. Paired
differences compare two methods on the seeds both finished (same seed: same
labels, initialisation and data order); p is a two-sided paired t-test.

Example:

```python
from studies.semi_supervised import cli, tables

args = cli.build_parser().parse_args([])
print(tables.report(args))  # the report of the committed records
```
"""

import json
import os

import numpy as np

from studies import driver
from studies.semi_supervised import cells
from studies.semi_supervised.cells import MIRHDR, MIRHDR_UNLABELED, NEGATED_FAIRNESS

# Paired comparisons of the report: (method, reference).
COMPARISONS = (
    (MIRHDR, "FreeMatch"),
    (MIRHDR_UNLABELED, "FreeMatch"),
    (MIRHDR_UNLABELED, MIRHDR),
    ("FreeMatch", "FixMatch"),
    ("FreeMatch", "supervised"),
    ("FixMatch", "supervised"),
    (NEGATED_FAIRNESS, "FreeMatch"),
)


def grid_records(args):
    """`{(labels_per_class, method): {seed: record}}` of the finished grid cells."""
    records = {}
    for cell in cells.plan(args):
        if cell.stage != "grid":
            continue
        record = cells.load(cell, args)
        if record is not None:
            records.setdefault((cell.labels_per_class, cell.method), {})[cell.seed] = record
    return records


def _mean_std(values, scale=1.0, digits=1):
    """`mean ± std` (ddof 1) of the values that are not `None` (non-finite in results.json)."""
    values = scale * np.asarray([v for v in values if v is not None], dtype=float)
    if not len(values):
        return "-"
    text = f"{values.mean():.{digits}f}"
    return text + (f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else "")


def _final(record, key):
    value = record["final"].get(key)
    return None if value is None else float(value)


def cell_table(records, args):
    lines = [
        "| labels | method | seeds | test acc. (%), last step | test acc. (%), best-val. epoch "
        "| mask ratio | pseudo-label acc. | MIR | HDR | minutes per run |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for labels in args.labels:
        for method in args.methods:
            runs = records.get((labels, method), {})
            planned = sum(
                1
                for c in cells.plan(args)
                if c.stage == "grid" and c.labels_per_class == labels and c.method == method
            )
            if not planned:
                continue
            runs = [runs[s] for s in sorted(runs)]

            def mean(key, runs=runs):
                values = [v for v in (_final(r, key) for r in runs) if v is not None]
                return f"{np.mean(values):.3f}" if values else "-"

            last = _mean_std([r["final"]["test_accuracy"] for r in runs], 100)
            best = _mean_std([r["best_validation"]["test_accuracy"] for r in runs], 100)
            minutes = _mean_std([r["train_seconds"] / 60 for r in runs])
            semi = method != "supervised"
            lines.append(
                f"| {labels * 10} | {method} | {len(runs)}/{planned} | {last} | {best} | "
                f"{mean('mask_ratio') if semi else '-'} | "
                f"{mean('pseudo_accuracy') if semi else '-'} | {mean('mir')} | {mean('hdr')} | "
                f"{minutes} |"
            )
    return "\n".join(lines)


TAIL = 4  # evaluations averaged by the "tail" columns


def paired(records, method, reference, labels, key="last"):
    """`(seeds, a, b)`: test accuracies (%) of `method` and `reference` on the seeds both finished.

    `key`: `"last"` (last step), `"best"` (best-validation epoch) or `"tail"`
    (the mean of the last `TAIL` evaluations, less sensitive to where the last
    step happens to fall).
    """

    def accuracy(record):
        if key == "last":
            return record["final"]["test_accuracy"]
        if key == "tail":
            return float(np.mean(record["history"]["test_accuracy"][-TAIL:]))
        return record["best_validation"]["test_accuracy"]

    a, b = records.get((labels, method), {}), records.get((labels, reference), {})
    seeds = sorted(set(a) & set(b))
    return (
        seeds,
        np.array([100 * accuracy(a[s]) for s in seeds]),
        np.array([100 * accuracy(b[s]) for s in seeds]),
    )


def paired_table(records, args):
    from scipy import stats

    lines = [
        "| labels | difference (points) | pairs | per seed, last step | mean ± std, last step "
        "| paired t-test p, last step | mean ± std, best-val. epoch | p, best-val. epoch "
        f"| mean ± std, last {TAIL} evaluations | p, last {TAIL} evaluations |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for labels in args.labels:
        for method, reference in COMPARISONS:
            seeds, *_ = paired(records, method, reference, labels)
            if not seeds:
                continue
            columns = []
            for key in ("last", "best", "tail"):
                _, a, b = paired(records, method, reference, labels, key=key)
                p = "-"
                if len(seeds) > 1 and np.ptp(a - b) > 0:
                    p = f"{stats.ttest_rel(a, b).pvalue:.2f}"
                columns += [_mean_std(a - b), p]
            _, a, b = paired(records, method, reference, labels)
            diffs = a - b
            per_seed = ", ".join(f"s{s}: {d:+.1f}" for s, d in zip(seeds, diffs, strict=True))
            lines.append(
                f"| {labels * 10} | {method} − {reference} | {len(seeds)} | {per_seed} | "
                + " | ".join(columns)
                + " |"
            )
    return "\n".join(lines)


BUDGET = "budget-40-freematch-s0.json"


def budget_table(args):
    """FreeMatch's `time_p` per evaluation period in the budget run (`BUDGET`), or `None`."""
    path = os.path.join(args.records, BUDGET)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        record = json.load(f)
    history = record["history"]
    every = record["settings"]["eval_every"]
    lines = [
        "| steps | `time_p` (mean over the period) | mask ratio | pseudo-label acc. |",
        "|---:|---:|---:|---:|",
    ]
    for i, value in enumerate(history["threshold"]):
        lines.append(
            f"| {i * every}-{(i + 1) * every} | {value:.3f} | {history['mask_ratio'][i]:.3f} | "
            f"{history['pseudo_accuracy'][i]:.3f} |"
        )
    return "\n".join(lines)


def selection_table(args):
    weight, table = cells.selected_weight(args)
    lines = [
        f"| MIR/HDR weight (both) | validation acc. (%), last step, {args.selection_labels * 10} "
        f"labels, seed {args.selection_seed} |",
        "|---:|---:|",
    ]
    for candidate, value in table:
        shown = "not run yet" if value is None else f"{100 * value:.1f}"
        mark = " (selected)" if candidate == weight else ""
        lines.append(f"| {candidate:g}{mark} | {shown} |")
    return "\n".join(lines)


def status_line(args, records):
    """What is finished, how long the runs took, which of them shared the machine."""
    planned = cells.plan(args)
    loaded = {c: cells.load(c, args) for c in planned}
    finished = [c for c in planned if loaded[c] is not None]
    grid = [c for c in planned if c.stage == "grid"]
    grid_done = [c for c in finished if c.stage == "grid"]
    complete = [
        f"{labels * 10} labels {method}"
        for labels in args.labels
        for method in args.methods
        if (labels, method) in records
        and len(records[labels, method])
        == sum(1 for c in grid if c.labels_per_class == labels and c.method == method)
    ]
    minutes = [loaded[c]["train_seconds"] / 60 for c in finished]
    status = (
        f"Finished: {len(finished)} of {len(planned)} runs ({len(grid_done)} of {len(grid)} grid "
        f"cells); complete (every seed): {', '.join(complete) if complete else 'none'}."
    )
    if minutes:
        status += f" Training time per run: {min(minutes):.1f} to {max(minutes):.1f} minutes."
    shared = [loaded[c] for c in finished if loaded[c].get("concurrent_runs", 1) > 1]
    if shared:
        status += (
            f" {len(shared)} of them ran {shared[0]['concurrent_runs']} at a time with "
            f"{shared[0]['threads_per_run']} thread(s) each (`--jobs`)"
        )
        alone = len(finished) - len(shared)
        status += (
            f", {alone} alone with every core: their minutes are not comparable." if alone else "."
        )
    return status


def report(args):
    """The Markdown report of the finished cells."""
    records = grid_records(args)
    planned = cells.plan(args)
    status = status_line(args, records)
    weight, _ = cells.selected_weight(args)
    example = cells.Cell("grid", args.labels[0], "FreeMatch", args.seeds[0])
    selection = []
    if any(c.stage == "select" for c in planned):
        selection = [
            "Selection of the MIR/HDR weight (validation images, never the test set):",
            selection_table(args),
        ]
    budget = budget_table(args)
    if budget is not None:
        budget = [
            f"Budget run (`{BUDGET}`): FreeMatch, 40 labels, seed 0, SAT momentum 0.999:",
            budget,
        ]
    return "\n\n".join(
        [
            status,
            *(budget or []),
            *selection,
            "Test accuracy of the averaged (EMA) weights on "
            f"{args.test_samples} test images: mean ± std over the finished seeds "
            "(std with ddof 1); the last step, and the epoch of best validation accuracy "
            "(labelled as such). Mask ratio, pseudo-label accuracy, MIR and HDR (labelled "
            "batch): means of the last evaluation period's logs. Minutes: training time "
            "per run (`train_seconds`).",
            cell_table(records, args),
            "Paired differences per seed (same seed: same labels, initialisation and data "
            "order); p: two-sided paired t-test (`scipy.stats`, the differences against 0). "
            f"The last {TAIL} evaluations: each run's mean test accuracy over its last {TAIL} "
            "evaluation periods, less sensitive to where the last step falls in the "
            "evaluation-to-evaluation fluctuation.",
            paired_table(records, args),
            "Each cell's exact command is in its JSON file (`command`), e.g. "
            f"`{driver.record_path(args.records, example.name).replace(cells.ROOT + os.sep, '')}`"
            + (f"; selected MIR/HDR weight: {weight:g}." if weight is not None else "."),
        ]
    )
