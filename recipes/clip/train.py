"""Few-shot CLIP fine-tuning (keras-hub) with the CMA loss: the program.

`python -m recipes.clip --preset NAME_OR_DIR --data DIR --shots 16 --mode prompt
--cma-weight 1` samples `--shots` training images per class (seeded), builds a
`CLIPClassifier` (zero-shot head from the prompt templates), measures it on the
test images (zero-shot accuracy, class-pairing MIR and HDR, the within-class
entropy of CMA), fine-tunes it with cross-entropy plus `--cma-weight` times
`CMALoss` and measures it again.

Outputs in `--output`: `results.csv` (the before/after table), `results.json`
(settings, table, timings; strict JSON, a non-finite measure as `null`),
`history.csv` (per epoch) and `model.keras`. The measures are in
`recipes.clip.evaluation`; docs/clip.md describes the recipe.
"""

import argparse
import math
import os
import sys
import time

import keras
import numpy as np

from keras_nc.losses import CMALoss
from keras_nc.metrics import HDR, MIR
from recipes.clip import data as data_lib
from recipes.clip import evaluation
from recipes.clip.classifier import MODES, CLIPClassifier
from recipes.clip.loading import DEFAULT_TEMPLATES, PresetUnavailableError
from recipes.program import HelpFormatter, banner, start, write_results

# CoOp's hand-crafted prompts of the 11 datasets (Zhou et al. 2022), used for the
# zero-shot head and the `head`/`full` initialisation. `--templates NAME`.
TEMPLATES = {
    "default": DEFAULT_TEMPLATES,
    "imagenet": ("a photo of a {}.",),
    "caltech101": ("a photo of a {}.",),
    "oxford_pets": ("a photo of a {}, a type of pet.",),
    "stanford_cars": ("a photo of a {}.",),
    "oxford_flowers": ("a photo of a {}, a type of flower.",),
    "food101": ("a photo of {}, a type of food.",),
    "fgvc_aircraft": ("a photo of a {}, a type of aircraft.",),
    "sun397": ("a photo of a {}.",),
    "dtd": ("{} texture.",),
    "eurosat": ("a centered satellite photo of {}.",),
    "ucf101": ("a photo of a person doing {}.",),
}

# Per-mode optimiser defaults: CoOp's SGD for the prompt (and the head); AdamW
# with a small learning rate for full fine-tuning, as is usual for CLIP.
OPTIMIZERS = {
    "prompt": {"optimizer": "sgd", "lr": 0.002, "weight_decay": 5e-4},
    "head": {"optimizer": "sgd", "lr": 0.002, "weight_decay": 5e-4},
    "full": {"optimizer": "adamw", "lr": 1e-5, "weight_decay": 0.1},
}


def coop_epochs(shots):
    """CoOp's schedule: 50 epochs at 1 shot, 100 at 2-4 shots, 200 at 8-16."""
    return 50 if shots == 1 else 100 if shots <= 4 else 200


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m recipes.clip",
        description="Few-shot fine-tuning of a keras-hub CLIP with the CMA loss: zero-shot "
        "accuracy before, accuracy after, MIR/HDR and the within-class entropy of "
        "{image embeddings of a class} U {its text embedding} before and after. The backend "
        "follows KERAS_BACKEND (tensorflow, jax, torch).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--preset",
        required=True,
        metavar="NAME_OR_DIR",
        help="keras-hub preset (clip_vit_base_patch16, ...; needs internet) or a local preset "
        "directory written by save_to_preset",
    )
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="image folder: DIR/<class>/*.jpg, or DIR/train/<class>/ and DIR/test/<class>/",
    )
    parser.add_argument("--shots", type=int, default=16, help="training images per class")
    parser.add_argument("--seed", type=int, default=1, help="seed of the few-shot draw and init")
    parser.add_argument(
        "--test-per-class",
        type=int,
        metavar="N",
        help="at most N test images per class (default: all; without a train/test split the "
        "images left after the few-shot draw are the test set)",
    )
    parser.add_argument("--mode", default="prompt", choices=MODES, help="what is trained")
    parser.add_argument(
        "--cma-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="weight of CMALoss added to the cross-entropy; 0: cross-entropy alone",
    )
    parser.add_argument(
        "--templates",
        default="default",
        choices=sorted(TEMPLATES),
        help="prompt templates of the zero-shot head (CoOp's per-dataset prompts)",
    )
    parser.add_argument(
        "--template",
        action="append",
        metavar="TEXT",
        help="a custom prompt template with {} for the class name (repeatable; replaces "
        "--templates)",
    )
    parser.add_argument(
        "--context-length", type=int, default=16, help="learnable context vectors (prompt mode)"
    )
    parser.add_argument(
        "--context-init",
        metavar="TEXT",
        help='initialise the context from a text such as "a photo of a" (its token count is '
        "then the context length; default: random)",
    )
    parser.add_argument("--epochs", type=int, help="epochs (default: CoOp's 50/100/200 by shots)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size")
    parser.add_argument(
        "--optimizer",
        choices=("sgd", "adamw"),
        help="default: sgd (momentum 0.9) for prompt and head, adamw for full",
    )
    parser.add_argument(
        "--lr", type=float, help="peak learning rate (default: 0.002 prompt/head, 1e-5 full)"
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        help="weight decay: with sgd coupled L2 on the context or head, as PyTorch's SGD "
        "(default 5e-4); with adamw decoupled, on everything trained (default 0.1)",
    )
    parser.add_argument(
        "--warmup-epochs",
        type=int,
        default=1,
        help="epochs of linear warm-up from 1e-5 before the cosine decay",
    )
    parser.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    parser.add_argument("--eval-batch-size", type=int, default=128, help="evaluation batch size")
    parser.add_argument("--output", metavar="DIR", help="output directory")
    parser.add_argument(
        "--verbose", type=int, default=1, choices=(0, 1, 2), help="fit verbosity: 1 progress bar"
    )
    return parser


