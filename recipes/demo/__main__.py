"""Train a small MLP on scikit-learn's digits and watch it approach Neural Collapse.

Every few epochs the callback computes, with `keras_nc.ops`, on a
class-balanced subset of the training set (Neural Collapse is a property of the
training data): the matrix entropy of the (centred) features and of the head,
and MIR/HDR in the sample-head and class pairings. It writes `metrics.csv` and
`metrics.png` (with the Neural Collapse values MIR*, HDR* = 0, log(C-1) drawn
in) and prints a final table.

    python -m recipes.demo [--epochs 60] [--output outputs/demo]

The backend follows `KERAS_BACKEND` (tensorflow, jax or torch).
"""

import argparse
import csv
import os
import time

import keras
import numpy as np

from keras_nc import ops as nc_ops
from keras_nc import theory


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


def build_model(num_features, num_classes, width):
    inputs = keras.Input((num_features,))
    x = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    features = keras.layers.Dense(width, activation="relu", name="features")(x)
    logits = keras.layers.Dense(num_classes, name="head")(features)
    return keras.Model(inputs, logits, name="digits_mlp")


def collapse_measures(features, head, labels, num_classes):
    """The demo's measures, all computed by keras_nc.ops on one held-out set."""
    features = features.astype("float32")
    head = head.astype("float32")
    # Sample-head pairing: batch features (centred) vs head rows picked by the labels.
    k_z = nc_ops.gram(features, center=True)
    k_w = nc_ops.gram(head[labels])
    # Class pairing: globally centred class means vs head rows.
    global_mean = features.mean(axis=0)
    means = np.stack([features[labels == c].mean(axis=0) for c in range(num_classes)])
    k_m = nc_ops.gram(means, mean=global_mean)
    k_head = nc_ops.gram(head)
    values = {
        "feature_entropy": nc_ops.feature_entropy(features, center=True),
        "head_entropy": nc_ops.matrix_entropy(k_head),
        "mir_sample": nc_ops.mir(k_z, k_w),
        "hdr_sample": nc_ops.hdr(k_z, k_w),
        "mir_class": nc_ops.mir(k_m, k_head),
        "hdr_class": nc_ops.hdr(k_m, k_head),
    }
    return {name: float(keras.ops.convert_to_numpy(v)) for name, v in values.items()}


class CollapseLogger(keras.callbacks.Callback):
    """Computes the measures on `(x, y)` every `every` epochs; test accuracy on the side."""

    def __init__(self, x, y, x_test, y_test, num_classes, every=1):
        super().__init__()
        self.x, self.y, self.num_classes, self.every = x, y, num_classes, every
        self.x_test, self.y_test = x_test, y_test
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch != 0:
            return
        extractor = keras.Model(self.model.inputs, self.model.get_layer("features").output)
        features = np.asarray(extractor.predict(self.x, verbose=0))
        head = keras.ops.convert_to_numpy(self.model.get_layer("head").kernel).T
        logits = np.asarray(self.model.predict(self.x_test, verbose=0))
        row = {"epoch": epoch + 1, "loss": float(logs["loss"]), "accuracy": float(logs["accuracy"])}
        row["test_accuracy"] = float(np.mean(logits.argmax(axis=1) == self.y_test))
        row.update(collapse_measures(features, head, self.y, self.num_classes))
        self.rows.append(row)
        if logs is not None:
            logs.update({k: v for k, v in row.items() if k not in ("epoch", "loss", "accuracy")})


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows, num_classes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for key, style in (("mir_sample", "-"), ("mir_class", "--")):
        ax.plot(epochs, [r[key] for r in rows], style, label=key)
    ax.axhline(theory.mir_at_collapse(num_classes), color="k", lw=1, ls=":", label="MIR*")
    ax.set(title="MIR", xlabel="epoch", ylim=(0, 1.02))
    ax.legend()
    ax = axes[1]
    for key, style in (("hdr_sample", "-"), ("hdr_class", "--")):
        ax.plot(epochs, [r[key] for r in rows], style, label=key)
    ax.axhline(theory.hdr_at_collapse(num_classes), color="k", lw=1, ls=":", label="HDR* = 0")
    ax.set(title="HDR", xlabel="epoch", ylim=(-0.02, 1.0))
    ax.legend()
    ax = axes[2]
    for key in ("feature_entropy", "head_entropy"):
        ax.plot(epochs, [r[key] for r in rows], label=key)
    ax.axhline(theory.entropy_at_collapse(num_classes), color="k", lw=1, ls=":", label="log(C-1)")
    ax.set(title="Matrix entropy (nats)", xlabel="epoch")
    ax.legend()
    fig.suptitle(f"Digits MLP on {keras.backend.backend()}: approach to Neural Collapse")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m recipes.demo",
        description="Train a small MLP on scikit-learn's digits and plot MIR, HDR and "
        "matrix entropies against their Neural Collapse values.",
    )
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    parser.add_argument("--width", type=int, default=64, help="hidden/feature width (64)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--every", type=int, default=2, help="measure every k epochs (2)")
    parser.add_argument(
        "--per-class", type=int, default=40, help="training samples per class measured (40)"
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
    model = build_model(x_train.shape[1], num_classes, args.width)
    model.compile(
        optimizer=keras.optimizers.SGD(args.lr, momentum=0.9, weight_decay=args.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    subset = balanced_subset(y_train, args.per_class, args.seed)
    logger = CollapseLogger(
        x_train[subset], y_train[subset], x_test, y_test, num_classes, every=args.every
    )
    start = time.time()
    model.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=[logger],
        verbose=2,
    )
    elapsed = time.time() - start
    csv_path = os.path.join(args.output, "metrics.csv")
    png_path = os.path.join(args.output, "metrics.png")
    write_csv(logger.rows, csv_path)
    plot(logger.rows, num_classes, png_path)

    last = logger.rows[-1]
    backend = keras.backend.backend()
    print(f"\nDigits MLP, {backend} backend, {args.epochs} epochs in {elapsed:.0f} s")
    print(f"{'measure':<22}{'final':>10}{'at collapse':>14}")
    print(f"{'test accuracy':<22}{last['test_accuracy']:>10.4f}{'':>14}")
    targets = {
        "mir_sample": theory.mir_at_collapse(num_classes),
        "mir_class": theory.mir_at_collapse(num_classes),
        "hdr_sample": 0.0,
        "hdr_class": 0.0,
        "feature_entropy": theory.entropy_at_collapse(num_classes),
        "head_entropy": theory.entropy_at_collapse(num_classes),
    }
    for key, target in targets.items():
        print(f"{key:<22}{last[key]:>10.4f}{target:>14.4f}")
    print(f"\nwrote {csv_path} and {png_path}")
    return logger.rows


if __name__ == "__main__":
    main()
