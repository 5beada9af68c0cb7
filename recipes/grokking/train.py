"""Grokking of modular arithmetic with Neural Collapse measures logged along the way.

`python -m recipes.grokking` trains a `keras_nc.models.CollapseClassifier`
(an MLP or a one-block transformer over the tokens `[a, b, =]`, a linear head
over the `p` residues) on a fraction of all the pairs of `(a op b) mod p`
with AdamW and strong weight decay, full-batch by default. Every
`--log-every` steps, `recipes.grokking.measure.SplitMeasures` evaluates the
loss, accuracy, sample-head MIR/HDR, class MIR/HDR, NC1 and the feature and
head entropies on the whole train and test sets; Keras' `CSVLogger` writes
them with the running training loss and accuracy of those steps.

Outputs in `--output`: `history.csv` (one row per logging interval, with its
`step`), `report.png` (every curve on a log step axis with the Neural
Collapse reference values), `results.json` (settings, the steps at which test
accuracy reaches 50% and 95% and each measure 90% of its final change, wall
time) and `model.keras`.
"""

import argparse
import os
import sys
import time

import keras

from recipes.grokking import data as data_lib
from recipes.grokking import progress, report
from recipes.grokking.measure import SplitMeasures
from recipes.grokking.model import BACKBONES, build_model, compile_model
from recipes.program import HelpFormatter, banner, start, write_results


def build_parser():
    """The `argparse` parser of `python -m recipes.grokking` (see `--help`)."""
    parser = argparse.ArgumentParser(
        prog="python -m recipes.grokking",
        description="Grokking of (a op b) mod p by a keras_nc CollapseClassifier, with MIR, "
        "HDR, NC1 and matrix entropies of the train and test sets logged every --log-every "
        "steps. The backend follows KERAS_BACKEND (tensorflow, jax, torch).",
        formatter_class=HelpFormatter,
    )
    task = parser.add_argument_group("task")
    task.add_argument("--p", type=int, default=97, help="modulus (a prime for division)")
    task.add_argument("--op", default="+", choices=data_lib.OPERATIONS, help="operation")
    task.add_argument(
        "--train-fraction", type=float, default=0.4, help="fraction of all pairs for training"
    )

    model = parser.add_argument_group("model")
    model.add_argument("--model", default="mlp", choices=BACKBONES, help="backbone")
    model.add_argument(
        "--width",
        type=int,
        help="MLP hidden width or transformer model width (default: 256 mlp, 128 transformer)",
    )

    train = parser.add_argument_group("optimisation")
    train.add_argument("--steps", type=int, default=3000, help="optimisation steps")
    train.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="samples per step (default: the whole training set, full-batch)",
    )
    train.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate")
    train.add_argument("--weight-decay", type=float, default=1.0, help="AdamW weight decay")
    train.add_argument("--warmup-steps", type=int, default=10, help="linear warm-up steps")
    train.add_argument(
        "--mir-weight", type=float, default=0.0, metavar="W", help="weight of the MIR reward"
    )
    train.add_argument(
        "--hdr-weight", type=float, default=0.0, metavar="W", help="weight of the HDR penalty"
    )
    train.add_argument(
        "--cma-weight", type=float, default=0.0, metavar="W", help="weight of the CMA loss"
    )
    train.add_argument("--seed", type=int, default=0, help="seed of the split and the weights")

    out = parser.add_argument_group("measures and output")
    out.add_argument(
        "--log-every",
        type=int,
        default=50,
        metavar="K",
        help="measure the train and test sets every K steps (one Keras epoch = K steps)",
    )
    out.add_argument(
        "--eval-batch-size",
        type=int,
        default=512,
        metavar="N",
        help="batch size of the measurements (sample-head MIR/HDR are means over such batches)",
    )
    out.add_argument(
        "--output", metavar="DIR", help="output directory (default: outputs/grokking-<op>-<p>)"
    )
    out.add_argument(
        "--verbose", type=int, default=1, choices=(0, 1, 2), help="fit verbosity: 1 progress bar"
    )
    return parser


