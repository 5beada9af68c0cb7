"""`python -m studies.mode_connectivity`: loss barriers against MIR/HDR/NC1 along the path.

Runs each (spawn epoch, seed) cell of the grid with
`python -m studies.mode_connectivity.cell`, one at a time, and keeps one JSON
record per finished cell in `--records` (the exact command and the cell's
results.json: settings, the children's test values, the interpolation path,
the barriers, the measures at the midpoint and at the end points). The table
(`studies.mode_connectivity.table`) is written between the
`<!-- experiment:start -->` and `<!-- experiment:end -->` markers of
`docs/mode_connectivity.md`, and the figure to
`docs/images/mode_connectivity.png`, from the records of the grid's finished
cells only. A cell whose record exists is not run again; a cell folder that
already holds a `results.json` is recorded without rerunning it (`--fresh`
reruns it). The measures are those of arXiv 2409.16767 (`keras_nc.metrics`).

Example:

```bash
python -m studies.mode_connectivity                # run (or resume) the grid, write the report
python -m studies.mode_connectivity --dry-run      # every cell's command, what is done
python -m studies.mode_connectivity --report       # the table and figure from the records only
```
"""

import functools
import os
import sys

from studies import driver, study

RECORDS, DOC, FIGURE = study.locations(__file__, "mode_connectivity")
MODULE = "studies.mode_connectivity.cell"
# -1: the control, two independent initialisations (`cell.INDEPENDENT`).
SPAWN_EPOCHS = (-1, 0, 1, 4)
SEEDS = (0, 1, 2)
EPOCHS = 8


def build_parser():
    parser = study.parser(
        "mode_connectivity",
        "Linear mode connectivity on the Fashion-MNIST subset: loss and accuracy "
        "barriers between two children spawned at epoch k, and the MIR/HDR/NC1 of arXiv "
        "2409.16767 along their segment; writes docs/mode_connectivity.md.",
    )
    parser.add_argument("--spawn-epochs", type=int, nargs="+", default=list(SPAWN_EPOCHS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    return study.add_common_options(parser, "mode_connectivity", RECORDS, DOC, figure=FIGURE)


def parse(argv=None):
    return build_parser().parse_args(argv)


def slug(spawn_epoch, seed):
    return f"independent-seed{seed}" if spawn_epoch < 0 else f"k{spawn_epoch}-seed{seed}"


def plan(args):
    """The grid's `Job`s, spawn-epoch-major."""
    jobs = []
    for spawn_epoch in args.spawn_epochs:
        for seed in args.seeds:
            name = slug(spawn_epoch, seed)
            out = os.path.join(args.output, name)
            argv = ["--seed", str(seed), "--spawn-epoch", str(spawn_epoch)]
            argv += ["--epochs", str(args.epochs), "--output", out, "--verbose", "0"]
            cell = {"spawn_epoch": spawn_epoch, "seed": seed}
            jobs.append(driver.Job(name, MODULE, tuple(argv), out, cell=cell))
    return jobs


def summarize(results, job, backend, wall_seconds):
    """The record of a finished cell: the command and its results.json."""
    return {
        **study.header(results, job, backend, wall_seconds),
        "keras": results.get("keras"),
        "path_seconds": results["path_seconds"],
        "settings": results["settings"],
        "children_test": results["children_test"],
        "loss_barrier": results["loss_barrier"],
        "accuracy_barrier": results["accuracy_barrier"],
        "midpoint": results["midpoint"],
        "end_points": results["end_points"],
        "path": results["path"],
    }


def records(args):
    """`{(spawn_epoch, seed): record}` of the grid's recorded cells, in plan order."""
    return study.recorded(plan(args), args.records)


def write_report(args):
    """Prints the table; writes it into `--doc` and the figure to `--figure` if asked."""
    from studies.mode_connectivity import figure, table

    found = records(args)
    text = table.report(found, args.spawn_epochs)
    return study.publish(
        args, text, draw=functools.partial(figure.figure, found, args.spawn_epochs)
    )


def main(argv=None, runner=None):
    return study.run_or_report(parse(argv), plan, summarize, write_report, runner)


if __name__ == "__main__":
    main(sys.argv[1:])
