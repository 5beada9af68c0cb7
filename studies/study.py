"""The command line every study shares: its options, its records, run or report.

A study's `cli.py` (`studies.grokking`, `studies.pruning`, ...) keeps only its
grid (`plan(args)`: one `driver.Job` per cell), what a record keeps of a
cell's results.json (`summarize`, starting with `header`) and its report
(`write_report(args)`); this module adds the options they all take
(`add_common_options`), gathers the recorded cells in plan order
(`recorded`), prints and writes the report (`publish`) and runs the grid or
only reports it (`run_or_report`). See
docs/grokking.md for a study's page; the measures are those of
arXiv 2409.16767.

Example:

```python
from studies import driver, study

parser = study.parser("pruning", "Global magnitude pruning of the conv net.")
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
study.add_common_options(parser, "pruning", "records", "docs/pruning.md", figure="pruning.png")
args = parser.parse_args(["--report", "--seeds", "0"])
jobs = [driver.Job(f"seed{seed}", "studies.pruning.cell", (), "out") for seed in args.seeds]
print(study.recorded(jobs, args.records, key=lambda job: job.name))  # {} : nothing recorded
```
"""

import argparse
import os
import textwrap

from studies import docs, driver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def locations(cli_file, name):
    """`(records, doc, figure)`: `records/` beside `cli_file`, `docs/<name>.md`, its PNG."""
    records = os.path.join(os.path.dirname(os.path.abspath(cli_file)), "records")
    doc = os.path.join(ROOT, "docs", f"{name}.md")
    return records, doc, os.path.join(ROOT, "docs", "images", f"{name}.png")


def parser(name, description):
    """The study's `argparse.ArgumentParser`, named `python -m studies.<name>`."""
    return argparse.ArgumentParser(prog=f"python -m studies.{name}", description=description)


def add_common_options(
    parser,
    name,
    records,
    doc,
    figure=None,
    unit="cell",
    fresh=True,
    doc_help="Markdown file to write the table into",
    figure_help="PNG file of the figure ('' for none)",
    report_help="run nothing: the report of the recorded cells",
    deprecated_report=None,
):
    """Adds `--records --output --doc [--figure] [--fresh] --dry-run --report` to `parser`.

    `unit` names a job in the help ("cell", "run"); `figure=None` leaves
    `--figure` out, `fresh=False` leaves `--fresh` out (every finished run
    folder is then rerun); `deprecated_report` is a hidden old spelling of
    `--report` (`driver.report_flag`; `parse` maps it with
    `driver.resolve_report`).
    """
    parser.add_argument("--records", default=records, help=f"one JSON per finished {unit}")
    parser.add_argument("--output", default=os.path.join("outputs", "studies", name))
    parser.add_argument("--doc", default=doc, help=doc_help)
    if figure is not None:
        parser.add_argument("--figure", default=figure, help=figure_help)
    if fresh:
        parser.add_argument(
            "--fresh", action="store_true", help=f"rerun {unit}s whose folder is done"
        )
    parser.add_argument(
        "--dry-run", action="store_true", help=f"print every {unit}'s command, run nothing"
    )
    if deprecated_report is None:
        parser.add_argument("--report", action="store_true", help=report_help)
    else:
        driver.report_flag(parser, deprecated_report, report_help)
    return parser


def header(results, job, backend, wall_seconds):
    """A record's first fields: the cell, then `driver.run_header` (a reused run's own backend)."""
    backend = results.get("backend", backend)
    return {"cell": job.cell, **driver.run_header(job, backend, results, wall_seconds)}


def cell_key(job):
    """The job's cell values: `(spawn_epoch, seed)` for a two-key cell, `seed` for a one-key one."""
    values = tuple(job.cell.values())
    return values[0] if len(values) == 1 else values


def recorded(jobs, records, key=cell_key):
    """`{key(job): record}` of the `jobs` whose record is in `records`, in the jobs' order."""
    found = {}
    for job in jobs:
        record = driver.load_record(records, job.name)
        if record is not None:
            found[key(job)] = record
    return found


def publish(args, text, legend=None, draw=None):
    """Prints the report (after `legend`, wrapped); writes it into `--doc` and draws `--figure`.

    The page is written only where `--doc` names an existing file (`docs.write`
    replaces its experiment block); `draw(path)` draws the figure where
    `--figure` names one. Returns `text`.
    """
    if legend:
        print(textwrap.fill(legend, width=100))
    print(text)
    if args.doc and os.path.exists(args.doc):
        docs.write(text, args.doc)
    path = getattr(args, "figure", None)
    if path and draw is not None:
        draw(path)
    return text


def run_or_report(args, plan, summarize, write_report, runner=None):
    """The study's `main`: runs the grid's unrecorded jobs (under the lock), then the report.

    `plan(args)` is the grid's `driver.Job`s, `summarize` makes a record
    (`driver.run_job`), `write_report(args)` the report; `runner` replaces the
    run's process (tests).

    `--dry-run` prints the plan and returns the names of the jobs to run;
    `--report` runs nothing. A run folder that holds a `results.json` is
    recorded without rerunning it unless `--fresh` (or the study has no
    `--fresh`). Returns `write_report(args)` otherwise.
    """
    if not args.report:
        status = driver.pending(plan(args), args.records)
        todo = [job for job, finished in status if not finished]
        if args.dry_run:
            driver.print_plan(status, set(todo), driver.backend_name())
            return [job.name for job in todo]
        reuse = not getattr(args, "fresh", True)
        with driver.lock(args.output):
            driver.run_jobs(todo, summarize, args.records, runner=runner, reuse=reuse)
    return write_report(args)
