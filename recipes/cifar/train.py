"""Supervised training of a CIFAR ResNet with a Neural Collapse report.

`python -m recipes.cifar` trains a `keras_nc.models.CollapseClassifier` (a
ResNet or WideResNet backbone with the CIFAR stem and a linear head) with
SGD, a cosine learning-rate schedule with linear warm-up and weight decay,
`accuracy`, `MIR`, `HDR` and `MatrixEntropy` as metrics (on groups of
`--sample-size` rows), optional MIR/HDR regularisers in the loss, and a
`CollapseMonitor` on a class-balanced subset.
With no arguments it runs the embedded default: scikit-learn's digits
(8 x 8) on a quarter-width ResNet-18 for 30 epochs.

The final table gives each measure's value, the chance level of MIR and HDR
(the same features against the head rows of relabelled classes:
`recipes.cifar.report`) and the value at Neural Collapse, and a verdict
from NC1 and the ETF error: MIR and HDR near their collapse values are
necessary for collapse, not sufficient.

The monitor adds its values (`collapse_mir_class`, ..., `collapse_ncc_agreement`)
to the epoch logs; Keras' `CSVLogger` (and `TensorBoard` with
`--tensorboard`), placed after it, write them with everything else, once.

Outputs in `--output`: `history.csv` (every logged value per epoch, the
monitor's included), `collapse.png` (the monitor's measures), `report.png`
(all curves with the Neural Collapse reference values), `results.json`
(settings, the final table, the monitor's rows), `model.keras` and, with
`--tensorboard`, `tensorboard/`.
"""

import argparse
import importlib.util
import json
import math
import os
import sys
import time

import keras
import numpy as np

import keras_nc
from keras_nc.callbacks import CollapseMonitor, LayerwiseCollapse
from keras_nc.layerwise import depth_slopes
from keras_nc.losses import InformationRegularizer
from keras_nc.metrics import HDR, MIR, MatrixEntropy
from keras_nc.plotting import plot_collapse_history
from recipes import data as data_lib
from recipes.backbones import BACKBONES, build_backbone
from recipes.cifar import report
from recipes.program import HelpFormatter

