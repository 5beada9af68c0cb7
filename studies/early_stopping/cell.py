"""`python -m studies.early_stopping.cell`: one seed of the early-stopping study.

Trains `studies.fashion_mnist.convnet(seed)` (compiled with
`studies.fashion_mnist.compile_model`: SGD, cross-entropy, accuracy and the
measures of arXiv 2409.16767, MIR, HDR and NC1) for `--epochs` epochs with the
fixed validation split as `validation_data`, and measures the fixed test split
after every epoch (`TestSplit`). `results.json` keeps, per epoch, everything
`fit` logged (`loss`, `accuracy`, `mir`, `hdr`, `nc1` and their `val_`
versions) and the test split's `test_loss`, `test_accuracy`, ... .

With `--monitor` and `--patience` the same training runs with Keras' own
`keras.callbacks.EarlyStopping(monitor, mode="auto", patience,
restore_best_weights=True)`, and `results.json` also keeps the callback's
`stopped_epoch` and `best_epoch` and the restored model's test accuracy: the
study's check that replaying the logs of a full run (`studies.early_stopping.replay`)
stops where `fit` does.

Example:

```bash
KERAS_BACKEND=tensorflow python -m studies.early_stopping.cell --seed 0 --epochs 30 \
    --output outputs/studies/early_stopping/seed0
```
"""

import argparse
import sys
import time

import keras

from recipes import program
from studies import fashion_mnist


class TestSplit(keras.callbacks.Callback):
    """Evaluates a fixed split at each epoch end; adds `test_<key>` to the epoch's logs.

    Example:

    ```python
    model.fit(x, y, epochs=3, callbacks=[TestSplit((x_test, y_test))])
    ```
    """

    def __init__(self, split, prefix="test_"):
        super().__init__()
        self.split, self.prefix = split, prefix

    def on_epoch_end(self, epoch, logs=None):
        values = fashion_mnist.evaluate(self.model, self.split)
        if logs is not None:
            logs.update({f"{self.prefix}{key}": value for key, value in values.items()})


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m studies.early_stopping.cell",
        description="One seed of the early-stopping study: the per-epoch logs (train, "
        "validation, test) of the Fashion-MNIST conv net of studies.fashion_mnist, with the "
        "measures of arXiv 2409.16767; optionally with Keras' EarlyStopping.",
        formatter_class=program.HelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    parser.add_argument("--epochs", type=int, default=30, help="epochs to train (at most)")
    parser.add_argument("--output", required=True, help="folder of results.json")
    parser.add_argument("--monitor", default=None, help="train with EarlyStopping on this key")
    parser.add_argument("--patience", type=int, default=3, help="EarlyStopping's patience")
    parser.add_argument("--verbose", type=int, default=2, help="Keras' fit verbosity")
    return parser


def early_stopping(monitor, patience):
    """Keras' `EarlyStopping` as the study uses it: `mode="auto"`, best weights restored."""
    return keras.callbacks.EarlyStopping(
        monitor=monitor, mode="auto", patience=patience, restore_best_weights=True
    )


def train(args):
    """Trains one seed; returns the results (history and, with `--monitor`, the stop)."""
    data = fashion_mnist.load()
    model = fashion_mnist.compile_model(fashion_mnist.convnet(args.seed))
    program.seed_everything(args.seed, deterministic=True)  # the data order of `fit`
    callbacks = [TestSplit(data.test)]
    stopper = None
    if args.monitor:
        stopper = early_stopping(args.monitor, args.patience)
        callbacks.append(stopper)
    start = time.time()
    history = model.fit(
        *data.train,
        batch_size=fashion_mnist.BATCH_SIZE,
        epochs=args.epochs,
        validation_data=data.val,
        callbacks=callbacks,
        verbose=args.verbose,
    )
    seconds = time.time() - start
    results = {
        "settings": vars(args),
        "train_seconds": seconds,
        "epochs_run": len(history.epoch),
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
    }
    if stopper is not None:
        results["early_stopping"] = {
            "monitor": args.monitor,
            "patience": args.patience,
            "stopped_epoch": int(stopper.stopped_epoch),
            "best_epoch": int(stopper.best_epoch),
            "restored_test": fashion_mnist.evaluate(model, data.test),
        }
    return results


def main(argv=None):
    args = build_parser().parse_args(argv)
    program.start(args, deterministic=True)
    program.banner(f"early-stopping study cell, seed {args.seed}, {args.epochs} epochs")
    results = train(args)
    print(f"wrote {program.write_results(args.output, results)}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
