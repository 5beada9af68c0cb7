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
from recipes.backbones import build_backbone
from recipes.cifar import report
from recipes.cifar.cli import DEFAULTS, build_parser, resolve  # noqa: F401 (the program's API)
from recipes.program import banner, start, write_results


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


def load_images(args):
    """The dataset of `args` (`recipes.data.load_dataset`); a clear exit when unavailable."""
    try:
        return data_lib.load_dataset(
            args.dataset,
            image_size=args.image_size,
            samples_per_class=args.samples_per_class,
            seed=args.seed,
            data_dir=args.data_dir,
        )
    except data_lib.DatasetUnavailableError as error:
        raise SystemExit(f"error: {error}") from None


def pipelines(args, images):
    """The augmented training and the plain test `tf.data` pipelines."""
    crop = max(1, images.image_shape[0] // 8) if args.crop_padding is None else args.crop_padding
    train = data_lib.training_dataset(
        images.x_train,
        images.y_train,
        args.batch_size,
        crop_padding=crop,
        flip=images.flip and not args.no_flip,
        seed=args.seed,
    )
    return train, data_lib.evaluation_dataset(images.x_test, images.y_test, 256)


def monitored_set(args, images):
    """`(x, y)`: the class-balanced subset the `CollapseMonitor` evaluates."""
    if args.monitor_on == "train":
        x, y = images.x_train, images.y_train
    else:
        x, y = images.x_test, images.y_test
    subset = data_lib.balanced_subset(y, args.monitor_per_class, args.seed)
    return x[subset], y[subset]


def build_callbacks(args, x, y):
    """`(monitor, profile or None, callbacks)`: the monitor first, the writers after it."""
    monitor = CollapseMonitor(x, y, every=args.monitor_every)
    # The monitor first: the writers after it receive its values in the same logs.
    callbacks = [monitor]
    profile = None
    if args.layerwise:
        profile = LayerwiseCollapse(
            x,
            y,
            layers=args.layerwise_layers.split(",") if args.layerwise_layers else None,
            every=args.layerwise_every,
            csv_path=os.path.join(args.output, "layerwise.csv"),
            plot_path=os.path.join(args.output, "layerwise.png"),
        )
        callbacks.append(profile)
    callbacks.append(keras.callbacks.CSVLogger(os.path.join(args.output, "history.csv")))
    if args.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(args.output, "tensorboard")))
    return monitor, profile, callbacks


def final_rows(args, model, images, test, monitor, monitored):
    """The rows of the final table (`report.summary_rows`), chance levels included."""
    results = model.evaluate(test, verbose=0, return_dict=True)
    head = keras.ops.convert_to_numpy(model.head_weights)
    sample_chance = report.sample_pairing_chance(
        features_of(model, images.x_test), images.y_test, head, args.sample_size
    )
    x, y = monitored
    class_chance = report.class_chance(features_of(model, x), y, head, images.num_classes)
    return report.summary_rows(
        results, monitor.history[-1], images.num_classes, sample_chance, class_chance
    )


def report_run(args, images, history, monitor, profile, rows, elapsed):
    """Draws `collapse.png` and `report.png`, prints the table; returns the run's summary."""
    title = f"{images.name}, {args.model} x{args.width}, {keras.backend.backend()}"
    plot_collapse_history(
        monitor.history,
        images.num_classes,
        os.path.join(args.output, "collapse.png"),
        title=f"Neural Collapse measures of the monitored subset: {title}",
    )
    report.plot_report(
        history,
        monitor.history,
        images.num_classes,
        os.path.join(args.output, "report.png"),
        title=title,
        validation_every=args.validation_every,
    )
    print(f"\n{title}: {args.epochs} epochs in {elapsed:.0f} s")
    print(report.format_table(rows))
    summary = {
        "final_train_accuracy": history["accuracy"][-1],
        "table": [{"measure": n, "value": v, "chance": c, "at_collapse": t} for n, v, c, t in rows],
        "verdict": report.verdict(rows),
        "monitor": monitor.history,
    }
    if profile is not None:
        slopes = depth_slopes(profile.history)
        print("\nlayer-wise NC1: slope of log10(NC1) per block (R^2), per recorded epoch")
        for epoch, (slope, r2) in slopes.items():
            print(f"  epoch {epoch}: {slope:+.3f} ({r2:.2f})")
        summary.update(layerwise=profile.history, layerwise_seconds=profile.seconds)
        summary["layerwise_nc1_slopes"] = slopes
    return summary


def main(argv=None):
    """Runs the recipe; returns the results dict also written to `results.json`."""
    args = resolve(build_parser().parse_args(argv))
    images = load_images(args)
    backend = start(args)
    model = build_model(args, images)
    train, test = pipelines(args, images)
    monitored = monitored_set(args, images)
    monitor, profile, callbacks = build_callbacks(args, *monitored)
    banner(
        f"{images.name}: {len(images.y_train)} training / {len(images.y_test)} test images "
        f"{images.image_shape}, {images.num_classes} classes",
        f"{args.model} x{args.width} ({model.count_params():,} parameters)",
        f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr}",
    )
    began = time.time()
    history = model.fit(
        train,
        epochs=args.epochs,
        validation_data=test,
        validation_freq=args.validation_every,
        callbacks=callbacks,
        verbose=args.verbose,
        shuffle=False,  # the tf.data pipeline reshuffles every epoch
    )
    elapsed = time.time() - began
    model.save(os.path.join(args.output, "model.keras"))
    rows = final_rows(args, model, images, test, monitor, monitored)
    summary = report_run(args, images, history.history, monitor, profile, rows, elapsed)
    summary = {"settings": vars(args), "backend": backend, "train_seconds": elapsed, **summary}
    write_results(args.output, summary)
    print(
        f"\nwrote history.csv, collapse.png, report.png, results.json, model.keras"
        f"{', layerwise.csv, layerwise.png' if profile is not None else ''}"
        f"{' and tensorboard/' if args.tensorboard else ''} to {args.output}"
    )
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
