"""The command line of `python -m recipes.semi_supervised`: its options and their checks.

`build_parser()` is the parser (`--help` lists every option with its default);
`resolve(args)` checks the parsed options and fills the derived defaults (the
output folder). The program itself is `recipes.semi_supervised.train.main`.

Example:

```python
args = resolve(build_parser().parse_args(["--algorithm", "fixmatch", "--steps", "100"]))
args.output  # 'outputs/ssl-fashion_mnist-fixmatch-4'
```
"""

import argparse
import os
import warnings

from keras_nc.deprecation import warn_renamed
from recipes import data as data_lib
from recipes.backbones import BACKBONES
from recipes.program import HelpFormatter
from recipes.semi_supervised.models import (
    ALGORITHMS,
    DEPRECATED_FAIRNESS_SIGNS,
    FAIRNESS_SIGNS,
)


def build_parser():
    """The parser of `python -m recipes.semi_supervised` (USB's defaults, arXiv 2208.07204)."""
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
    _data_options(parser)
    _model_options(parser)
    _optimisation_options(parser)
    _algorithm_options(parser)
    _output_options(parser)
    return parser


def _data_options(parser):
    """The data set, the labelled split, the views and the evaluation sets."""
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


def _model_options(parser):
    """The backbone."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default="wrn28_2",
        help=f"backbone: {', '.join(BACKBONES)}, depth = 6n + 4 (e.g. wrn28_2, wrn10_2)",
    )
    model.add_argument(
        "--width", type=float, default=1.0, help="channel multiplier (e.g. 0.25 on a CPU)"
    )


def _optimisation_options(parser):
    """Steps, batches, SGD and the weight average (USB's defaults)."""
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


def _algorithm_options(parser):
    """FixMatch's and FreeMatch's settings, the MIR/HDR weights."""
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


def _output_options(parser):
    """Output folder, resume, verbosity."""
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
