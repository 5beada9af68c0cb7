"""Supervised-recipe experiments on Fashion-MNIST, written into docs/recipes.md.

- `dynamics`: a narrow ResNet-18 trained well into the terminal phase (100%
  training accuracy, weight decay on, no augmentation); copies its `report.png` to the docs and
  tabulates MIR, HDR, entropies and NC1-NC4 against the Neural Collapse values.
- `ablation`: cross-entropy alone against cross-entropy with the MIR/HDR
  regularisers at two weights, several seeds; test accuracy mean and spread.

Both call `python -m recipes.cifar` in-process (`recipes.cifar.train.main`),
one run after another, with outputs under `outputs/experiments/`.

    python benchmarks/fashion_mnist.py dynamics
    python benchmarks/fashion_mnist.py ablation --seeds 0 1 2
"""

import argparse
import csv
import json
import os
import shutil
import sys
import time

import keras
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _docs import write_section  # noqa: E402

from recipes.cifar import train  # noqa: E402

OUT = os.path.join(ROOT, "outputs", "experiments")
# No augmentation in the dynamics run, as in Papyan, Han and Donoho (2020): the
# training set is then fitted exactly and the terminal phase is well defined.
DYNAMICS = [
    "--dataset", "fashion_mnist", "--samples-per-class", "300", "--model", "resnet18",
    "--width", "0.125", "--epochs", "80", "--batch-size", "128", "--lr", "0.1",
    "--weight-decay", "5e-4", "--crop-padding", "0", "--no-flip", "--monitor-per-class", "100",
    "--monitor-every", "2", "--validation-every", "10", "--verbose", "2",
]  # fmt: skip
ABLATION = [
    "--dataset", "fashion_mnist", "--samples-per-class", "100", "--model", "resnet18",
    "--width", "0.125", "--epochs", "30", "--batch-size", "64", "--lr", "0.05",
    "--weight-decay", "5e-4", "--monitor-per-class", "50", "--monitor-every", "30",
    "--validation-every", "30", "--verbose", "0",
]  # fmt: skip
REGULARISERS = {
    "cross-entropy": [],
    "+ MIR 0.1, HDR 0.1": ["--mir-weight", "0.1", "--hdr-weight", "0.1"],
    "+ MIR 0.5, HDR 0.5": ["--mir-weight", "0.5", "--hdr-weight", "0.5"],
}


def _command(args):
    return "python -m recipes.cifar " + " ".join(args)


def dynamics(seed):
    out = os.path.join(OUT, "dynamics")
    args = [*DYNAMICS, "--seed", str(seed), "--output", out]
    keras.backend.clear_session()
    summary = train.main(args)
    shutil.copy(
        os.path.join(out, "report.png"),
        os.path.join(ROOT, "docs", "images", "fashion_mnist_dynamics.png"),
    )
    with open(os.path.join(out, "history.csv")) as f:
        accuracy = [float(row["accuracy"]) for row in csv.DictReader(f)]
    first_perfect = next((i + 1 for i, a in enumerate(accuracy) if a >= 1.0), None)
    lines = [
        "| measure | final | at collapse |",
        "|---|---:|---:|",
        f"| training accuracy (last epoch) | {accuracy[-1]:.4f} | 1 |",
    ]
    for row in summary["table"]:
        target = "" if np.isnan(row["at_collapse"]) else f"{row['at_collapse']:.4f}"
        lines.append(f"| {row['measure']} | {row['value']:.4f} | {target} |")
    header_text = (
        f"{keras.backend.backend()} backend, {summary['train_seconds'] / 60:.1f} min of "
        f"training; first epoch at 100% training accuracy: {first_perfect}."
    )
    write_section("dynamics", header_text, _command(args[:-2]), "\n".join(lines), "recipes.md")


def ablation(seeds):
    results = {name: [] for name in REGULARISERS}
    start = time.time()
    for seed in seeds:
        for name, extra in REGULARISERS.items():
            out = os.path.join(OUT, "ablation", f"{name.replace(' ', '').replace(',', '_')}-{seed}")
            keras.backend.clear_session()
            summary = train.main([*ABLATION, *extra, "--seed", str(seed), "--output", out])
            table = {row["measure"]: row["value"] for row in summary["table"]}
            results[name].append(
                {
                    "seed": seed,
                    "accuracy": table["test accuracy"],
                    "mir": table["MIR, class pairing (monitor)"],
                    "hdr": table["HDR, class pairing (monitor)"],
                    "nc1": table["NC1 within-class variability"],
                    "seconds": summary["train_seconds"],
                }
            )
            print(f"{name}, seed {seed}: test accuracy {table['test accuracy']:.4f}")
    with open(os.path.join(OUT, "ablation.json"), "w") as f:
        json.dump(results, f, indent=1)
    lines = [
        "| loss | test accuracy, mean ± std | per seed | MIR (class) | HDR (class) | NC1 | "
        "minutes per run |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        acc = np.array([r["accuracy"] for r in runs])
        per_seed = ", ".join(f"{a:.4f}" for a in acc)
        mean = {k: np.mean([r[k] for r in runs]) for k in ("mir", "hdr", "nc1", "seconds")}
        lines.append(
            f"| {name} | {acc.mean():.4f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.4f} | "
            f"{per_seed} | {mean['mir']:.3f} | {mean['hdr']:.3f} | {mean['nc1']:.3f} | "
            f"{mean['seconds'] / 60:.1f} |"
        )
    header_text = (
        f"{keras.backend.backend()} backend, seeds {list(seeds)}, "
        f"{(time.time() - start) / 60:.0f} min in all. Regulariser runs add "
        "`--mir-weight W --hdr-weight W`."
    )
    write_section("ablation", header_text, _command(ABLATION), "\n".join(lines), "recipes.md")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=("dynamics", "ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    if args.experiment == "dynamics":
        dynamics(args.seeds[0])
    else:
        ablation(args.seeds)


if __name__ == "__main__":
    main()
