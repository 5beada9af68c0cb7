"""One cell of the pruning study: one seed's trained conv net, pruned at every sparsity.

`python -m studies.pruning.cell --seed 0 --output DIR` trains
`studies.fashion_mnist.convnet(seed)` (`compile_model`: SGD, cross-entropy,
accuracy, MIR, HDR, NC1) for `--epochs` epochs, then evaluates global
magnitude pruning (`keras_nc.pruning.sparsity_path`, all kernels: the three
convolutions, the feature layer and the head) at each of `--sparsities` on the
test split, in three variants:

- `direct`: the pruned copy as it is, its batch normalisation statistics
  those of the unpruned network (what pruning without data gives);
- `bn`: the same copy after its batch normalisation statistics are recomputed
  on the training split (`keras_nc.paths.recompute_batchnorm_statistics`;
  no weight changes);
- `tuned`: the copy fine-tuned for `--fine-tune-epochs` epochs with
  `keras_nc.callbacks.KeepPruned` (the zeros stay zero) at the training's
  learning rate, then its batch normalisation statistics recomputed as for
  `bn` (the moving averages, momentum 0.9, lag the weights at a constant
  learning rate: even unpruned, the stored statistics cost test accuracy).

It writes `results.json` (`recipes.program.write_results`): the settings,
the training time and `rows` (one per variant and sparsity: the measured
fraction of zeros and the test loss, accuracy, MIR, HDR and NC1 of arXiv
2409.16767). Evaluation batches of 500 (`fashion_mnist.evaluate`'s size).

Example:

```bash
KERAS_BACKEND=tensorflow python -m studies.pruning.cell --seed 0 \
    --output outputs/studies/pruning/seed0
```
"""

import argparse
import sys
import time

import keras

from keras_nc.callbacks import KeepPruned
from keras_nc.paths import recompute_batchnorm_statistics
from keras_nc.pruning import sparsity_path
from recipes import program
from studies import fashion_mnist

EPOCHS = 10
FINE_TUNE_EPOCHS = 2
SPARSITIES = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95)
VARIANTS = ("direct", "bn", "tuned")
EVAL_BATCH = 500


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m studies.pruning.cell",
        description="Train the studies' conv net, prune it globally by magnitude at several "
        "sparsities and record the test measures of arXiv 2409.16767, with and without "
        "fine-tuning.",
        formatter_class=program.HelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--fine-tune-epochs", type=int, default=FINE_TUNE_EPOCHS)
    parser.add_argument("--sparsities", type=float, nargs="+", default=list(SPARSITIES))
    parser.add_argument("--output", required=True, help="folder of results.json")
    parser.add_argument("--verbose", type=int, default=2, help="Keras' fit verbosity")
    return parser


def fine_tuner(train, seed, epochs):
    """`fine_tune(pruned, masks)` for `sparsity_path`: SGD with `KeepPruned(masks)`, then BN.

    The batch normalisation statistics are recomputed after the fine-tuning as
    for `bn`: their moving averages (momentum 0.9) lag the weights at the
    constant learning rate.
    """

    def fine_tune(pruned, masks):
        keras.utils.set_random_seed(seed)  # the same data order at every sparsity
        fashion_mnist.compile_model(pruned)
        pruned.fit(
            *train,
            batch_size=fashion_mnist.BATCH_SIZE,
            epochs=epochs,
            verbose=0,
            callbacks=[KeepPruned(masks)],
        )
        recompute_batchnorm_statistics(pruned, train[0], batch_size=fashion_mnist.BATCH_SIZE)

    return fine_tune


def batchnorm_refresher(train):
    """`fine_tune(pruned, masks)` that only recomputes the BN statistics on `train`."""

    def refresh(pruned, masks):
        recompute_batchnorm_statistics(pruned, train[0], batch_size=fashion_mnist.BATCH_SIZE)

    return refresh


def prune_rows(model, data, sparsities, seed, fine_tune_epochs):
    """The rows of every variant: `{"variant": v, "sparsity": s, "zeros": z, measures...}`."""
    tuners = {
        "direct": None,
        "bn": batchnorm_refresher(data.train),
        "tuned": fine_tuner(data.train, seed, fine_tune_epochs),
    }
    rows = []
    for variant in VARIANTS:
        path = sparsity_path(
            model,
            data.test,
            sparsities,
            fine_tune=tuners[variant],
            batch_size=EVAL_BATCH,
            verbose=0,
        )
        rows += [{"variant": variant, **row} for row in path]
        print(f"{variant}: " + ", ".join(f"{r['sparsity']:g}: {r['accuracy']:.3f}" for r in path))
    return rows


def main(argv=None, data=None):
    args = build_parser().parse_args(argv)
    backend = program.start(args)
    program.banner("pruning", f"seed {args.seed}")
    data = fashion_mnist.load() if data is None else data
    model = fashion_mnist.compile_model(fashion_mnist.convnet(args.seed))
    start = time.time()
    model.fit(
        *data.train, batch_size=fashion_mnist.BATCH_SIZE, epochs=args.epochs, verbose=args.verbose
    )
    train_seconds = time.time() - start
    start = time.time()
    rows = prune_rows(model, data, args.sparsities, args.seed, args.fine_tune_epochs)
    results = {
        "settings": {
            "seed": args.seed,
            "epochs": args.epochs,
            "fine_tune_epochs": args.fine_tune_epochs,
            "sparsities": args.sparsities,
            "scope": "global",
            "batch_size": fashion_mnist.BATCH_SIZE,
            "learning_rate": fashion_mnist.LEARNING_RATE,
            "eval_batch_size": EVAL_BATCH,
            "train_size": len(data.train[1]),
            "test_size": len(data.test[1]),
        },
        "backend": backend,
        "keras": keras.__version__,
        "train_seconds": train_seconds,
        "prune_seconds": time.time() - start,
        "rows": rows,
    }
    program.write_results(args.output, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
