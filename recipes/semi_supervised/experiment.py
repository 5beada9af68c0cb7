"""The Fashion-MNIST experiment of the docs: supervised-only vs FixMatch vs FreeMatch (+ MIR/HDR).

`python -m recipes.semi_supervised.experiment` runs every (labels per class,
method, seed) of the grid one after the other with `python -m
recipes.semi_supervised`, collects `results.json` and writes the table
between the `<!-- experiment:start -->` and `<!-- experiment:end -->` markers
of `docs/semi_supervised.md`. Runs already done (a `results.json` in their
output folder) are reused: `--fresh` reruns them.

Example:

```bash
python -m recipes.semi_supervised.experiment --labels 4 25 --seeds 0 --steps 500
```
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from recipes.doc_tables import write_table

METHODS = {
    "supervised": ["--algorithm", "supervised"],
    "FixMatch": ["--algorithm", "fixmatch"],
    "FreeMatch": ["--algorithm", "freematch"],
    "FreeMatch + MIR/HDR": [
        "--algorithm",
        "freematch",
        "--mir-weight",
        "0.5",
        "--hdr-weight",
        "0.5",
    ],
}
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "semi_supervised.md")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m recipes.semi_supervised.experiment")
    parser.add_argument("--labels", type=int, nargs="+", default=[4, 25], help="labels per class")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--test-samples", type=int, default=2000)
    parser.add_argument(
        "--common",
        default="--model wrn10_2 --width 0.5 --batch-size 16 --uratio 3 --ema-momentum 0.99",
        help="options shared by every run",
    )
    parser.add_argument("--output", default=os.path.join("outputs", "ssl-experiment"))
    parser.add_argument("--fresh", action="store_true", help="rerun finished runs")
    parser.add_argument("--doc", default=DOC, help="Markdown file to write the table into")
    return parser


def run(args):
    results = {}
    for labels in args.labels:
        for method in args.methods:
            for seed in args.seeds:
                slug = method.lower().replace(" + ", "-").replace("/", "")
                out = os.path.join(args.output, f"{labels}-{slug}-{seed}")
                path = os.path.join(out, "results.json")
                if args.fresh or not os.path.exists(path):
                    command = [
                        sys.executable,
                        "-m",
                        "recipes.semi_supervised",
                        "--dataset",
                        "fashion_mnist",
                        "--labels-per-class",
                        str(labels),
                        "--steps",
                        str(args.steps),
                        "--eval-every",
                        str(args.eval_every),
                        "--test-samples",
                        str(args.test_samples),
                        "--seed",
                        str(seed),
                        "--output",
                        out,
                        "--verbose",
                        "2",
                        *args.common.split(),
                        *METHODS[method],
                    ]
                    print(" ".join(command[1:]), flush=True)
                    subprocess.run(command, check=True)
                with open(path) as f:
                    results[labels, method, seed] = json.load(f)
    return results


def table(results, args):
    lines = [
        "| labels | method | test accuracy (%) | mask ratio | pseudo-label acc. | "
        "MIR | HDR | minutes |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for labels in args.labels:
        for method in args.methods:
            runs = [
                results[labels, method, s] for s in args.seeds if (labels, method, s) in results
            ]
            if not runs:
                continue
            acc = np.array([100 * r["test_accuracy"] for r in runs])
            acc_text = f"{acc.mean():.1f}" + (f" ± {acc.std(ddof=1):.1f}" if len(acc) > 1 else "")

            def last(key, runs=runs):
                values = [r["history"][key][-1] for r in runs if key in r["history"]]
                return f"{np.mean(values):.3f}" if values else "-"

            minutes = np.mean([r["train_seconds"] for r in runs]) / 60
            lines.append(
                f"| {labels * 10} | {method} | {acc_text} | {last('mask_ratio')} | "
                f"{last('pseudo_accuracy')} | {last('mir')} | {last('hdr')} | {minutes:.1f} |"
            )
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    results = run(args)
    text = table(results, args)
    print(text)
    if os.path.exists(args.doc):
        write_table(text, args.doc)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
