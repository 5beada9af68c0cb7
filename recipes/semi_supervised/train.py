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

import argparse
import json
import math
import os
import sys
import time
import warnings

import keras
import numpy as np

from keras_nc.deprecation import warn_renamed
from recipes import data as data_lib
from recipes.backbones import BACKBONES, build_backbone
from recipes.program import HelpFormatter, seed_everything
from recipes.semi_supervised import data as ssl_data
from recipes.semi_supervised.models import (
    ALGORITHMS,
    DEPRECATED_FAIRNESS_SIGNS,
    FAIRNESS_SIGNS,
)

VALIDATION_SEED = 12345


@keras.saving.register_keras_serializable(package="keras_nc")
class USBCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """USB's learning rate: `lr * cos(7 pi k / (16 K))` at step `k` of `K`.

    Ends at `lr * cos(7 pi / 16)`, about `0.2 lr`.

    Example:

    ```python
    schedule = USBCosineDecay(0.03, total_steps=2**20)
    ```
    """

    def __init__(self, initial_learning_rate, total_steps):
        if not initial_learning_rate > 0:
            raise ValueError(
                f"`initial_learning_rate` must be > 0; received {initial_learning_rate!r}."
            )
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"`total_steps` must be a positive integer; received {total_steps!r}.")
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = total_steps

    def __call__(self, step):
        progress = keras.ops.minimum(keras.ops.cast(step, "float32") / self.total_steps, 1.0)
        return self.initial_learning_rate * keras.ops.cos(7.0 * math.pi * progress / 16.0)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "total_steps": self.total_steps,
        }


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m recipes.semi_supervised",
        description="Semi-supervised training with few labels: supervised-only baseline, FixMatch "
        "or FreeMatch (USB's defaults), optionally with the MIR/HDR regularisers of keras_nc. "
        "The backend follows KERAS_BACKEND (tensorflow, jax, torch).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--algorithm", default="freematch", choices=tuple(ALGORITHMS), help="training algorithm"
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="fashion_mnist",
        choices=data_lib.DATASETS,
        help="dataset; offline: digits, fashion_mnist (Debian's dataset-fashion-mnist), folder",
    )
    data.add_argument("--data-dir", metavar="DIR", help="image folder for --dataset folder")
    data.add_argument("--image-size", type=int, metavar="N", help="resize images (default: native)")
    data.add_argument(
        "--labels-per-class", type=int, default=4, metavar="N", help="labelled images per class"
    )
    data.add_argument(
        "--crop-padding",
        type=int,
        metavar="N",
        help="reflect padding of the random crop (default: image size / 8)",
    )
    data.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    data.add_argument(
        "--randaugment-ops",
        type=int,
        default=3,
        metavar="N",
        help="RandAugment ops per strong view",
    )
    data.add_argument(
        "--randaugment-magnitude",
        type=float,
        default=5.0,
        metavar="M",
        help="RandAugment magnitude out of 10",
    )
    data.add_argument(
        "--test-samples",
        type=int,
        metavar="N",
        help="evaluate on a fixed random subset of N test images (default: the whole test set)",
    )
    data.add_argument(
        "--validation-samples",
        type=int,
        metavar="N",
        help="hold out N training images (a fixed draw, the same for every --seed) before the "
        "labelled/unlabelled split as the validation set; the test set is then logged as "
        "test_accuracy (default: none, the test set is the validation data)",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default="wrn28_2",
        help=f"backbone: {', '.join(BACKBONES)}, depth = 6n + 4 (e.g. wrn28_2, wrn10_2)",
    )
    model.add_argument(
        "--width", type=float, default=1.0, help="channel multiplier (e.g. 0.25 on a CPU)"
    )

    opt = parser.add_argument_group("optimisation (USB's defaults)")
    opt.add_argument("--steps", type=int, default=2**20, help="training steps K")
    opt.add_argument(
        "--eval-every", type=int, default=1024, metavar="K", help="steps per epoch (evaluation)"
    )
    opt.add_argument("--batch-size", type=int, default=64, help="labelled batch size B")
    opt.add_argument("--uratio", type=int, default=7, help="unlabelled images per labelled one")
    opt.add_argument("--lr", type=float, default=0.03, help="learning rate")
    opt.add_argument("--momentum", type=float, default=0.9, help="SGD (Nesterov) momentum")
    opt.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    opt.add_argument(
        "--ema-momentum", type=float, default=0.999, help="momentum of the weight average"
    )
    opt.add_argument("--seed", type=int, default=0, help="seed of the label draw and training")
    opt.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic kernels and augmentation draws: a rerun is bit-identical (slower)",
    )

    algo = parser.add_argument_group("algorithm")
    algo.add_argument("--threshold", type=float, default=0.95, help="FixMatch threshold")
    algo.add_argument("--lambda-u", type=float, default=1.0, help="unsupervised loss weight")
    algo.add_argument(
        "--lambda-f",
        type=float,
        default=0.01,
        help="FreeMatch fairness weight (USB: 0.001 on CIFAR-10)",
    )
    algo.add_argument("--sat-momentum", type=float, default=0.999, help="FreeMatch SAT momentum")
    algo.add_argument(
        "--fairness-sign",
        default="paper",
        type=_fairness_sign,
        choices=tuple(FAIRNESS_SIGNS),
        help="FreeMatch fairness loss: paper (FreeMatch's paper and USB, sum p log q) or negated "
        "(its opposite, the cross-entropy -sum p log q)",
    )
    algo.add_argument(
        "--mir-weight", type=float, default=0.0, metavar="W", help="MIR reward weight"
    )
    algo.add_argument(
        "--hdr-weight", type=float, default=0.0, metavar="W", help="HDR penalty weight"
    )
    algo.add_argument(
        "--unlabeled-information",
        action="store_true",
        help="also apply the MIR/HDR terms to confident unlabelled samples (pseudo-labels)",
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--output",
        metavar="DIR",
        help="output directory (default: outputs/ssl-<dataset>-<algorithm>-<labels>)",
    )
    out.add_argument("--resume", action="store_true", help="resume from <output>/backup")
    out.add_argument(
        "--verbose", type=int, default=1, choices=(0, 1, 2), help="fit verbosity: 1 progress bar"
    )
    return parser


