"""One cell of the label-smoothing study: the studies' conv net trained with smoothing `s`.

`python -m studies.label_smoothing.cell --smoothing 0.1 --seed 0 --output DIR`
trains `studies.fashion_mnist.convnet(seed)` with
`compile_model(model, label_smoothing=s)` (Keras' `label_smoothing`: target
`(1 - s) one_hot + s / C`) and the class-pairing measures
(`keras_nc.metrics.ClassMIR`, `keras_nc.metrics.ClassHDR`, arXiv 2409.16767),
then writes `results.json` (`recipes.program.write_results`): the settings,
the per-epoch history (training and validation split), and the final values
on the training and test splits (loss, accuracy, sample-pairing MIR/HDR,
class-pairing MIR/HDR, NC1).

Example:

```bash
KERAS_BACKEND=tensorflow python -m studies.label_smoothing.cell \
    --smoothing 0.1 --seed 0 --epochs 12 --output outputs/studies/label_smoothing/s0.1-seed0
```
"""

import argparse
import sys
import time

import keras

import keras_nc
from recipes import program
from studies import fashion_mnist

EPOCHS = 12


def class_metrics():
    """The class-pairing MIR and HDR (logged as `mir_class`, `hdr_class`)."""
    return [keras_nc.metrics.ClassMIR(), keras_nc.metrics.ClassHDR()]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m studies.label_smoothing.cell",
        description="Train the studies' conv net on the Fashion-MNIST subset with label "
        "smoothing and record the measures of arXiv 2409.16767.",
        formatter_class=program.HelpFormatter,
    )
    parser.add_argument("--smoothing", type=float, default=0.0, help="label smoothing s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--output", required=True, help="folder of results.json")
    parser.add_argument("--verbose", type=int, default=2, help="Keras' fit verbosity")
    return parser


def history_lists(history):
    """`History.history` as `{key: [float, ...]}`."""
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def main(argv=None, data=None):
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.smoothing < 1.0:
        raise SystemExit(f"error: --smoothing must lie in [0, 1); received {args.smoothing}")
    backend = program.start(args)
    program.banner(f"label smoothing {args.smoothing}", f"seed {args.seed}")
    data = fashion_mnist.load() if data is None else data
    model = fashion_mnist.convnet(args.seed)
    fashion_mnist.compile_model(
        model, label_smoothing=args.smoothing, extra_metrics=class_metrics()
    )
    start = time.time()
    history = model.fit(
        *data.train,
        batch_size=fashion_mnist.BATCH_SIZE,
        epochs=args.epochs,
        validation_data=data.val,
        verbose=args.verbose,
    )
    seconds = time.time() - start
    results = {
        "settings": {
            "smoothing": args.smoothing,
            "seed": args.seed,
            "epochs": args.epochs,
            "batch_size": fashion_mnist.BATCH_SIZE,
            "learning_rate": fashion_mnist.LEARNING_RATE,
            "train_size": len(data.train[1]),
            "test_size": len(data.test[1]),
        },
        "backend": backend,
        "keras": keras.__version__,
        "train_seconds": seconds,
        "final": {
            "train": fashion_mnist.evaluate(model, data.train),
            "test": fashion_mnist.evaluate(model, data.test),
        },
        "history": history_lists(history),
    }
    program.write_results(args.output, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