def resolve(args):
    """Fills the defaults that depend on other options; checks the numbers."""
    for key in ("shots", "batch_size", "eval_batch_size", "context_length"):
        if getattr(args, key) < 1:
            raise SystemExit(f"error: --{key.replace('_', '-')} must be >= 1")
    if args.epochs is None:
        args.epochs = coop_epochs(args.shots)
    if args.epochs < 1:
        raise SystemExit("error: --epochs must be >= 1")
    if args.test_per_class is not None and args.test_per_class < 1:
        raise SystemExit("error: --test-per-class must be >= 1")
    if args.cma_weight < 0 or args.warmup_epochs < 0:
        raise SystemExit("error: --cma-weight and --warmup-epochs must be >= 0")
    for key, value in OPTIMIZERS[args.mode].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    templates = args.template or list(TEMPLATES[args.templates])
    for template in templates:
        if template.count("{}") != 1:
            raise SystemExit(f"error: --template {template!r} must contain one {{}}")
    args.template = templates
    if args.output is None:
        name = os.path.basename(os.path.normpath(args.data)) or "data"
        cma = f"-cma{args.cma_weight:g}" if args.cma_weight else ""
        args.output = os.path.join(
            "outputs", f"clip-{name}-{args.mode}-{args.shots}shot{cma}-seed{args.seed}"
        )
    return args


# ---------------------------------------------------------------------- #
# Program
# ---------------------------------------------------------------------- #


def build_optimizer(args, steps_per_epoch):
    total = steps_per_epoch * args.epochs
    warmup = min(steps_per_epoch * args.warmup_epochs, total - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=min(1e-5, args.lr) if warmup else args.lr,
        decay_steps=max(total - warmup, 1),
        warmup_target=args.lr if warmup else None,
        warmup_steps=warmup,
    )
    if args.optimizer == "sgd":  # weight decay: coupled L2 in the model (see CLIPClassifier)
        return keras.optimizers.SGD(schedule, momentum=0.9)
    return keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay)


def compile_model(model, args, steps_per_epoch):
    loss = [keras.losses.SparseCategoricalCrossentropy(from_logits=True)]
    if args.cma_weight:
        loss.append(CMALoss(weight=args.cma_weight))
    model.compile(
        optimizer=build_optimizer(args, steps_per_epoch),
        loss=loss,
        metrics=["accuracy", MIR(), HDR()],
    )


def load_data(args):
    """The few-shot training split and the test split: `(folder, train, test)` paths/labels."""
    try:
        folder = data_lib.image_folder(args.data)
        if folder.test_paths is None:
            train_idx, test_idx = data_lib.split_few_shot(
                folder, args.shots, args.seed, args.test_per_class
            )
            test_paths, test_labels = folder.train_paths[test_idx], folder.train_labels[test_idx]
        else:
            train_idx = data_lib.few_shot_indices(folder.train_labels, args.shots, args.seed)
            test_paths, test_labels = folder.test_paths, folder.test_labels
            if args.test_per_class is not None:
                keep = data_lib.few_shot_indices(
                    test_labels, min(args.test_per_class, np.bincount(test_labels).min()), 0
                )
                test_paths, test_labels = test_paths[keep], test_labels[keep]
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    train = folder.train_paths[train_idx], folder.train_labels[train_idx]
    return folder, train, (test_paths, test_labels)