def _fairness_sign(text):
    """`--fairness-sign`'s value; a former spelling is shown a deprecation warning."""
    new = DEPRECATED_FAIRNESS_SIGNS.get(text)
    if new is None:
        return text
    with warnings.catch_warnings():
        warnings.simplefilter("always", DeprecationWarning)  # shown on the command line too
        warn_renamed(f"--fairness-sign {text}", f"--fairness-sign {new}", stacklevel=2)
    return new


def resolve(args):
    """Checks the options and fills the derived defaults."""
    positive = ("steps", "eval_every", "batch_size", "uratio", "labels_per_class")
    for key in positive:
        if getattr(args, key) < 1:
            raise SystemExit(f"error: --{key.replace('_', '-')} must be >= 1")
    if args.test_samples is not None and args.test_samples < 1:
        raise SystemExit("error: --test-samples must be >= 1")
    if args.validation_samples is not None and args.validation_samples < 1:
        raise SystemExit("error: --validation-samples must be >= 1")
    if args.mir_weight < 0 or args.hdr_weight < 0:
        raise SystemExit("error: --mir-weight and --hdr-weight must be >= 0")
    if not 0 <= args.ema_momentum < 1:
        raise SystemExit("error: --ema-momentum must be in [0, 1)")
    if args.output is None:
        name = f"ssl-{args.dataset}-{args.algorithm}-{args.labels_per_class}"
        args.output = os.path.join("outputs", name)
    return args


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


class EMATestEvaluation(keras.callbacks.Callback):
    """Evaluates a test set at every epoch end with the averaged weights; logs `test_*`.

    The evaluation runs with its own `keras.callbacks.SwapEMAWeights` (the
    weight average in, the live weights back after), so the model's
    `SwapEMAWeights` must not swap on epochs (its default). The values are
    added to the epoch's logs: place this callback before `CSVLogger`.

    Example:

    ```python
    callbacks = [keras.callbacks.SwapEMAWeights(), EMATestEvaluation(test),
                 keras.callbacks.CSVLogger("history.csv")]
    ```
    """

    def __init__(self, dataset, prefix="test_"):
        super().__init__()
        self.dataset = dataset
        self.prefix = prefix

    def on_epoch_end(self, epoch, logs=None):
        swap = [keras.callbacks.SwapEMAWeights()] if self.model.optimizer.use_ema else []
        results = self.model.evaluate(self.dataset, callbacks=swap, verbose=0, return_dict=True)
        if logs is not None:
            logs.update({f"{self.prefix}{key}": float(value) for key, value in results.items()})


def best_validation(history, key="val_accuracy"):
    """`(epoch, logs)` of the first epoch with the highest `key` (0-based epoch)."""
    values = history[key]
    epoch = int(np.argmax(values))
    return epoch, {name: series[epoch] for name, series in history.items()}


class StopAtStep(keras.callbacks.Callback):
    """Stops training after `steps` optimizer steps in all (resumed runs included).

    Keras runs the epoch's end as usual after the stop (validation, logs), so a
    last, shorter evaluation period closes the run.
    """

    def __init__(self, steps):
        super().__init__()
        self.steps = steps
        self.done = 0

    def on_train_begin(self, logs=None):
        self.done = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        if self.done >= self.steps:
            self.model.stop_training = True


