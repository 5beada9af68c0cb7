"""The multi-seed study of the docs: does the MIR/HDR term help FreeMatch on Fashion-MNIST?

`python -m recipes.semi_supervised.experiment` runs a resumable grid of
cells, one `python -m recipes.semi_supervised` run each, and writes the report
(tables between the `<!-- experiment:start -->` and `<!-- experiment:end -->`
markers of `docs/semi_supervised.md`, and a figure) from the finished cells.

Stages, in run order:

1. Selection of the MIR/HDR weight (the same weight `w` for MIR and HDR):
   FreeMatch + MIR/HDR (labelled batch) at `--selection-labels` labels per
   class with `--selection-seed` (not a grid seed), one run per candidate of
   `--weights`; the weight with the best validation accuracy at the last step
   (EMA weights, on the `--validation-samples` training images held out from
   every run; the earliest candidate on a tie) is used by both MIR/HDR methods
   of the grid. The test set plays no part in it.
2. The grid, seed-major (every cell of seed 0 first, so that partial results
   are paired): labels per class in `--labels`, methods of `METHODS`, seeds in
   `--seeds`; the "FreeMatch (negated fairness)" method (the fairness loss
   with the opposite of the paper's sign, `--fairness-sign negated`) only at
   `--sign-labels`.

Each finished cell is a small JSON file in `--study-dir` (settings, the exact
command, wall time, final numbers, per-epoch history); a cell whose file
exists is skipped, so the driver resumes where it stopped (an interrupted
cell restarts from scratch). Its run folder (`model.keras`,
`history.csv`, ...) is `--output/<cell>`. A finished cell whose recorded
command differs from the planned one (other settings) is an error, not
reused silently. One driver runs a study at a time (`lock`: an exclusive
lock on `--output/driver.lock`, released when the process ends). `--jobs N`
runs up to N cells at a time, each a process limited to `cores // N` threads
with its output in `--output/<cell>.log`.

Example:

```bash
nohup nice -n 19 python -m recipes.semi_supervised.experiment --jobs 2 > study.log 2>&1 &
python -m recipes.semi_supervised.experiment --dry-run     # every cell's command, what is done
python -m recipes.semi_supervised.experiment --report-only # tables and figure from the JSONs
```
"""

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from recipes.doc_tables import write_table

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(ROOT, "docs", "semi_supervised.md")
FIGURE = os.path.join(ROOT, "docs", "images", "ssl_study.png")
STUDY_DIR = os.path.join(HERE, "study")

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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m recipes.semi_supervised.experiment",
        description="Resumable multi-seed study: supervised, FixMatch, FreeMatch, FreeMatch + "
        "MIR/HDR on Fashion-MNIST; writes the report into docs/semi_supervised.md.",
    )
    grid = parser.add_argument_group("grid")
    grid.add_argument("--labels", type=int, nargs="+", default=[4, 25], help="labels per class")
    grid.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    grid.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    grid.add_argument(
        "--sign-labels",
        type=int,
        nargs="*",
        default=[4],
        help=f"labels per class of the {NEGATED_FAIRNESS!r} cells",
    )
    select = parser.add_argument_group("selection of the MIR/HDR weight (validation images)")
    select.add_argument("--weights", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    select.add_argument("--selection-labels", type=int, default=4, help="labels per class")
    select.add_argument("--selection-seed", type=int, default=100, help="a seed not in the grid")
    runs = parser.add_argument_group("every run")
    runs.add_argument("--steps", type=int, default=3000)
    runs.add_argument("--eval-every", type=int, default=250)
    runs.add_argument("--test-samples", type=int, default=5000)
    runs.add_argument("--validation-samples", type=int, default=1000)
    runs.add_argument("--common", default=COMMON, help="options shared by every run")
    runs.add_argument("--extra", default="", help="more options for every run (e.g. in tests)")
    where = parser.add_argument_group("files")
    where.add_argument("--study-dir", default=STUDY_DIR, help="one JSON per finished cell")
    where.add_argument("--output", default=os.path.join("outputs", "ssl-study"), help="run dirs")
    where.add_argument("--doc", default=DOC, help="Markdown file to write the report into")
    where.add_argument("--figure", default=FIGURE, help="PNG of the accuracies")
    what = parser.add_argument_group("what to do")
    what.add_argument("--max-runs", type=int, help="stop after this many runs")
    what.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time, each limited to (CPU cores // jobs) threads; 1: one run with "
        "every core",
    )
    what.add_argument(
        "--dry-run",
        action="store_true",
        help="print every cell's command (the finished ones marked), run nothing",
    )
    what.add_argument("--report-only", action="store_true", help="only write the report")
    return parser


# --------------------------------------------------------------------------- #
# Plan and commands
# --------------------------------------------------------------------------- #


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


def command_line(argv, backend):
    return f"KERAS_BACKEND={backend} python -m recipes.semi_supervised {shlex.join(argv)}"


def backend_name():
    return os.environ.get("KERAS_BACKEND", "tensorflow")


# --------------------------------------------------------------------------- #
# Finished cells
# --------------------------------------------------------------------------- #


def cell_path(cell, args):
    return os.path.join(args.study_dir, f"{cell.name}.json")


def load_record(cell, args):
    """The finished cell's record, or `None`."""
    path = cell_path(cell, args)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def selected_weight(args):
    """`(weight, table)`: the candidate with the best last-step validation accuracy.

    `weight` is `None` until every candidate is finished; `table` lists
    `(weight, validation accuracy or None)` per candidate.
    """
    table = []
    for cell in plan(args):
        if cell.stage != "select":
            continue
        record = load_record(cell, args)
        table.append((cell.weight, None if record is None else record["final"]["val_accuracy"]))
    if not table or any(value is None for _, value in table):
        return None, table
    best = max(range(len(table)), key=lambda i: (table[i][1], -i))  # earliest on a tie
    return table[best][0], table


def summarize(results, argv, backend, wall_seconds, cell):
    """The record of a finished cell: settings, command, times, final numbers, history."""
    history = results["history"]
    final = {key: float(values[-1]) for key, values in history.items()}
    final["test_accuracy"] = float(results["test_accuracy"])  # EMA weights, last step
    if "test_loss" in results:
        final["test_loss"] = float(results["test_loss"])
    return {
        "cell": {
            "stage": cell.stage,
            "labels": cell.labels_per_class * 10,
            "labels_per_class": cell.labels_per_class,
            "method": cell.method,
            "seed": cell.seed,
            "weight": cell.weight,
        },
        "command": command_line(argv, backend),
        "argv": argv,
        "backend": backend,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "train_seconds": float(results["train_seconds"]),
        "wall_seconds": float(wall_seconds),
        "test_samples": results["test_samples"],
        "validation_samples": results["validation_samples"],
        "final": final,
        "best_validation": results["best_validation"],
        "settings": results["settings"],
        "history": history,
    }


def threads_per_run(jobs):
    """CPU threads of each of `jobs` concurrent runs, or `None` (no limit) for one run."""
    return None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)


