"""`python -m studies.early_stopping`: can `EarlyStopping` on MIR, HDR or NC1 stop training well?

Runs one `python -m studies.early_stopping.cell` per seed (the full
`--epochs`, every epoch's train, validation and test logs) and one check run
(seed `--check-seed` trained with Keras' own `EarlyStopping` on
`--check-monitor`), keeps one JSON record per finished run in `--records`,
and writes the report (`studies.early_stopping.table`: the stopping rules
replayed on the recorded logs, `studies.early_stopping.replay`; the figure)
into docs/early_stopping.md and docs/images/early_stopping.png from the
records only. A run whose record exists is not run again. The measures are
those of arXiv 2409.16767 (`keras_nc.metrics`).

Example:

```bash
KERAS_BACKEND=tensorflow python -m studies.early_stopping   # run (or resume), write the report
python -m studies.early_stopping --dry-run                  # every run's command, what is done
python -m studies.early_stopping --report                   # the report from the records only
```
"""

import functools
import os
import sys

from studies import driver, study

RECORDS, DOC, FIGURE = study.locations(__file__, "early_stopping")
MODULE = "studies.early_stopping.cell"
EPOCHS = 30


def build_parser():
    parser = study.parser(
        "early_stopping",
        "Early stopping on the validation loss, accuracy, MIR, HDR and NC1 "
        "(arXiv 2409.16767) of a Fashion-MNIST conv net; writes docs/early_stopping.md.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs of every run")
    parser.add_argument("--check-seed", type=int, default=0, help="seed of the check run")
    parser.add_argument("--check-monitor", default="val_mir", help="monitor of the check run")
    parser.add_argument("--check-patience", type=int, default=3, help="its patience")
    return study.add_common_options(
        parser,
        "early_stopping",
        RECORDS,
        DOC,
        figure=FIGURE,
        unit="run",
        fresh=False,
        doc_help="Markdown file to write the report into",
        figure_help="PNG file of the figure",
        report_help="run nothing: report the records",
    )


def parse(argv=None):
    return build_parser().parse_args(argv)


def plan(args):
    """The runs: one full run per seed, then the check run with `EarlyStopping`."""
    jobs = []
    for seed in args.seeds:
        name = f"seed{seed}"
        out = os.path.join(args.output, name)
        argv = ("--seed", str(seed), "--epochs", str(args.epochs), "--output", out)
        jobs.append(driver.Job(name, MODULE, argv, out, cell={"seed": seed}))
    name = f"check-seed{args.check_seed}"
    out = os.path.join(args.output, name)
    argv = ("--seed", str(args.check_seed), "--epochs", str(args.epochs), "--output", out,
            "--monitor", args.check_monitor, "--patience", str(args.check_patience))  # fmt: skip
    cell = {"seed": args.check_seed, "monitor": args.check_monitor}
    jobs.append(driver.Job(name, MODULE, argv, out, cell={**cell, "patience": args.check_patience}))
    return jobs


def summarize(results, job, backend, wall_seconds):
    """The record of a finished run: the command, its settings, per-epoch logs and stop."""
    record = {
        **study.header(results, job, backend, wall_seconds),
        "epochs_run": results["epochs_run"],
        "history": results["history"],
    }
    if "early_stopping" in results:
        record["early_stopping"] = results["early_stopping"]
    return record


def records(args):
    """`(runs, check)`: `{seed: record}` of the full runs, and the check run's record."""
    runs = study.recorded(
        plan(args), args.records, key=lambda job: job.cell.get("monitor", job.cell["seed"])
    )
    check = runs.pop(args.check_monitor, None)
    return runs, check


def write_report(args):
    """Prints the report; writes it into `--doc` and the figure into `--figure`."""
    from studies.early_stopping import figure, table  # Keras: only when reporting

    runs, check = records(args)
    draw = functools.partial(figure.draw, runs) if runs else None
    return study.publish(args, table.report(runs, check), draw=draw)


def main(argv=None, runner=None):
    return study.run_or_report(parse(argv), plan, summarize, write_report, runner)


if __name__ == "__main__":
    main(sys.argv[1:])
