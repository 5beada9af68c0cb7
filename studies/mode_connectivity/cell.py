"""One cell of the linear-mode-connectivity study: a parent, two children, their path.

`python -m studies.mode_connectivity.cell --seed 0 --spawn-epoch 1 --output DIR`
follows Frankle et al. ("Linear Mode Connectivity and the Lottery Ticket
Hypothesis", ICML 2020) with the studies' setting (`studies.fashion_mnist`):

1. a parent `convnet(seed)` is trained for `k = --spawn-epoch` epochs
   (`k = 0`: the initialisation alone; `k = -1`, `INDEPENDENT`, the control:
   no parent, the second child starts from `convnet(seed + INDEPENDENT_OFFSET)`);
2. two children start from the parent's weights and optimizer state and are
   trained for the remaining `--epochs - k` epochs with different data orders
   (the only difference between them: no dropout, same learning rate);
3. `keras_nc.paths.interpolation_path` evaluates the children's segment at
   11 alphas on the test split, with BatchNormalization statistics recomputed
   at every point on a fixed random subset of 2048 training images
   (`BATCHNORM_IMAGES`), recording loss, accuracy, MIR, HDR
   and NC1 (arXiv 2409.16767) and the loss and accuracy barriers.

The data orders are explicit: epoch `e` of a model visits the training split
in the permutation drawn by `numpy.random.default_rng((seed, k, who, e))`
(`k = INDEPENDENT_OFFSET` for the control).

Example:

```bash
KERAS_BACKEND=tensorflow python -m studies.mode_connectivity.cell \
    --seed 0 --spawn-epoch 1 --output outputs/studies/mode_connectivity/k1-seed0
```
"""

import argparse
import sys
import time

import keras
import numpy as np

from keras_nc import paths
from recipes import program
from studies import fashion_mnist

EPOCHS = 8
ALPHAS = 11
# BatchNormalization statistics are recomputed on this many training images (a fixed
# random subset: 16 batches of 128), which keeps the 11 points of a path within seconds.
BATCHNORM_IMAGES = 2048
PARENT, CHILD_A, CHILD_B = 0, 1, 2
# The control `--spawn-epoch -1`: two independent initialisations, no shared parent.
INDEPENDENT = -1
INDEPENDENT_OFFSET = 1000


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m studies.mode_connectivity.cell",
        description="Linear mode connectivity of two children of one parent spawned at epoch "
        "k, with the measures of arXiv 2409.16767 along their segment.",
        formatter_class=program.HelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=0, help="initialisation and data orders")
    parser.add_argument(
        "--spawn-epoch", type=int, default=0, help="k: the parent's epochs (-1: independent)"
    )
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="total epochs per child")
    parser.add_argument("--alphas", type=int, default=ALPHAS, help="points of the path")
    parser.add_argument("--output", required=True, help="folder of results.json")
    parser.add_argument("--verbose", type=int, default=2, help="Keras' fit verbosity")
    return parser


def train(model, train_split, epochs, order_key, verbose=0):
    """Trains `epochs` epochs, epoch `e` in the permutation of `default_rng((*order_key, e))`."""
    x, y = train_split
    for epoch in range(epochs):
        order = np.random.default_rng((*order_key, epoch)).permutation(len(y))
        model.fit(
            x[order],
            y[order],
            batch_size=fashion_mnist.BATCH_SIZE,
            epochs=1,
            shuffle=False,
            verbose=verbose,
        )
    return model


def spawn(parent, seed):
    """A child: the parent's architecture, weights and optimizer state."""
    child = fashion_mnist.compile_model(fashion_mnist.convnet(seed))
    child.set_weights(parent.get_weights())
    if parent.optimizer.built:  # trained: its momentum and step count are copied
        child.optimizer.build(child.trainable_variables)
        for mine, theirs in zip(child.optimizer.variables, parent.optimizer.variables, strict=True):
            mine.assign(theirs)
    return child


def make_children(seed, spawn_epoch, data, verbose=0):
    """The two children before their own epochs: spawned from a parent, or independent."""
    if spawn_epoch == INDEPENDENT:
        seeds = (seed, seed + INDEPENDENT_OFFSET)
        return [fashion_mnist.compile_model(fashion_mnist.convnet(s)) for s in seeds]
    parent = fashion_mnist.compile_model(fashion_mnist.convnet(seed))
    train(parent, data.train, spawn_epoch, (seed, spawn_epoch, PARENT), verbose)
    return [spawn(parent, seed) for _ in (CHILD_A, CHILD_B)]


def batchnorm_images(x):
    """The fixed training images on which BatchNormalization statistics are recomputed."""
    index = np.random.default_rng(fashion_mnist.DATA_SEED).permutation(len(x))
    return x[np.sort(index[:BATCHNORM_IMAGES])]


def summary(path):
    """Barriers, and the measures at the midpoint and at the end points (their mean)."""
    rows = {row["alpha"]: row for row in path}
    middle, start, end = rows[0.5], rows[0.0], rows[1.0]
    keys = [key for key in fashion_mnist.MEASURES if key in middle]
    return {
        "loss_barrier": paths.loss_barrier(path),
        "accuracy_barrier": paths.accuracy_barrier(path),
        "midpoint": {key: middle[key] for key in keys},
        "end_points": {key: (start[key] + end[key]) / 2 for key in keys},
    }


def main(argv=None, data=None):
    args = build_parser().parse_args(argv)
    if not INDEPENDENT <= args.spawn_epoch < args.epochs:
        raise SystemExit(
            f"error: --spawn-epoch must be -1 or lie in [0, --epochs); got {args.spawn_epoch}"
        )
    backend = program.start(args)
    program.banner(f"spawn epoch {args.spawn_epoch}", f"seed {args.seed}")
    data = fashion_mnist.load() if data is None else data
    # The data orders' key (non-negative for NumPy): the control's `k` is INDEPENDENT_OFFSET.
    key = (args.seed, args.spawn_epoch if args.spawn_epoch >= 0 else INDEPENDENT_OFFSET)
    start = time.time()
    children = make_children(args.seed, args.spawn_epoch, data, args.verbose)
    epochs = args.epochs - max(args.spawn_epoch, 0)
    for who, child in zip((CHILD_A, CHILD_B), children, strict=True):
        train(child, data.train, epochs, (*key, who), args.verbose)
    train_seconds = time.time() - start
    start = time.time()
    path = paths.interpolation_path(
        *children,
        data.test,
        alphas=args.alphas,
        batchnorm_data=batchnorm_images(data.train[0]),
        batch_size=fashion_mnist.BATCH_SIZE,
        verbose=0,
    )
    results = {
        "settings": {
            "seed": args.seed,
            "spawn_epoch": args.spawn_epoch,
            "epochs": args.epochs,
            "alphas": args.alphas,
            "batch_size": fashion_mnist.BATCH_SIZE,
            "learning_rate": fashion_mnist.LEARNING_RATE,
            "train_size": len(data.train[1]),
            "test_size": len(data.test[1]),
            "batchnorm_images": BATCHNORM_IMAGES,
        },
        "backend": backend,
        "keras": keras.__version__,
        "train_seconds": train_seconds,
        "path_seconds": time.time() - start,
        "children_test": [fashion_mnist.evaluate(child, data.test) for child in children],
        "path": path,
        **summary(path),
    }
    program.write_results(args.output, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