# Per-dataset defaults of the options left unset on the command line: the
# embedded digits run is small enough for 2 CPU cores, the rest is the usual
# CIFAR ResNet recipe (docs/recipes.md).
DEFAULTS = {
    "digits": {"epochs": 30, "batch_size": 64, "lr": 0.05, "width": 0.25, "warmup_epochs": 2},
    "default": {"epochs": 200, "batch_size": 128, "lr": 0.1, "width": 1.0, "warmup_epochs": 5},
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m recipes.cifar",
        description="Train a CIFAR-style ResNet as a keras_nc CollapseClassifier and report "
        "MIR, HDR (with their chance levels), matrix entropies and NC1-NC4 against their "
        "Neural Collapse values. "
        "Without arguments: digits (bundled, offline) on a quarter-width ResNet-18, 30 epochs. "
        "The backend follows KERAS_BACKEND (tensorflow, jax, torch).",
        formatter_class=HelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="digits",
        choices=data_lib.DATASETS,
        help="dataset; offline: digits, fashion_mnist (Debian's dataset-fashion-mnist), folder",
    )
    data.add_argument("--data-dir", metavar="DIR", help="image folder for --dataset folder")
    data.add_argument(
        "--samples-per-class",
        type=int,
        metavar="N",
        help="class-balanced training subset of this many images per class (default: all)",
    )
    data.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="resize images to this size (default: native size)",
    )
    data.add_argument(
        "--crop-padding",
        type=int,
        metavar="N",
        help="random-crop padding in pixels, 0 to disable (default: image size / 8, at least 1)",
    )
    data.add_argument("--no-flip", action="store_true", help="no random horizontal flips")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default="resnet18",
        help=f"backbone: {', '.join(BACKBONES)}, depth = 6n + 4 (e.g. wrn28_2, wrn10_2)",
    )
    model.add_argument(
        "--width", type=float, help="channel multiplier (default: 0.25 for digits, else 1)"
    )

    train = parser.add_argument_group("optimisation")
    train.add_argument("--epochs", type=int, help="epochs (default: 30 for digits, else 200)")
    train.add_argument("--batch-size", type=int, help="batch size (default: 64 digits, else 128)")
    train.add_argument(
        "--lr", type=float, help="peak learning rate (default: 0.05 digits, else 0.1)"
    )
    train.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    train.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    train.add_argument(
        "--weight-decay",
        type=float,
        default=5e-4,
        help="L2 weight decay of all kernels, as PyTorch's SGD weight_decay",
    )
    train.add_argument(
        "--warmup-epochs",
        type=int,
        metavar="N",
        help="linear warm-up epochs (default: 2 digits, else 5)",
    )
    train.add_argument(
        "--mir-weight",
        type=float,
        metavar="W",
        default=0.0,
        help="weight of the MIR reward in the loss",
    )
    train.add_argument(
        "--hdr-weight",
        type=float,
        metavar="W",
        default=0.0,
        help="weight of the HDR penalty in the loss",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed")

    out = parser.add_argument_group("monitoring and output")
    out.add_argument(
        "--monitor-per-class",
        type=int,
        metavar="N",
        default=50,
        help="images per class of the CollapseMonitor's class-balanced subset",
    )
    out.add_argument(
        "--monitor-on",
        choices=("train", "test"),
        default="train",
        help="draw the monitored subset from the training set (where Neural Collapse is "
        "defined) or the test set",
    )
    out.add_argument(
        "--sample-size",
        type=int,
        metavar="N",
        default=128,
        help="rows per estimate of the sample-pairing MIR, HDR and matrix entropy (their "
        "value depends on it, not on the batch size; see the docs, Reading the measures)",
    )
    out.add_argument(
        "--monitor-every", type=int, metavar="K", default=1, help="monitor every k epochs"
    )
    out.add_argument(
        "--layerwise",
        action="store_true",
        help="also record the layer-wise collapse profile of the backbone's blocks (stem, "
        "every block, pooled features) on the monitored subset: OUTPUT/layerwise.csv and "
        "layerwise.png",
    )
    out.add_argument(
        "--layerwise-every",
        type=int,
        metavar="K",
        default=10,
        help="with --layerwise: record every k epochs (and the first and last)",
    )
    out.add_argument(
        "--layerwise-layers",
        metavar="NAMES",
        help="with --layerwise: comma-separated backbone layer names (default: block outputs)",
    )
    out.add_argument(
        "--validation-every",
        type=int,
        metavar="K",
        default=1,
        help="evaluate on the test set every k epochs during training (the final test "
        "evaluation always runs)",
    )
    out.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard logs (losses, metrics, the monitor's values) to "
        "OUTPUT/tensorboard",
    )
    out.add_argument(
        "--output", metavar="DIR", help="output directory (default: outputs/<dataset>-<model>)"
    )
    out.add_argument(
        "--verbose", type=int, default=1, choices=(0, 1, 2), help="fit verbosity: 1 progress bar"
    )
    return parser


def resolve(args):
    """Fills the options left unset with the per-dataset defaults."""
    defaults = DEFAULTS.get(args.dataset, DEFAULTS["default"])
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.output is None:
        args.output = os.path.join("outputs", f"{args.dataset}-{args.model}")
    positive = (
        "epochs",
        "batch_size",
        "monitor_per_class",
        "monitor_every",
        "validation_every",
        "layerwise_every",
    )
    for key in positive:
        if getattr(args, key) < 1:
            raise SystemExit(f"error: --{key.replace('_', '-')} must be >= 1")
    if args.sample_size < 2:
        raise SystemExit("error: --sample-size must be >= 2")
    if args.mir_weight < 0 or args.hdr_weight < 0:
        raise SystemExit("error: --mir-weight and --hdr-weight must be >= 0")
    missing = [name for name in ("tensorflow", "tensorboard") if not importlib.util.find_spec(name)]
    if args.tensorboard and missing:
        raise SystemExit(
            f"error: --tensorboard needs {' and '.join(missing)} (keras.callbacks.TensorBoard "
            "writes with tf.summary): pip install tensorflow tensorboard"
        )
    return args


def build_model(args, images):
    regularizer = keras.regularizers.L2(args.weight_decay / 2) if args.weight_decay else None
    backbone = build_backbone(
        args.model, images.image_shape, width=args.width, kernel_regularizer=regularizer
    )
    head = keras.layers.Dense(images.num_classes, kernel_regularizer=regularizer, name="head")
    model = keras_nc.models.CollapseClassifier(backbone, images.num_classes, head=head)
    steps_per_epoch = math.ceil(len(images.y_train) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warmup = min(steps_per_epoch * args.warmup_epochs, total - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=args.lr / max(warmup, 1) if warmup else args.lr,
        decay_steps=max(total - warmup, 1),
        warmup_target=args.lr if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.SGD(schedule, momentum=args.momentum, nesterov=args.nesterov)
    loss = [keras.losses.SparseCategoricalCrossentropy(from_logits=True)]
    if args.mir_weight or args.hdr_weight:
        loss.append(InformationRegularizer(mir_weight=args.mir_weight, hdr_weight=args.hdr_weight))
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[
            "accuracy",
            MIR(sample_size=args.sample_size),
            HDR(sample_size=args.sample_size),
            MatrixEntropy(sample_size=args.sample_size),
        ],
    )
    return model


def features_of(model, x, batch_size=256):
    """Pooled features `(n, d)` of `x` (NumPy, float32), in batches, inference mode."""
    parts = [
        keras.ops.convert_to_numpy(model.extract_features(x[start : start + batch_size]))
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts).astype("float32")


def main(argv=None):
    """Runs the recipe; returns the results dict also written to `results.json`."""
    args = resolve(build_parser().parse_args(argv))
    try:
        images = data_lib.load_dataset(
            args.dataset,
            image_size=args.image_size,
            samples_per_class=args.samples_per_class,
            seed=args.seed,
            data_dir=args.data_dir,
        )
    except data_lib.DatasetUnavailableError as error:
        raise SystemExit(f"error: {error}") from None
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output, exist_ok=True)
    model = build_model(args, images)

    crop = max(1, images.image_shape[0] // 8) if args.crop_padding is None else args.crop_padding
    train = data_lib.training_dataset(
        images.x_train,
        images.y_train,
        args.batch_size,
        crop_padding=crop,
        flip=images.flip and not args.no_flip,
        seed=args.seed,
    )
    test = data_lib.evaluation_dataset(images.x_test, images.y_test, 256)
    if args.monitor_on == "train":
        source_x, source_y = images.x_train, images.y_train
    else:
        source_x, source_y = images.x_test, images.y_test
    subset = data_lib.balanced_subset(source_y, args.monitor_per_class, args.seed)
    monitor = CollapseMonitor(source_x[subset], source_y[subset], every=args.monitor_every)
    # The monitor first: the writers after it receive its values in the same logs.
    callbacks = [monitor]
    profile = None
    if args.layerwise:
        profile = LayerwiseCollapse(
            source_x[subset],
            source_y[subset],
            layers=args.layerwise_layers.split(",") if args.layerwise_layers else None,
            every=args.layerwise_every,
            csv_path=os.path.join(args.output, "layerwise.csv"),
            plot_path=os.path.join(args.output, "layerwise.png"),
        )
        callbacks.append(profile)
    callbacks.append(keras.callbacks.CSVLogger(os.path.join(args.output, "history.csv")))
    if args.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(args.output, "tensorboard")))

    backend = keras.backend.backend()
    print(
        f"{images.name}: {len(images.y_train)} training / {len(images.y_test)} test images "
        f"{images.image_shape}, {images.num_classes} classes; {args.model} x{args.width} "
        f"({model.count_params():,} parameters), {args.epochs} epochs, batch "
        f"{args.batch_size}, lr {args.lr}, {backend} backend"
    )
    start = time.time()
    history = model.fit(
        train,
        epochs=args.epochs,
        validation_data=test,
        validation_freq=args.validation_every,
        callbacks=callbacks,
        verbose=args.verbose,
        shuffle=False,  # the tf.data pipeline reshuffles every epoch
    )
    elapsed = time.time() - start
    model.save(os.path.join(args.output, "model.keras"))

    results = model.evaluate(test, verbose=0, return_dict=True)
    head = keras.ops.convert_to_numpy(model.head_weights)
    sample_chance = report.sample_pairing_chance(
        features_of(model, images.x_test), images.y_test, head, args.sample_size
    )
    class_chance = report.class_chance(
        features_of(model, source_x[subset]), source_y[subset], head, images.num_classes
    )
    rows = report.summary_rows(
        results, monitor.history[-1], images.num_classes, sample_chance, class_chance
    )
    title = f"{images.name}, {args.model} x{args.width}, {backend}"
    plot_collapse_history(
        monitor.history,
        images.num_classes,
        os.path.join(args.output, "collapse.png"),
        title=f"Neural Collapse measures of the monitored subset: {title}",
    )
    report.plot_report(
        history.history,
        monitor.history,
        images.num_classes,
        os.path.join(args.output, "report.png"),
        title=title,
        validation_every=args.validation_every,
    )
    print(f"\n{title}: {args.epochs} epochs in {elapsed:.0f} s")
    print(report.format_table(rows))
    if profile is not None:
        print("\nlayer-wise NC1: slope of log10(NC1) per block (R^2), per recorded epoch")
        for epoch, (slope, r2) in depth_slopes(profile.history).items():
            print(f"  epoch {epoch}: {slope:+.3f} ({r2:.2f})")
    summary = {
        "settings": vars(args),
        "backend": backend,
        "train_seconds": elapsed,
        "final_train_accuracy": history.history["accuracy"][-1],
        "table": [{"measure": n, "value": v, "chance": c, "at_collapse": t} for n, v, c, t in rows],
        "verdict": report.verdict(rows),
        "monitor": monitor.history,
    }
    if profile is not None:
        summary["layerwise"] = profile.history
        summary["layerwise_seconds"] = profile.seconds
        summary["layerwise_nc1_slopes"] = depth_slopes(profile.history)
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    print(
        f"\nwrote history.csv, collapse.png, report.png, results.json, model.keras"
        f"{', layerwise.csv, layerwise.png' if profile is not None else ''}"
        f"{' and tensorboard/' if args.tensorboard else ''} to {args.output}"
    )
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
