"""`python -m studies.semi_supervised`: does the MIR/HDR term help FreeMatch on Fashion-MNIST?

Runs a resumable grid of cells (`studies.semi_supervised.cells`), one
`python -m recipes.semi_supervised` run each, and writes the report (tables
between the `<!-- experiment:start -->` and `<!-- experiment:end -->` markers
of `docs/semi_supervised.md`, and a figure) from the finished cells'
records. The MIR/HDR terms are those of arXiv 2409.16767
(`keras_nc.losses.InformationRegularizer`).

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
   `--seeds`; the "FreeMatch (negated fairness)" method only at `--sign-labels`.

Each finished cell is a JSON record in `--records` (settings, the exact
command, wall time, final numbers, per-epoch history); a cell whose record
exists is skipped, so the study resumes where it stopped (an interrupted cell
restarts from scratch). Its run folder is `--output/<cell>`. `--jobs N` runs
up to N cells at a time, each a process limited to `cores // N` threads with
its output in `--output/<cell>.log`; one driver runs a study at a time (a lock
on `--output/driver.lock`).

Example:

```bash
nohup nice -n 19 python -m studies.semi_supervised --jobs 2 > study.log 2>&1 &
python -m studies.semi_supervised --dry-run   # every cell's command, what is done
python -m studies.semi_supervised --report    # tables and figure from the records
```
"""

import argparse
import os
import sys

from studies import docs, driver
from studies.semi_supervised import cells, figure, tables

DOC = os.path.join(cells.ROOT, "docs", "semi_supervised.md")
FIGURE = os.path.join(cells.ROOT, "docs", "images", "ssl_study.png")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m studies.semi_supervised",
        description="Resumable multi-seed study: supervised, FixMatch, FreeMatch, FreeMatch + "
        "MIR/HDR (arXiv 2409.16767) on Fashion-MNIST; writes the report into "
        "docs/semi_supervised.md.",
    )
    grid = parser.add_argument_group("grid")
    grid.add_argument("--labels", type=int, nargs="+", default=[4, 25], help="labels per class")
    grid.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    methods = list(cells.METHODS)
    grid.add_argument("--methods", nargs="+", default=methods, choices=methods)
    grid.add_argument(
        "--sign-labels",
        type=int,
        nargs="*",
        default=[4],
        help=f"labels per class of the {cells.NEGATED_FAIRNESS!r} cells",
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
    runs.add_argument("--common", default=cells.COMMON, help="options shared by every run")
    runs.add_argument("--extra", default="", help="more options for every run (e.g. in tests)")
    where = parser.add_argument_group("files")
    where.add_argument("--records", default=cells.RECORDS, help="one JSON per finished cell")
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
    driver.report_flag(what, "--report-only", "run nothing: write the report from the records")
    return parser


def parse(argv=None):
    """The parsed options; `--report-only` (deprecated) means `--report`."""
    return driver.resolve_report(build_parser().parse_args(argv), "--report-only")


def run(args, runner=None):
    """Runs the missing cells (the selection first, then the grid); returns their names.

    The report is rewritten after every finished cell. `--dry-run` prints
    every cell's command, the finished ones marked, and returns the cells it
    would run. `runner(job)` replaces the process (tests).
    """
    if args.jobs < 1:
        raise SystemExit(f"error: --jobs must be a positive integer, got {args.jobs}")
    done = []
    for stage in ("select", "grid"):
        status = cells.stage_jobs(args, stage)
        todo = [job for job, finished in status if not finished]
        if args.max_runs is not None:
            todo = todo[: max(0, args.max_runs - len(done))]
        if args.dry_run:
            driver.print_plan(status, set(todo), driver.backend_name())
            done += [job.name for job in todo]
            continue
        done += driver.run_jobs(
            todo,
            cells.summarize,
            args.records,
            jobs=args.jobs,
            runner=runner,
            after_each=lambda: write_report(args),
        )
    return done


def write_report(args):
    """Writes the report into `--doc` (if it exists) and the figure; returns the text."""
    text = tables.report(args)
    if args.doc and os.path.exists(args.doc):
        docs.write(text, args.doc)
    if args.figure:
        figure.figure(args, args.figure)
    return text


def main(argv=None, runner=None):
    args = parse(argv)
    if not args.report:
        held = None if args.dry_run else driver.lock(args.output)
        try:
            done = run(args, runner=runner)
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
