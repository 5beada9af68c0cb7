"""`python -m studies.label_smoothing`: MIR, HDR and NC1 of the conv net under label smoothing.

Runs each (smoothing, seed) cell of the grid with
`python -m studies.label_smoothing.cell`, one at a time, and keeps one JSON
record per finished cell in `--records` (the exact command and the cell's
results.json: settings, final values on the training and test splits, the
per-epoch history). The table (`studies.label_smoothing.table`) is written
between the `<!-- experiment:start -->` and `<!-- experiment:end -->` markers
of `docs/label_smoothing.md`, and the figure to
`docs/images/label_smoothing.png`, from the records of the grid's finished
cells only. A cell whose record exists is not run again; a cell folder that
already holds a `results.json` is recorded without rerunning it (`--fresh`
reruns it). The measures are those of arXiv 2409.16767 (`keras_nc.metrics`),
the values at collapse those of `keras_nc.theory`.

Example:

```bash
python -m studies.label_smoothing                # run (or resume) the grid, write the report
python -m studies.label_smoothing --dry-run      # every cell's command, what is done
python -m studies.label_smoothing --report       # the table and figure from the records only
```
"""

import functools
import os
import sys

from studies import driver, study

RECORDS, DOC, FIGURE = study.locations(__file__, "label_smoothing")
MODULE = "studies.label_smoothing.cell"
SMOOTHINGS = (0.0, 0.05, 0.1, 0.2, 0.3)
SEEDS = (0, 1, 2)
EPOCHS = 12


def build_parser():
    parser = study.parser(
        "label_smoothing",
        "Label smoothing on the Fashion-MNIST subset: accuracy, NC1 and the MIR/HDR "
        "of arXiv 2409.16767 against their values at collapse; writes docs/label_smoothing.md.",
    )
    parser.add_argument("--smoothings", type=float, nargs="+", default=list(SMOOTHINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    return study.add_common_options(parser, "label_smoothing", RECORDS, DOC, figure=FIGURE)


def parse(argv=None):
    return build_parser().parse_args(argv)


def slug(smoothing, seed):
    return f"s{smoothing:g}-seed{seed}"


def plan(args):
    """The grid's `Job`s, smoothing-major."""
    jobs = []
    for smoothing in args.smoothings:
        for seed in args.seeds:
            name = slug(smoothing, seed)
            out = os.path.join(args.output, name)
            argv = ["--smoothing", f"{smoothing:g}", "--seed", str(seed)]
            argv += ["--epochs", str(args.epochs), "--output", out]
            cell = {"smoothing": smoothing, "seed": seed}
            jobs.append(driver.Job(name, MODULE, tuple(argv), out, cell=cell))
    return jobs


def summarize(results, job, backend, wall_seconds):
    """The record of a finished cell: the command and its results.json."""
    return {
        **study.header(results, job, backend, wall_seconds),
        "keras": results.get("keras"),
        "settings": results["settings"],
        "final": results["final"],
        "history": results["history"],
    }


def records(args):
    """`{(smoothing, seed): record}` of the grid's recorded cells, in plan order."""
    return study.recorded(plan(args), args.records)


def write_report(args):
    """Prints the table; writes it into `--doc` and the figure to `--figure` if asked."""
    from studies.label_smoothing import figure, table

    found = records(args)
    text = table.report(found, args.smoothings)
    draw = functools.partial(figure.figure, found, args.smoothings)
    return study.publish(args, text, legend=table.LEGEND, draw=draw)


def main(argv=None, runner=None):
    return study.run_or_report(parse(argv), plan, summarize, write_report, runner)


if __name__ == "__main__":
    main(sys.argv[1:])