def resolve(args):
    """Checks the options; fills `--output`."""
    positive = ("steps", "log_every", "eval_batch_size", "warmup_steps")
    for key in (*positive, "batch_size", "width"):
        value = getattr(args, key)
        least = 0 if key == "warmup_steps" else 1
        if value is not None and value < least:
            raise SystemExit(f"error: --{key.replace('_', '-')} must be >= {least}")
    if args.steps % args.log_every:
        raise SystemExit("error: --steps must be a multiple of --log-every")
    for key in ("mir_weight", "hdr_weight", "cma_weight", "weight_decay"):
        if getattr(args, key) < 0:
            raise SystemExit(f"error: --{key.replace('_', '-')} must be >= 0")
    if args.lr <= 0:
        raise SystemExit("error: --lr must be > 0")
    if args.output is None:
        slug = {"+": "add", "-": "sub", "*": "mul", "/": "div"}[args.op]
        args.output = os.path.join("outputs", f"grokking-{slug}-{args.p}")
    return args


def compiled_model(args, vocabulary_size):
    """The backbone of `args`, compiled with AdamW and the collapse losses asked for."""
    model = build_model(args.p, vocabulary_size, args.model, args.width)
    compile_model(
        model,
        lr=args.lr,
        weight_decay=args.weight_decay,
        mir_weight=args.mir_weight,
        hdr_weight=args.hdr_weight,
        cma_weight=args.cma_weight,
        warmup_steps=args.warmup_steps,
    )
    return model


def main(argv=None):
    """Runs the recipe; returns the results dict also written to `results.json`."""
    args = resolve(build_parser().parse_args(argv))
    try:
        data = data_lib.modular_dataset(args.p, args.op, args.train_fraction, args.seed)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    backend = start(args)
    model = compiled_model(args, data.vocabulary_size)
    batches = data_lib.StepBatches(
        data.x_train, data.y_train, args.log_every, args.batch_size, seed=args.seed
    )
    measures = SplitMeasures(
        (data.x_train, data.y_train), (data.x_test, data.y_test), args.eval_batch_size
    )
    # SplitMeasures first: the CSVLogger after it writes its values in the same row.
    callbacks = [measures, keras.callbacks.CSVLogger(os.path.join(args.output, "history.csv"))]
    batch = "full batch" if batches.batch_size is None else f"batch {batches.batch_size}"
    banner(
        f"{data.name}: {len(data.y_train)} training / {len(data.y_test)} test pairs",
        f"{args.model} ({model.count_params():,} parameters), {args.steps} steps, {batch}",
        f"AdamW lr {args.lr} weight decay {args.weight_decay}",
        f"one epoch = {args.log_every} steps",
    )
    began = time.time()
    model.fit(
        batches,
        epochs=args.steps // args.log_every,
        callbacks=callbacks,
        verbose=args.verbose,
        shuffle=False,
    )
    elapsed = time.time() - began
    model.save(os.path.join(args.output, "model.keras"))

    history = progress.read_history(os.path.join(args.output, "history.csv"), args.log_every)
    summary = progress.summarize(history)
    title = f"{data.name}, {args.model}, train fraction {args.train_fraction}, {backend}"
    report.plot_report(history, args.p, os.path.join(args.output, "report.png"), title=title)
    print(f"\n{title}: {args.steps} steps in {elapsed:.0f} s")
    print(progress.format_summary(summary))
    results = {
        "settings": vars(args),
        "backend": backend,
        "train_seconds": elapsed,
        "train_size": len(data.y_train),
        "test_size": len(data.y_test),
        "final": {key: values[-1] for key, values in history.items()},
        "steps_to": summary,
    }
    write_results(args.output, results)
    print(f"\nwrote history.csv, report.png, results.json, model.keras to {args.output}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