def thread_environment(threads):
    """Environment variables limiting a run's TensorFlow, oneDNN/OpenMP and BLAS threads."""
    env = dict(os.environ)
    if threads is not None:
        for name in (
            "TF_NUM_INTRAOP_THREADS",
            "TF_NUM_INTEROP_THREADS",
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS",
        ):
            env[name] = str(threads)
        if threads == 1:  # JAX's CPU kernels: single-threaded Eigen
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false"
    return env


def run_cell(cell, argv, args, in_process=False):
    """Runs one cell from scratch and writes its record; returns the record."""
    out = os.path.join(args.output, cell.name)
    shutil.rmtree(out, ignore_errors=True)  # an interrupted run restarts from scratch
    backend = backend_name()
    threads = threads_per_run(args.jobs)
    print(f"[{time.strftime('%H:%M:%S')}] {command_line(argv, backend)}", flush=True)
    start = time.time()
    if in_process:
        from recipes.semi_supervised import train

        train.main(argv)
    else:  # concurrent runs write their output to `<output>/<cell>.log`, one run to ours
        log_path = os.path.join(args.output, f"{cell.name}.log")
        with open(log_path, "w") if args.jobs > 1 else contextlib.nullcontext() as log:
            subprocess.run(
                [sys.executable, "-m", "recipes.semi_supervised", *argv],
                check=True,
                env=thread_environment(threads),
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
            )
    wall = time.time() - start
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    record = summarize(results, argv, backend, wall, cell)
    record["concurrent_runs"] = args.jobs
    record["threads_per_run"] = threads
    os.makedirs(args.study_dir, exist_ok=True)
    path = cell_path(cell, args)
    with open(f"{path}.tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(f"{path}.tmp", path)  # a cell's file exists only once complete
    return record


def stage_cells(args, stage):
    """`(cell, argv, finished)` of the cells of `stage` (`"select"` or `"grid"`), in plan order.

    A grid cell that needs the selected MIR/HDR weight before the selection has
    finished is left out (the dry run prints it with `{W}` instead). A finished
    cell recorded with other settings than planned is an error.
    """
    weight = selected_weight(args)[0] if stage == "grid" else None
    cells = []
    for cell in plan(args):
        if cell.stage != stage:
            continue
        if cell.needs_weight and stage == "grid" and weight is None:
            if args.dry_run:
                argv = command(cell, args, "{W}")
                print(f"{command_line(argv, backend_name())}  # W: the selected weight")
            else:
                print(f"{cell.name}: waits for the weight selection", flush=True)
            continue
        argv = command(cell, args, weight)
        record = load_record(cell, args)
        if record is not None and record["argv"] != argv:
            raise SystemExit(
                f"error: {cell_path(cell, args)} was run with other settings:\n"
                f"  recorded: {shlex.join(record['argv'])}\n  planned:  {shlex.join(argv)}\n"
                "move it away or pass the settings it was run with"
            )
        cells.append((cell, argv, record is not None))
    return cells


def run(args, in_process=False):
    """Runs the missing cells (the selection first, then the grid); returns their names.

    With `--jobs N` (N > 1) up to N cells run at a time, each as its own process
    limited to `threads_per_run(N)` threads; the report is rewritten after every
    finished cell. `--dry-run` prints every cell's command, the finished ones
    marked, and returns the cells it would run.
    """
    if args.jobs < 1:
        raise SystemExit(f"error: --jobs must be a positive integer, got {args.jobs}")
    done = []
    for stage in ("select", "grid"):
        cells = stage_cells(args, stage)
        todo = [(cell, argv) for cell, argv, finished in cells if not finished]
        if args.max_runs is not None:
            todo = todo[: max(0, args.max_runs - len(done))]
        if args.dry_run:
            chosen = {cell for cell, _ in todo}
            for cell, argv, finished in cells:
                mark = f"  # finished: {cell.name}.json" if finished else ""
                if finished or cell in chosen:
                    print(f"{command_line(argv, backend_name())}{mark}")
            done += [cell.name for cell, _ in todo]
            continue
        if in_process:  # tests: one run after the other in this process
            for cell, argv in todo:
                run_cell(cell, argv, args, in_process=True)
                done.append(cell.name)
                write_report(args)
            continue
        pool = ThreadPoolExecutor(max_workers=args.jobs)  # one worker: in plan order
        try:
            futures = {pool.submit(run_cell, cell, argv, args): cell for cell, argv in todo}
            for future in as_completed(futures):
                future.result()  # a failed run stops the study (its log says why)
                done.append(futures[future].name)
                write_report(args)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return done


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def grid_records(args):
    """`{(labels_per_class, method): {seed: record}}` of the finished grid cells."""
    records = {}
    for cell in plan(args):
        if cell.stage != "grid":
            continue
        record = load_record(cell, args)
        if record is not None:
            records.setdefault((cell.labels_per_class, cell.method), {})[cell.seed] = record
    return records


def _mean_std(values, scale=1.0, digits=1):
    values = scale * np.asarray(values, dtype=float)
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
                for c in plan(args)
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
            cells = []
            for key in ("last", "best", "tail"):
                _, a, b = paired(records, method, reference, labels, key=key)
                p = "-"
                if len(seeds) > 1 and np.ptp(a - b) > 0:
                    p = f"{stats.ttest_rel(a, b).pvalue:.2f}"
                cells += [_mean_std(a - b), p]
            _, a, b = paired(records, method, reference, labels)
            diffs = a - b
            per_seed = ", ".join(f"s{s}: {d:+.1f}" for s, d in zip(seeds, diffs, strict=True))
            lines.append(
                f"| {labels * 10} | {method} − {reference} | {len(seeds)} | {per_seed} | "
                f"{cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {cells[4]} | {cells[5]} |"
            )
    return "\n".join(lines)


BUDGET = "budget-40-freematch-s0.json"


def budget_table(args):
    """FreeMatch's `time_p` per evaluation period in the budget run (`BUDGET`), or `None`."""
    path = os.path.join(args.study_dir, BUDGET)
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
    weight, table = selected_weight(args)
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


def report(args):
    """The Markdown report of the finished cells."""
    records = grid_records(args)
    cells = plan(args)
    loaded = {c: load_record(c, args) for c in cells}
    finished = [c for c in cells if loaded[c] is not None]
    grid = [c for c in cells if c.stage == "grid"]
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
        f"Finished: {len(finished)} of {len(cells)} runs ({len(grid_done)} of {len(grid)} grid "
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
    weight, _ = selected_weight(args)
    example = Cell("grid", args.labels[0], "FreeMatch", args.seeds[0])
    selection = []
    if any(c.stage == "select" for c in cells):
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
            f"`{cell_path(example, args).replace(ROOT + os.sep, '')}`"
            + (f"; selected MIR/HDR weight: {weight:g}." if weight is not None else "."),
        ]
    )


