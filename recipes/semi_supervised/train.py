"""Semi-supervised training: supervised baseline, FixMatch or FreeMatch, optional MIR/HDR terms.

`python -m recipes.semi_supervised` keeps `--labels-per-class` labels per class
of the training set (drawn with `--seed`), treats the rest as unlabelled and
trains a WideResNet (WRN-28-2 by default; `--width` narrows it for CPUs) with
the chosen algorithm and USB's defaults (arXiv 2208.07204): labelled batch 64,
`uratio` 7, SGD 0.03 with Nesterov momentum 0.9, weight decay 5e-4, learning
rate `lr * cos(7 pi k / (16 K))`, an exponential moving average of the
weights (0.999) for every evaluation. One "epoch" is `--eval-every` steps;
the test set (or a fixed seeded subset of `--test-samples` images) is
evaluated with the averaged weights after each. Exactly `--steps` steps run:
when it is not a multiple of `--eval-every`, the last period is shorter.

`--validation-samples N` holds out `N` training images before the
labelled/unlabelled split (a fixed draw, `VALIDATION_SEED`, the same for every
`--seed`; never trained on, not even unlabelled): they are the validation set
(`val_*` logs) and the test set is then logged as `test_accuracy`/`test_loss`
(`EMATestEvaluation`); `results.json` reports the test accuracy at the last
step and at the epoch of best validation accuracy.

Outputs in `--output`: `history.csv` (per epoch: loss, `sup_loss`,
`unsup_loss`, `mask_ratio`, `pseudo_accuracy`, `threshold`, `fairness_loss`
(FreeMatch), `mir`, `hdr`, the labelled-batch `accuracy` and `val_loss`,
`val_accuracy`, with a validation set also `test_loss`, `test_accuracy`),
`results.json` (settings, the final table, the history) and
`model.keras` (the averaged weights; loads with `safe_mode=True`).

Before the first step, which traces and compiles the train step (a minute or
more for WRN-28-2 on a CPU), the program prints what it builds and compiles
(`FirstStepNotice`); Keras' progress bar then advances at every step.

`--resume` continues an interrupted run from `<output>/backup`
(`keras.callbacks.BackupAndRestore`: weights, optimizer and its weight
average, FreeMatch's state, the epoch).
"""

import math
import os
import sys
import time

import keras
import numpy as np

from recipes import data as data_lib
from recipes.backbones import build_backbone
from recipes.program import start, write_results
from recipes.semi_supervised import data as ssl_data
from recipes.semi_supervised.callbacks import EMATestEvaluation, FirstStepNotice, StopAtStep
from recipes.semi_supervised.cli import build_parser, resolve
from recipes.semi_supervised.models import ALGORITHMS
from recipes.semi_supervised.schedule import USBCosineDecay

__all__ = [
    "EMATestEvaluation",
    "FirstStepNotice",
    "StopAtStep",
    "USBCosineDecay",
    "best_validation",
    "build_model",
    "build_parser",
    "hold_out_validation",
    "main",
    "resolve",
]

VALIDATION_SEED = 12345


def build_model(args, image_shape, num_classes):
    regularizer = keras.regularizers.L2(args.weight_decay / 2) if args.weight_decay else None
    backbone = build_backbone(
        args.model, image_shape, width=args.width, kernel_regularizer=regularizer
    )
    head = keras.layers.Dense(num_classes, kernel_regularizer=regularizer, name="head")
    kwargs = {
        "head": head,
        "mir_weight": args.mir_weight,
        "hdr_weight": args.hdr_weight,
        "unlabeled_information": args.unlabeled_information,
    }
    if args.algorithm != "supervised":
        kwargs["lambda_u"] = args.lambda_u
    if args.algorithm == "fixmatch":
        kwargs["threshold"] = args.threshold
    if args.algorithm == "freematch":
        kwargs.update(
            lambda_f=args.lambda_f,
            sat_momentum=args.sat_momentum,
            fairness_sign=args.fairness_sign,
        )
    model = ALGORITHMS[args.algorithm](backbone, num_classes, **kwargs)
    optimizer = keras.optimizers.SGD(
        USBCosineDecay(args.lr, args.steps),
        momentum=args.momentum,
        nesterov=True,
        use_ema=True,
        ema_momentum=args.ema_momentum,
    )
    model.compile(optimizer=optimizer)
    return model


