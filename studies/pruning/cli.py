"""`python -m studies.pruning`: accuracy, MIR, HDR and NC1 of the conv net under pruning.

Runs one cell per seed with `python -m studies.pruning.cell` (train once, then
global magnitude pruning at every sparsity, evaluated directly, after the
batch normalisation statistics are recomputed, and after fine-tuning), one at
a time, and keeps one JSON record per finished cell in `--records` (the exact
command and the cell's results.json). The table (`studies.pruning.table`) is
written between the `<!-- experiment:start -->` and `<!-- experiment:end -->`
markers of `docs/pruning.md`, and the figure (`studies.pruning.figure`) to
`docs/images/pruning.png`, from the records only. A cell whose record exists is
not run again; a cell folder that already holds a `results.json` is recorded
without rerunning it (`--fresh` reruns it). The measures are those of
arXiv 2409.16767 (`keras_nc.metrics`).

Example:

```bash
python -m studies.pruning                # run (or resume) the grid, write the report
python -m studies.pruning --dry-run      # every cell's command, what is done
python -m studies.pruning --report       # the table and figure from the records only
```
"""

import argparse
import os
import sys
import textwrap

from studies import driver

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RECORDS = os.path.join(HERE, "records")
DOC = os.path.join(ROOT, "docs", "pruning.md")
FIGURE = os.path.join(ROOT, "docs", "images", "pruning.png")
MODULE = "studies.pruning.cell"
SEEDS = (0, 1, 2)
# The cell's defaults (studies.pruning.cell imports Keras; this module does not).
EPOCHS = 10
FINE_TUNE_EPOCHS = 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m studies.pruning",
        description="Global magnitude pruning of the conv net on the Fashion-MNIST subset: "
        "accuracy and the MIR/HDR/NC1 of arXiv 2409.16767 against sparsity, with and without "
        "fine-tuning; writes docs/pruning.md and docs/images/pruning.png.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--fine-tune-epochs", type=int, default=FINE_TUNE_EPOCHS)
    parser.add_argument("--records", default=RECORDS, help="one JSON per finished cell")
    parser.add_argument("--output", default=os.path.join("outputs", "studies", "pruning"))
    parser.add_argument("--doc", default=DOC, help="Markdown file to write the table into")
    parser.add_argument("--figure", default=FIGURE, help="PNG file of the figure ('' for none)")
    parser.add_argument("--fresh", action="store_true", help="rerun cells whose folder is done")
    parser.add_argument(
        "--dry-run", action="store_true", help="print every cell's command, run nothing"
    )
    parser.add_argument(
        "--report", action="store_true", help="run nothing: the report of the recorded cells"
    )
    return parser


def parse(argv=None):
    return build_parser().parse_args(argv)


def slug(seed):
    return f"seed{seed}"


def plan(args):
    """The grid's `Job`s: one per seed."""
    jobs = []
    for seed in args.seeds:
        out = os.path.join(args.output, slug(seed))
        argv = ["--seed", str(seed), "--epochs", str(args.epochs)]
        argv += ["--fine-tune-epochs", str(args.fine_tune_epochs), "--output", out]
        jobs.append(driver.Job(slug(seed), MODULE, tuple(argv), out, cell={"seed": seed}))
    return jobs


def summarize(results, job, backend, wall_seconds):
    """The record of a finished cell: the command and its results.json."""
    backend = results.get("backend", backend)  # a reused run's own backend
    return {
        "cell": job.cell,
        **driver.run_header(job, backend, results, wall_seconds),
        "keras": results.get("keras"),
        "prune_seconds": results.get("prune_seconds"),
        "settings": results["settings"],
        "rows": results["rows"],
    }


def records(args):
    """`{seed: record}` of the grid's recorded cells, in plan order."""
    found = {}
    for job in plan(args):
        record = driver.load_record(args.records, job.name)
        if record is not None:
            found[job.cell["seed"]] = record
    return found


def write_report(args):
    """Prints the tables; writes them into `--doc` and the figure to `--figure` if asked."""
    from studies import docs
    from studies.pruning import figure, table

    found = records(args)
    text = table.report(found)
    print(textwrap.fill(table.LEGEND, width=100))
    print(text)
    if args.doc and os.path.exists(args.doc):
        docs.write(text, args.doc)
    if args.figure and found:
        figure.figure(found, args.figure)
    return text


def main(argv=None, runner=None):
    args = parse(argv)
    if not args.report:
        status = driver.pending(plan(args), args.records)
        todo = [job for job, finished in status if not finished]
        if args.dry_run:
            driver.print_plan(status, set(todo), driver.backend_name())
            return [job.name for job in todo]
        with driver.lock(args.output):
            driver.run_jobs(todo, summarize, args.records, runner=runner, reuse=not args.fresh)
    return write_report(args)


if __name__ == "__main__":
    main(sys.argv[1:])
