"""The grokking experiment of the docs: when do test accuracy and the collapse measures move?

`python -m recipes.grokking.experiment` runs each (configuration, seed) of the
grid one after the other with `python -m recipes.grokking`, reads each run's
`history.csv` (`recipes.grokking.progress.summarize`) and prints the table of
steps, which it also writes between the `<!-- experiment:start -->` and
`<!-- experiment:end -->` markers of `docs/grokking.md`. Runs already done (a
`results.json` in their folder) are reused: `--fresh` reruns them;
`--table-only` runs nothing and tabulates the finished runs of the grid. Each
run's command is printed before it starts.

Example:

```bash
python -m recipes.grokking.experiment --runs default --seeds 0 1 2
```
"""

import argparse
import json
import os
import subprocess
import sys
import textwrap

from recipes.doc_tables import write_table
from recipes.grokking import progress

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
# (summary key, column title): accuracy thresholds, 90% of the final change of
# the training set's NC1, sample-head MIR and HDR, and the extrema (turns) of
# NC1, MIR, class MIR and feature entropy. The measures' cells also give their
# step minus the step at which test accuracy reaches 50% (negative: it leads).
COLUMNS = (
    ("train_accuracy_99", "train acc. 99%"),
    ("val_accuracy_50", "test acc. 50%"),
    ("val_accuracy_95", "test acc. 95%"),
    ("train_nc1_90", "NC1"),
    ("train_mir_90", "MIR"),
    ("train_hdr_90", "HDR"),
    ("train_nc1_min", "NC1 min."),
    ("train_mir_max", "MIR max."),
    ("train_mir_class_max", "class MIR max."),
    ("train_matrix_entropy_max", "entropy max."),
)
# What the printed table's columns mean (docs/grokking.md says it in its text).
LEGEND = (
    "Steps (every --log-every) at which: train acc. 99%, test acc. 50%, test acc. 95%: "
    "the accuracy first reaches it; NC1, MIR, HDR: the training set's measure has made 90% "
    "of its change from the first logged value to the last (NC1 on a log scale); NC1 min., "
    "MIR max., class MIR max., entropy max.: the step of that extremum over the run. (+N): "
    "the step minus that of test acc. 50% (negative: the measure moves first). never: not "
    "reached within the run."
)
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "grokking.md")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m recipes.grokking.experiment")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--common", default="", help="options shared by every run")
    parser.add_argument("--output", default=os.path.join("outputs", "grokking-experiment"))
    parser.add_argument("--fresh", action="store_true", help="rerun finished runs")
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="run nothing: tabulate the runs of the grid that are finished",
    )
    parser.add_argument("--doc", default=DOC, help="Markdown file to write the table into")
    return parser


def run_folder(args, name, seed):
    slug = name.replace(" + ", "-").replace("/", "").replace(" ", "-").replace(".", "")
    return os.path.join(args.output, f"{slug}-seed{seed}")


def run(args):
    """Runs (or reuses) every run of the grid; returns `{(name, seed): results.json}`."""
    results = {}
    for name in args.runs:
        for seed in args.seeds:
            out = run_folder(args, name, seed)
            path = os.path.join(out, "results.json")
            if args.table_only and not os.path.exists(path):
                continue
            if args.fresh or not os.path.exists(path):
                command = [sys.executable, "-m", "recipes.grokking", "--seed", str(seed)]
                command += ["--output", out, "--verbose", "2", *args.common.split(), *RUNS[name]]
                print(" ".join(["python", *command[1:]]), flush=True)
                subprocess.run(command, check=True)
            with open(path) as f:
                results[name, seed] = json.load(f)
    return results


def row(name, seed, result, folder):
    """A table row: the steps of `COLUMNS` read from the run's `history.csv`."""
    log_every = result["settings"]["log_every"]
    summary = progress.summarize(
        progress.read_history(os.path.join(folder, "history.csv"), log_every)
    )
    jump = summary.get("val_accuracy_50")
    cells = []
    for key, _ in COLUMNS:
        step = summary.get(key)
        if step is None:
            cells.append("never")
        elif key.startswith(("train_accuracy", "val_accuracy")) or jump is None:
            cells.append(str(step))
        else:
            cells.append(f"{step} ({step - jump:+d})")
    minutes = result["train_seconds"] / 60
    return f"| {name} | {seed} | " + " | ".join(cells) + f" | {minutes:.1f} |"


def table(results, args):
    lines = [
        "| run | seed | " + " | ".join(title for _, title in COLUMNS) + " | minutes |",
        "|---|---:|" + "---:|" * (len(COLUMNS) + 1),
    ]
    for (name, seed), result in results.items():
        lines.append(row(name, seed, result, run_folder(args, name, seed)))
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    results = run(args)
    text = table(results, args)
    print(textwrap.fill(LEGEND, width=100))
    print(text)
    if os.path.exists(args.doc):
        write_table(text, args.doc)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