FINAL_KEYS = (
    ("sup_loss", "supervised loss"),
    ("unsup_loss", "unsupervised loss"),
    ("fairness_loss", "fairness loss (FreeMatch)"),
    ("mask_ratio", "mask ratio"),
    ("pseudo_accuracy", "pseudo-label accuracy (masked)"),
    ("threshold", "threshold (FreeMatch: global time_p)"),
    ("mir", "MIR, labelled batch"),
    ("hdr", "HDR, labelled batch"),
)


def format_table(rows):
    width = max(len(name) for name, _ in rows)
    lines = [f"{'measure':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{name:<{width}}  {value:.4f}" for name, value in rows]
    return "\n".join(lines)


def hold_out_validation(num_samples, validation_samples, seed=VALIDATION_SEED):
    """Indices of a fixed random draw of validation samples and of the rest, both sorted.

    The draw depends on `seed` only (not on the run's `--seed`), so every run
    of a study holds out the same images.

    Example:

    ```python
    validation, rest = hold_out_validation(60000, 1000)
    ```
    """
    if validation_samples >= num_samples:
        raise ValueError(
            f"`validation_samples` must be smaller than the {num_samples} training samples; "
            f"received {validation_samples}."
        )
    order = np.random.default_rng(seed).permutation(num_samples)
    return np.sort(order[:validation_samples]), np.sort(order[validation_samples:])


def best_validation(history, key="val_accuracy"):
    """`(epoch, logs)` of the first epoch with the highest `key` (0-based epoch)."""
    values = history[key]
    epoch = int(np.argmax(values))
    return epoch, {name: series[epoch] for name, series in history.items()}


def load_split(args):
    """The images, and the validation, labelled and unlabelled indices of the training set."""
    try:
        images = data_lib.load_dataset(
            args.dataset, image_size=args.image_size, data_dir=args.data_dir
        )
    except data_lib.DatasetUnavailableError as error:
        raise SystemExit(f"error: {error}") from None
    if args.validation_samples is None:
        validation, pool = None, np.arange(len(images.y_train))
    else:
        try:
            validation, pool = hold_out_validation(len(images.y_train), args.validation_samples)
        except ValueError as error:
            raise SystemExit(f"error: --validation-samples: {error}") from None
    try:
        labeled, unlabeled = ssl_data.split_labeled(
            images.y_train[pool], args.labels_per_class, seed=args.seed
        )
    except ValueError as error:
        raise SystemExit(f"error: --labels-per-class: {error}") from None
    return images, validation, pool[labeled], pool[unlabeled]


def build_datasets(args, images, validation, labeled, unlabeled):
    """`(train, test, validation_data, test_callbacks, test_samples)` of the run."""
    x_test, y_test = images.x_test, images.y_test
    if args.test_samples is not None and args.test_samples < len(y_test):
        keep = np.sort(np.random.default_rng(0).permutation(len(y_test))[: args.test_samples])
        x_test, y_test = x_test[keep], y_test[keep]
    semi = args.algorithm != "supervised"
    train = ssl_data.semi_supervised_dataset(
        images.x_train[labeled],
        images.y_train[labeled],
        images.x_train[unlabeled] if semi else None,
        batch_size=args.batch_size,
        uratio=args.uratio,
        unlabeled_labels=images.y_train[unlabeled] if semi else None,
        crop_padding=args.crop_padding,
        flip=images.flip and not args.no_flip,
        num_ops=args.randaugment_ops,
        magnitude=args.randaugment_magnitude,
        seed=args.seed,
    )
    test = data_lib.evaluation_dataset(x_test, y_test, 256)
    if validation is None:
        return train, test, test, [], len(y_test)
    validation_data = data_lib.evaluation_dataset(
        images.x_train[validation], images.y_train[validation], 256
    )
    return train, test, validation_data, [EMATestEvaluation(test)], len(y_test)


def build_callbacks(args, test_callbacks):
    """The callbacks of `fit`: step budget, EMA swap, test evaluation, CSV log (backup, notice)."""
    # The last evaluation period is shorter when --steps is not a multiple of
    # --eval-every: StopAtStep ends it after exactly --steps steps.
    callbacks = [
        StopAtStep(args.steps),
        keras.callbacks.SwapEMAWeights(),
        *test_callbacks,
        keras.callbacks.CSVLogger(os.path.join(args.output, "history.csv"), append=args.resume),
    ]
    if args.resume:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(os.path.join(args.output, "backup")))
    if args.verbose:
        callbacks.append(FirstStepNotice(f"{args.algorithm} on {args.model} x{args.width}"))
    return callbacks


