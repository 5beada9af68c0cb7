"""The semi-supervised study's cells: methods, plan, commands, records, weight selection.

A cell is one `python -m recipes.semi_supervised` run: stage (`"select"` or
`"grid"`), labels per class, method and seed (and, in the selection, the
candidate MIR/HDR weight). `plan` orders them: the weight selection first,
then the grid seed-major, so that partial results are paired.

Example:

```python
from studies.semi_supervised import cells

cell = cells.Cell("grid", 4, "FreeMatch", 0)
print(cell.name)  # grid-40-freematch-s0
```
"""

import os
import shlex
from dataclasses import dataclass

from studies import driver

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RECORDS = os.path.join(HERE, "records")
MODULE = "recipes.semi_supervised"

MIRHDR = "FreeMatch + MIR/HDR"
MIRHDR_UNLABELED = "FreeMatch + MIR/HDR (unlabelled too)"
NEGATED_FAIRNESS = "FreeMatch (negated fairness)"
# Method name -> options of `python -m recipes.semi_supervised`; "{w}" is the selected weight.
METHODS = {
    "supervised": ["--algorithm", "supervised"],
    "FixMatch": ["--algorithm", "fixmatch"],
    "FreeMatch": ["--algorithm", "freematch"],
    MIRHDR: ["--algorithm", "freematch", "--mir-weight", "{w}", "--hdr-weight", "{w}"],
    MIRHDR_UNLABELED: [
        "--algorithm",
        "freematch",
        "--mir-weight",
        "{w}",
        "--hdr-weight",
        "{w}",
        "--unlabeled-information",
    ],
    NEGATED_FAIRNESS: ["--algorithm", "freematch", "--fairness-sign", "negated"],
}
COMMON = (
    "--dataset fashion_mnist --model wrn10_2 --width 0.5 --batch-size 16 --uratio 3 "
    "--ema-momentum 0.99"
)


@dataclass(frozen=True)
class Cell:
    """One run of the study: stage (`"select"` or `"grid"`), labels per class, method, seed.

    `weight` is the candidate MIR/HDR weight of a selection cell (`None` in the grid).
    """

    stage: str
    labels_per_class: int
    method: str
    seed: int
    weight: float = None

    @property
    def name(self):
        slug = (
            self.method.lower()
            .replace(" + ", "-")
            .replace("/", "")
            .replace(" (", "-")
            .replace(")", "")
            .replace(" ", "-")
        )
        weight = f"-w{self.weight:g}" if self.weight is not None else ""
        return f"{self.stage}-{self.labels_per_class * 10}-{slug}{weight}-s{self.seed}"

    @property
    def needs_weight(self):
        return "{w}" in METHODS[self.method]


def plan(args):
    """The cells in run order: the weight selection, then the grid seed-major."""
    cells = [
        Cell("select", args.selection_labels, MIRHDR, args.selection_seed, weight)
        for weight in args.weights
        if MIRHDR in args.methods or MIRHDR_UNLABELED in args.methods
    ]
    for seed in args.seeds:
        for labels in args.labels:
            for method in args.methods:
                if method == NEGATED_FAIRNESS and labels not in args.sign_labels:
                    continue
                cells.append(Cell("grid", labels, method, seed))
    return cells


def command(cell, args, weight=None):
    """The argument list of `python -m recipes.semi_supervised` for `cell`.

    `weight` is the selected MIR/HDR weight for the grid's MIR/HDR methods.
    """
    weight = cell.weight if cell.weight is not None else weight
    options = METHODS[cell.method]
    if cell.needs_weight:
        if weight is None:
            raise ValueError(f"cell {cell.name} needs the selected MIR/HDR weight")
        text = weight if isinstance(weight, str) else f"{weight:g}"
        options = [text if item == "{w}" else item for item in options]
    return [
        "--labels-per-class",
        str(cell.labels_per_class),
        "--seed",
        str(cell.seed),
        *options,
        *shlex.split(args.common),
        "--steps",
        str(args.steps),
        "--eval-every",
        str(args.eval_every),
        "--test-samples",
        str(args.test_samples),
        "--validation-samples",
        str(args.validation_samples),
        *shlex.split(args.extra),
        "--output",
        os.path.join(args.output, cell.name),
        "--verbose",
        "2",
    ]


def job(cell, args, weight=None):
    """The driver's `Job` of `cell`."""
    output = os.path.join(args.output, cell.name)
    return driver.Job(cell.name, MODULE, tuple(command(cell, args, weight)), output, cell=cell)


def load(cell, args):
    """The finished cell's record, or `None`."""
    return driver.load_record(args.records, cell.name)


def selected_weight(args):
    """`(weight, table)`: the candidate with the best last-step validation accuracy.

    `weight` is `None` until every candidate is finished; `table` lists
    `(weight, validation accuracy or None)` per candidate.
    """
    table = []
    for cell in plan(args):
        if cell.stage != "select":
            continue
        record = load(cell, args)
        table.append((cell.weight, None if record is None else record["final"]["val_accuracy"]))
    if not table or any(value is None for _, value in table):
        return None, table
    best = max(range(len(table)), key=lambda i: (table[i][1], -i))  # earliest on a tie
    return table[best][0], table


def stage_jobs(args, stage):
    """`(job, finished)` of the cells of `stage` (`"select"` or `"grid"`), in plan order.

    A grid cell that needs the selected MIR/HDR weight before the selection has
    finished is left out (the dry run prints it with `{W}` instead). A finished
    cell recorded with other settings than planned is an error.
    """
    weight = selected_weight(args)[0] if stage == "grid" else None
    jobs = []
    for cell in plan(args):
        if cell.stage != stage:
            continue
        if cell.needs_weight and stage == "grid" and weight is None:
            if args.dry_run:
                line = driver.command_line(job(cell, args, "{W}"), driver.backend_name())
                print(f"{line}  # W: the selected weight")
            else:
                print(f"{cell.name}: waits for the weight selection", flush=True)
            continue
        jobs.append(job(cell, args, weight))
    return driver.pending(jobs, args.records)


def summarize(results, job, backend, wall_seconds):
    """The record of a finished cell: settings, command, times, final numbers, history."""
    cell = job.cell
    history = results["history"]
    final = {key: driver.number(values[-1]) for key, values in history.items()}
    final["test_accuracy"] = driver.number(results["test_accuracy"])  # EMA weights, last step
    if "test_loss" in results:
        final["test_loss"] = driver.number(results["test_loss"])
    return {
        "cell": {
            "stage": cell.stage,
            "labels": cell.labels_per_class * 10,
            "labels_per_class": cell.labels_per_class,
            "method": cell.method,
            "seed": cell.seed,
            "weight": cell.weight,
        },
        **driver.run_header(job, backend, results, wall_seconds),
        "test_samples": results["test_samples"],
        "validation_samples": results["validation_samples"],
        "final": final,
        "best_validation": results["best_validation"],
        "settings": results["settings"],
        "history": history,
    }