def build_model(args, class_names):
    """The `CLIPClassifier` of the options (a `SystemExit` naming the problem if it fails)."""
    try:
        return CLIPClassifier.from_preset(
            args.preset,
            class_names,
            mode=args.mode,
            templates=args.template,
            context_length=args.context_length,
            context_init=args.context_init,
            seed=args.seed,
            weight_decay=args.weight_decay if args.optimizer == "sgd" else 0.0,
        )
    except (PresetUnavailableError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


def announce(args, folder, model, num_train, num_test):
    """Prints the run's one-line banner (`recipes.program.banner`)."""
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    banner(
        f"{args.data}: {folder.num_classes} classes",
        f"{args.shots} shots ({num_train} training images)",
        f"{num_test} test images",
        f"{args.preset} {tuple(model.image_converter.image_size)}",
        f"mode {args.mode}",
        f"CMA weight {args.cma_weight:g}",
        f"{args.epochs} epochs",
        f"{params:,} trainable parameters",
    )


def fit(model, args, paths, labels):
    """Compiles and fine-tunes on the few-shot images; returns `(history, seconds)`."""
    train = data_lib.training_dataset(
        paths, labels, model.image_converter, args.batch_size, args.seed, flip=not args.no_flip
    )
    compile_model(model, args, math.ceil(len(labels) / args.batch_size))
    begin = time.time()
    history = model.fit(
        train,
        epochs=args.epochs,
        callbacks=[keras.callbacks.CSVLogger(os.path.join(args.output, "history.csv"))],
        verbose=args.verbose,
        shuffle=False,  # the tf.data pipeline reshuffles every epoch
    )
    return history, time.time() - begin


def main(argv=None):
    """Runs the program; returns the results dict also written to `results.json`."""
    args = resolve(build_parser().parse_args(argv))
    folder, (train_paths, train_labels), (test_paths, test_labels) = load_data(args)
    backend = start(args)  # seeds, creates --output
    begin = time.time()
    model = build_model(args, folder.class_names)
    converter = model.image_converter
    announce(args, folder, model, len(train_labels), len(test_labels))
    datasets = {
        "test": data_lib.evaluation_dataset(
            test_paths, test_labels, converter, args.eval_batch_size
        ),
        "train": data_lib.evaluation_dataset(
            train_paths, train_labels, converter, args.eval_batch_size
        ),
    }
    before, embedded = evaluation.evaluate(model, datasets)
    zero_shot = {
        split: evaluation.measure(*embedded[split], model.zero_shot_embeddings)
        for split in datasets
    }
    print(
        f"zero-shot test accuracy {zero_shot['test']['accuracy']:.4f}; before training: "
        f"test accuracy {before['test']['accuracy']:.4f}, within-class entropy "
        f"{before['test']['within_class_entropy']:.4f} (test) "
        f"{before['train']['within_class_entropy']:.4f} (train)"
    )

    history, train_seconds = fit(model, args, train_paths, train_labels)
    model.refresh_head()
    after, _ = evaluation.evaluate(model, datasets)
    model.save(os.path.join(args.output, "model.keras"))

    rows = evaluation.table_rows(before, after, zero_shot)
    title = f"{args.mode}, {args.shots} shots, CMA weight {args.cma_weight:g}, {backend}"
    print(f"\n{title}: {args.epochs} epochs in {train_seconds:.0f} s")
    print(evaluation.format_table(rows))
    evaluation.write_csv(os.path.join(args.output, "results.csv"), rows)
    summary = {
        "settings": vars(args),
        "backend": backend,
        "class_names": list(folder.class_names),
        "train_seconds": train_seconds,
        "total_seconds": time.time() - begin,
        "zero_shot": zero_shot,
        "before": before,
        "after": after,
        "final_train_accuracy": history.history["accuracy"][-1],
        "table": [{"measure": n, "before": b, "after": a} for n, b, a in rows],
    }
    write_results(args.output, summary)  # strict JSON: a NaN measure is written as null
    print(f"\nwrote results.csv, results.json, history.csv and model.keras to {args.output}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