def figure(args, path):
    """The accuracies of the finished grid cells, one column per label count.

    Top: test accuracy per method, one point per seed, at the last step (filled)
    and the best-validation epoch (hollow). Bottom: test accuracy against steps,
    the mean over the finished seeds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = grid_records(args)
    fig, axes = plt.subplots(
        2, len(args.labels), figsize=(5.5 * len(args.labels), 8.0), squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    options = shlex.split(f"{args.common} {args.extra}")
    dataset = options[options.index("--dataset") + 1] if "--dataset" in options else ""
    for column, labels in enumerate(args.labels):
        top, bottom = axes[0, column], axes[1, column]
        methods = [m for m in args.methods if (labels, m) in records]
        for i, method in enumerate(methods):
            runs = records[labels, method]
            seeds = sorted(runs)
            last = [100 * runs[s]["final"]["test_accuracy"] for s in seeds]
            best = [100 * runs[s]["best_validation"]["test_accuracy"] for s in seeds]
            offsets = np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else [0.0]
            color = colors[i % len(colors)]
            top.scatter(i + np.asarray(offsets), last, color=color, zorder=3)
            shifted = i + 0.04 + np.asarray(offsets)
            top.scatter(shifted, best, facecolors="none", edgecolors=color, zorder=3)
            top.hlines(np.mean(last), i - 0.3, i + 0.3, color=color)
            every = runs[seeds[0]]["settings"]["eval_every"]
            curves = [runs[s]["history"]["test_accuracy"] for s in seeds]
            length = min(len(curve) for curve in curves)
            mean = 100 * np.mean([curve[:length] for curve in curves], axis=0)
            steps = every * np.arange(1, length + 1)
            bottom.plot(steps, mean, color=color, marker=".", label=f"{method} ({len(seeds)})")
        top.set_xticks(range(len(methods)))
        top.set_xticklabels([m.replace(" + ", "\n+ ").replace(" (", "\n(") for m in methods])
        top.tick_params(axis="x", labelsize=7)
        if not methods:
            top.text(0.5, 0.5, "no finished cell yet", ha="center", transform=top.transAxes)
        top.set_title(f"{dataset or 'fashion_mnist'}, {labels * 10} labels")
        top.set_ylabel("test accuracy (%), EMA weights")
        top.grid(axis="y", alpha=0.3)
        bottom.set_xlabel("training step")
        bottom.set_ylabel("test accuracy (%), mean over seeds")
        bottom.grid(alpha=0.3)
        if methods:
            bottom.legend(fontsize=7, title="method (seeds)", title_fontsize=7)
    fig.suptitle(
        "Top: filled, last step (line: mean); hollow, best-validation epoch; one point per "
        "seed. Bottom: during training.",
        fontsize=9,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(args):
    text = report(args)
    if args.doc and os.path.exists(args.doc):
        write_table(text, args.doc)
    if args.figure:
        figure(args, args.figure)
    return text


def lock(args):
    """Holds an exclusive lock on `<output>/driver.lock` (one driver per study at a time).

    The lock is released when the process ends, however it ends.
    """
    import fcntl

    os.makedirs(args.output, exist_ok=True)
    handle = open(os.path.join(args.output, "driver.lock"), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise SystemExit(
            f"error: another driver is running this study ({handle.name} is locked)"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def main(argv=None, in_process=False):
    args = build_parser().parse_args(argv)
    if not args.report_only:
        held = None if args.dry_run else lock(args)
        try:
            done = run(args, in_process=in_process)
        finally:
            if held is not None:
                held.close()
        verb = "would run" if args.dry_run else "ran"
        print(f"{verb} {len(done)} cells: {', '.join(done) if done else 'none'}")
        if args.dry_run:
            return done
    text = write_report(args)
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