class FirstStepNotice(keras.callbacks.Callback):
    """Says, before the progress bar's first update, that the first step compiles.

    The first training step traces the train step and compiles it (XLA on JAX
    and TensorFlow): for WRN-28-2 on a CPU that alone takes a minute or more,
    and Keras' progress bar first appears when that step ends. This callback
    prints a line when training starts and another with the first step's time
    once it ends; the progress bar then advances at every step.

    Args:
        description: what is being compiled (e.g. `"freematch on wrn28_2 x1.0"`).

    Example:

    ```python
    model.fit(dataset, epochs=2, callbacks=[FirstStepNotice("freematch on wrn10_2 x0.25")])
    ```
    """

    def __init__(self, description):
        super().__init__()
        self.description = description
        self.first_step_seconds = None
        self._start = None

    def on_train_begin(self, logs=None):
        self.first_step_seconds, self._start = None, time.time()
        print(
            f"Compiling the training step of {self.description} ({keras.backend.backend()}): "
            "the first step traces and compiles it (a minute or more for WRN-28-2 on a CPU); "
            "the progress bar then advances at every step.",
            flush=True,
        )

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step_seconds is None:
            self.first_step_seconds = time.time() - self._start
            print(
                f"First step (tracing and compilation included) done in "
                f"{self.first_step_seconds:.1f} s.",
                flush=True,
            )


def main(argv=None):
    """Runs the recipe; returns the results dict also written to `results.json`."""
    args = resolve(build_parser().parse_args(argv))
    if args.verbose:
        print(
            f"Loading {args.dataset} and building {args.algorithm} on {args.model} "
            f"x{args.width} ({keras.backend.backend()} backend)...",
            flush=True,
        )
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
    labeled, unlabeled = pool[labeled], pool[unlabeled]
    seed_everything(args.seed, deterministic=args.deterministic)
    os.makedirs(args.output, exist_ok=True)

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
        validation_data, test_callbacks = test, []
    else:
        validation_data = data_lib.evaluation_dataset(
            images.x_train[validation], images.y_train[validation], 256
        )
        test_callbacks = [EMATestEvaluation(test)]
    model = build_model(args, images.image_shape, images.num_classes)

    # The last evaluation period is shorter when --steps is not a multiple of
    # --eval-every: StopAtStep ends it after exactly --steps steps.
    epochs = math.ceil(args.steps / args.eval_every)
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
    backend = keras.backend.backend()
    print(
        f"{images.name}: {len(labeled)} labelled ({args.labels_per_class} per class) and "
        f"{len(unlabeled) if semi else 0} unlabelled training images {images.image_shape}, "
        f"{len(y_test)} test images"
        f"{f', {len(validation)} validation images' if validation is not None else ''}; "
        f"{args.algorithm} on {args.model} x{args.width} "
        f"({model.count_params():,} parameters), {args.steps} steps of batch {args.batch_size}"
        f"{f' + {args.uratio * args.batch_size} unlabelled' if semi else ''}, {backend} backend",
        flush=True,
    )
    start = time.time()
    history = model.fit(
        train,
        epochs=epochs,
        steps_per_epoch=args.eval_every,
        validation_data=validation_data,
        callbacks=callbacks,
        verbose=args.verbose,
    )
    elapsed = time.time() - start
    # At the end of fit Keras writes the weight average into the model.
    model.save(os.path.join(args.output, "model.keras"))
    results = model.evaluate(test, verbose=0, return_dict=True)

    logs = {key: values[-1] for key, values in history.history.items()}
    rows = [("test accuracy (EMA weights)", results["accuracy"])]
    best = None
    if validation is not None:
        epoch, best = best_validation(history.history)
        best = {"epoch": epoch + 1, "step": min((epoch + 1) * args.eval_every, args.steps), **best}
        rows += [
            ("validation accuracy (EMA weights)", logs["val_accuracy"]),
            (f"best validation accuracy (epoch {best['epoch']})", best["val_accuracy"]),
            ("test accuracy at the best-validation epoch", best["test_accuracy"]),
        ]
    elif "val_accuracy" in history.history:
        rows.append(("best test accuracy during training", max(history.history["val_accuracy"])))
    rows.append(("labelled-batch accuracy", logs.get("accuracy", float("nan"))))
    rows += [(name, logs[key]) for key, name in FINAL_KEYS if key in logs]
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
        "test_samples": len(y_test),
        "validation_samples": 0 if validation is None else len(validation),
        "best_validation": best,
        "table": [{"measure": name, "value": float(value)} for name, value in rows],
        "history": history.history,
    }
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    print(f"\nwrote history.csv, results.json and model.keras to {args.output}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
