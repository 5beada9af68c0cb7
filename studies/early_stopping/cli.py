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

import argparse
import os
import sys

from studies import docs, driver

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RECORDS = os.path.join(HERE, "records")
DOC = os.path.join(ROOT, "docs", "early_stopping.md")
FIGURE = os.path.join(ROOT, "docs", "images", "early_stopping.png")
MODULE = "studies.early_stopping.cell"
EPOCHS = 30


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m studies.early_stopping",
        description="Early stopping on the validation loss, accuracy, MIR, HDR and NC1 "
        "(arXiv 2409.16767) of a Fashion-MNIST conv net; writes docs/early_stopping.md.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs of every run")
    parser.add_argument("--check-seed", type=int, default=0, help="seed of the check run")
    parser.add_argument("--check-monitor", default="val_mir", help="monitor of the check run")
    parser.add_argument("--check-patience", type=int, default=3, help="its patience")
    parser.add_argument("--records", default=RECORDS, help="one JSON per finished run")
    parser.add_argument("--output", default=os.path.join("outputs", "studies", "early_stopping"))
    parser.add_argument("--doc", default=DOC, help="Markdown file to write the report into")
    parser.add_argument("--figure", default=FIGURE, help="PNG file of the figure")
    parser.add_argument(
        "--dry-run", action="store_true", help="print every run's command, run nothing"
    )
    parser.add_argument("--report", action="store_true", help="run nothing: report the records")
    return parser


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
        "cell": job.cell,
        **driver.run_header(job, backend, results, wall_seconds),
        "epochs_run": results["epochs_run"],
        "history": results["history"],
    }
    if "early_stopping" in results:
        record["early_stopping"] = results["early_stopping"]
    return record


def records(args):
    """`(runs, check)`: `{seed: record}` of the full runs, and the check run's record."""
    runs, check = {}, None
    for job in plan(args):
        record = driver.load_record(args.records, job.name)
        if record is None:
            continue
        if "monitor" in job.cell:
            check = record
        else:
            runs[job.cell["seed"]] = record
    return runs, check


def write_report(args):
    """Prints the report; writes it into `--doc` and the figure into `--figure`."""
    from studies.early_stopping import figure, table  # Keras: only when reporting

    runs, check = records(args)
    text = table.report(runs, check)
    print(text)
    if args.doc and os.path.exists(args.doc):
        docs.write(text, args.doc)
    if args.figure and runs:
        figure.draw(runs, args.figure)
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
            driver.run_jobs(todo, summarize, args.records, runner=runner)
    return write_report(args)


if __name__ == "__main__":
    main(sys.argv[1:])
