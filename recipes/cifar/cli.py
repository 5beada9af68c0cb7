"""The supervised recipe's command line: options, per-dataset defaults and their checks.

`build_parser()` is `python -m recipes.cifar --help`; `resolve(args)` fills
the options left unset with the dataset's defaults (`DEFAULTS`: the embedded
digits run fits 2 CPU cores, the rest is the usual CIFAR ResNet recipe, see
docs/recipes.md) and rejects impossible values before anything is loaded.

Example:

>>> args = resolve(build_parser().parse_args(["--output", "/tmp/digits"]))
>>> args.epochs, args.width, args.lr
(30, 0.25, 0.05)
"""

import argparse
import importlib.util
import os

from recipes import data as data_lib
from recipes.backbones import BACKBONES
from recipes.program import HelpFormatter

# Per-dataset defaults of the options left unset on the command line: the
# embedded digits run is small enough for 2 CPU cores, the rest is the usual
# CIFAR ResNet recipe (docs/recipes.md).
DEFAULTS = {
    "digits": {"epochs": 30, "batch_size": 64, "lr": 0.05, "width": 0.25, "warmup_epochs": 2},
    "default": {"epochs": 200, "batch_size": 128, "lr": 0.1, "width": 1.0, "warmup_epochs": 5},
}


def build_parser():
    """The `argparse` parser of `python -m recipes.cifar` (see `--help`)."""
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