def final_rows(args, history, results, validation):
    """`(rows, best)`: the final table's `(measure, value)` rows and the best-validation logs."""
    logs = {key: values[-1] for key, values in history.items()}
    rows = [("test accuracy (EMA weights)", results["accuracy"])]
    best = None
    if validation is not None:
        epoch, best = best_validation(history)
        best = {"epoch": epoch + 1, "step": min((epoch + 1) * args.eval_every, args.steps), **best}
        rows += [
            ("validation accuracy (EMA weights)", logs["val_accuracy"]),
            (f"best validation accuracy (epoch {best['epoch']})", best["val_accuracy"]),
            ("test accuracy at the best-validation epoch", best["test_accuracy"]),
        ]
    elif "val_accuracy" in history:
        rows.append(("best test accuracy during training", max(history["val_accuracy"])))
    rows.append(("labelled-batch accuracy", logs.get("accuracy", float("nan"))))
    rows += [(name, logs[key]) for key, name in FINAL_KEYS if key in logs]
    return rows, best


def describe(args, images, model, labeled, unlabeled, validation, test_samples):
    """The line printed before training: the data, the model and the run."""
    semi = args.algorithm != "supervised"
    return (
        f"{images.name}: {len(labeled)} labelled ({args.labels_per_class} per class) and "
        f"{len(unlabeled) if semi else 0} unlabelled training images {images.image_shape}, "
        f"{test_samples} test images"
        f"{f', {len(validation)} validation images' if validation is not None else ''}; "
        f"{args.algorithm} on {args.model} x{args.width} "
        f"({model.count_params():,} parameters), {args.steps} steps of batch {args.batch_size}"
        f"{f' + {args.uratio * args.batch_size} unlabelled' if semi else ''}, "
        f"{keras.backend.backend()} backend"
    )


def main(argv=None):
    """Runs the recipe; returns the results dict also written to `results.json`.

    `results.json` is strict JSON (`recipes.program.write_results`): a
    non-finite measure (a diverged run) is written as `null`.
    """
    args = resolve(build_parser().parse_args(argv))
    if args.verbose:
        print(
            f"Loading {args.dataset} and building {args.algorithm} on {args.model} "
            f"x{args.width} ({keras.backend.backend()} backend)...",
            flush=True,
        )
    images, validation, labeled, unlabeled = load_split(args)
    backend = start(args)  # seeds everything (--seed, --deterministic), creates --output
    train, test, validation_data, test_callbacks, test_samples = build_datasets(
        args, images, validation, labeled, unlabeled
    )
    model = build_model(args, images.image_shape, images.num_classes)
    print(describe(args, images, model, labeled, unlabeled, validation, test_samples), flush=True)
    began = time.time()
    history = model.fit(
        train,
        epochs=math.ceil(args.steps / args.eval_every),
        steps_per_epoch=args.eval_every,
        validation_data=validation_data,
        callbacks=build_callbacks(args, test_callbacks),
        verbose=args.verbose,
    ).history
    elapsed = time.time() - began
    # At the end of fit Keras writes the weight average into the model.
    model.save(os.path.join(args.output, "model.keras"))
    results = model.evaluate(test, verbose=0, return_dict=True)
    rows, best = final_rows(args, history, results, validation)
    title = f"{images.name}, {args.algorithm}, {len(labeled)} labels, {args.model} x{args.width}"
    print(f"\n{title}, {backend}: {args.steps} steps in {elapsed:.0f} s")
    print(format_table(rows))
    summary = {
        "settings": vars(args),
        "backend": backend,
        "labels": len(labeled),
        "train_seconds": elapsed,
        "test_accuracy": float(results["accuracy"]),
        "test_loss": float(results["loss"]),
        "test_samples": test_samples,
        "validation_samples": 0 if validation is None else len(validation),
        "best_validation": best,
        "table": [{"measure": name, "value": float(value)} for name, value in rows],
        "history": history,
    }
    write_results(args.output, summary)
    print(f"\nwrote history.csv, results.json and model.keras to {args.output}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
