"""`python -m studies.grokking`: do the collapse measures move before test accuracy?

Runs each (run, seed) of the grid with `python -m recipes.grokking`, one at a
time, and keeps one JSON record per finished run in `--records` (the exact
command, its results.json: settings, final values, the steps of the table,
training time; and its `history.csv`, one list per column). The table of
steps (`studies.grokking.table`) is written between the
`<!-- experiment:start -->` and `<!-- experiment:end -->` markers of
`docs/grokking.md` from the records of the grid's finished runs. A run whose
record exists is not run again; a run folder (`--output/<run>-seed<k>`) that
already holds a `results.json` is recorded without rerunning it (`--fresh`
reruns it). The measures are those of arXiv 2409.16767 (`keras_nc.metrics`).

Example:

```bash
python -m studies.grokking --runs default --seeds 0 1 2   # run (or resume), write the table
python -m studies.grokking --dry-run                     # every run's command, what is done
python -m studies.grokking --report                      # the table from the records only
```
"""

import csv
import os
import sys

from studies import driver, study
from studies.grokking import table

RECORDS, DOC, _ = study.locations(__file__, "grokking")
MODULE = "recipes.grokking"
# The mini-batch runs: the collapse losses need one n x n eigendecomposition per
# step, which the full training set (n = 3764) makes far too slow on a CPU.
RUNS = {
    "default": [],
    "batch 512": ["--batch-size", "512"],
    "batch 512 + MIR/HDR 0.5": [
        "--batch-size",
        "512",
        "--mir-weight",
        "0.5",
        "--hdr-weight",
        "0.5",
    ],
    "batch 512 + CMA 0.5": ["--batch-size", "512", "--cma-weight", "0.5"],
}


def build_parser():
    parser = study.parser(
        "grokking",
        "Grokking on (a + b) mod 97: the steps at which test accuracy and the "
        "collapse measures of arXiv 2409.16767 move; writes the table into docs/grokking.md.",
    )
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--common", default="", help="options shared by every run")
    return study.add_common_options(
        parser,
        "grokking",
        RECORDS,
        DOC,
        unit="run",
        report_help="run nothing: tabulate the recorded runs",
        deprecated_report="--table-only",
    )


def parse(argv=None):
    """The parsed options; `--table-only` (deprecated) means `--report`."""
    return driver.resolve_report(build_parser().parse_args(argv), "--table-only")


def slug(name, seed):
    name = name.replace(" + ", "-").replace("/", "").replace(" ", "-").replace(".", "")
    return f"{name}-seed{seed}"


def plan(args):
    """The grid's `Job`s, run-major: `python -m recipes.grokking --seed k ...` each."""
    jobs = []
    for name in args.runs:
        for seed in args.seeds:
            out = os.path.join(args.output, slug(name, seed))
            argv = ["--seed", str(seed), "--output", out, "--verbose", "2"]
            argv += [*args.common.split(), *RUNS[name]]
            cell = {"run": name, "seed": seed}
            jobs.append(driver.Job(slug(name, seed), MODULE, tuple(argv), out, cell=cell))
    return jobs


def read_history(path):
    """`history.csv` as `{column: [values]}` (non-finite values as `None`)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [driver.number(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def summarize(results, job, backend, wall_seconds):
    """The record of a finished run: the command, its results.json and its history."""
    return {
        **study.header(results, job, backend, wall_seconds),
        "train_size": results["train_size"],
        "test_size": results["test_size"],
        "steps_to": results["steps_to"],
        "final": results["final"],
        "settings": results["settings"],
        "history": read_history(os.path.join(job.output, "history.csv")),
    }


def records(args):
    """`{(run, seed): record}` of the grid's recorded runs, in plan order."""
    return study.recorded(plan(args), args.records)


def write_report(args):
    """Prints the legend and the table; writes the table into `--doc` if it exists."""
    return study.publish(args, table.table(records(args)), legend=table.LEGEND)


def main(argv=None, runner=None):
    return study.run_or_report(parse(argv), plan, summarize, write_report, runner)


if __name__ == "__main__":
    main(sys.argv[1:])
