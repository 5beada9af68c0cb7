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

import functools
import os
import sys

from studies import driver, study

RECORDS, DOC, FIGURE = study.locations(__file__, "pruning")
MODULE = "studies.pruning.cell"
SEEDS = (0, 1, 2)
# The cell's defaults (studies.pruning.cell imports Keras; this module does not).
EPOCHS = 10
FINE_TUNE_EPOCHS = 2


def build_parser():
    parser = study.parser(
        "pruning",
        "Global magnitude pruning of the conv net on the Fashion-MNIST subset: "
        "accuracy and the MIR/HDR/NC1 of arXiv 2409.16767 against sparsity, with and without "
        "fine-tuning; writes docs/pruning.md and docs/images/pruning.png.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--fine-tune-epochs", type=int, default=FINE_TUNE_EPOCHS)
    return study.add_common_options(parser, "pruning", RECORDS, DOC, figure=FIGURE)


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
    return {
        **study.header(results, job, backend, wall_seconds),
        "keras": results.get("keras"),
        "prune_seconds": results.get("prune_seconds"),
        "settings": results["settings"],
        "rows": results["rows"],
    }


def records(args):
    """`{seed: record}` of the grid's recorded cells, in plan order."""
    return study.recorded(plan(args), args.records)


def write_report(args):
    """Prints the tables; writes them into `--doc` and the figure to `--figure` if asked."""
    from studies.pruning import figure, table

    found = records(args)
    draw = functools.partial(figure.figure, found) if found else None
    return study.publish(args, table.report(found), legend=table.LEGEND, draw=draw)


def main(argv=None, runner=None):
    return study.run_or_report(parse(argv), plan, summarize, write_report, runner)


if __name__ == "__main__":
    main(sys.argv[1:])
