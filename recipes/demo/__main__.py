"""Train a small MLP on scikit-learn's digits and watch it approach Neural Collapse.

A `keras_nc.models.CollapseClassifier` is compiled with accuracy and the
per-batch collapse metrics (`MIR`, `HDR`, `MatrixEntropy`, sample-head pairing),
and a `keras_nc.callbacks.CollapseMonitor` evaluates the class pairing, the
entropies and NC1-NC4 on a class-balanced subset of the training set (Neural
Collapse is a property of the training data) every few epochs. Outputs in
`--output`: `history.csv` (every epoch, all logged values), `collapse.csv` and
`collapse.png` (the monitor's measures with MIR*, HDR* = 0 and log(C-1) drawn
in), `model.keras`, and a final table on stdout.

    python -m recipes.demo [--epochs 60] [--output outputs/demo]

The backend follows `KERAS_BACKEND` (tensorflow, jax or torch).
"""

import argparse
import os
import time

import keras
import numpy as np

import keras_nc
from keras_nc import theory
from keras_nc.callbacks import CollapseMonitor
from keras_nc.metrics import HDR, MIR, MatrixEntropy


def load_digits(seed):
    """Digits (1,797 8x8 images, 10 classes), standardised, stratified 80/20 split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    data = sk_load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=seed
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-3
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def balanced_subset(y, per_class, seed):
    """Indices of `per_class` samples of every class (fewer where a class has fewer)."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def build_backbone(num_features, width):
    inputs = keras.Input((num_features,))
    x = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    features = keras.layers.Dense(width, activation="relu", name="features")(x)
    return keras.Model(inputs, features, name="mlp")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m recipes.demo",
        description="Train a small MLP on scikit-learn's digits and plot MIR, HDR, matrix "
        "entropies and NC1-NC4 against their Neural Collapse values.",
    )
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (60)")
    parser.add_argument("--width", type=int, default=64, help="hidden/feature width (64)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--every", type=int, default=2, help="monitor every k epochs (2)")
    parser.add_argument(
        "--per-class", type=int, default=40, help="training samples per class monitored (40)"
    )
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (0.01)")
    parser.add_argument("--weight-decay", type=float, default=5e-3, help="weight decay (5e-3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--output", default="outputs/demo", help="output directory")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output, exist_ok=True)
    x_train, y_train, x_test, y_test = load_digits(args.seed)
    num_classes = 10
    model = keras_nc.models.CollapseClassifier(
        build_backbone(x_train.shape[1], args.width), num_classes=num_classes
    )
    model.compile(
        optimizer=keras.optimizers.SGD(args.lr, momentum=0.9, weight_decay=args.weight_decay),
        metrics=["accuracy", MIR(), HDR(), MatrixEntropy()],
    )
    subset = balanced_subset(y_train, args.per_class, args.seed)
    monitor = CollapseMonitor(
        x_train[subset], y_train[subset], every=args.every, output_dir=args.output
    )
    csv_logger = keras.callbacks.CSVLogger(os.path.join(args.output, "history.csv"))
    start = time.time()
    model.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_data=(x_test, y_test),
        callbacks=[monitor, csv_logger],
        verbose=2,
    )
    elapsed = time.time() - start
    model.save(os.path.join(args.output, "model.keras"))

    test = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    last = monitor.history[-1]
    backend = keras.backend.backend()
    print(f"\nDigits MLP, {backend} backend, {args.epochs} epochs in {elapsed:.0f} s")
    print(f"{'measure':<34}{'final':>10}{'at collapse':>14}")
    print(f"{'test accuracy':<34}{test['accuracy']:>10.4f}{'':>14}")
    mir_star = theory.mir_at_collapse(num_classes)
    log_c = theory.entropy_at_collapse(num_classes)
    rows = [
        ("MIR, sample-head (test batches)", test["mir"], mir_star),
        ("HDR, sample-head (test batches)", test["hdr"], 0.0),
        ("MIR, class pairing (train subset)", last["mir"], mir_star),
        ("HDR, class pairing (train subset)", last["hdr"], 0.0),
        ("feature entropy (train subset)", last["feature_entropy"], log_c),
        ("head entropy", last["head_entropy"], log_c),
        ("NC1", last["nc1"], 0.0),
        ("NC2 ETF error", last["etf_error"], 0.0),
        ("NC2 equinorm", last["equinorm"], 0.0),
        ("NC3 self-duality", last["self_duality"], 0.0),
        ("NC4 NCC agreement", last["ncc_agreement"], 1.0),
    ]
    for name, value, target in rows:
        print(f"{name:<34}{value:>10.4f}{target:>14.4f}")
    print(f"\nwrote history.csv, collapse.csv, collapse.png and model.keras to {args.output}")
    return monitor.history


if __name__ == "__main__":
    main()
