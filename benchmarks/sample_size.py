"""Benchmark: how the per-sample readings depend on `sample_size`.

Trains the small Fashion-MNIST convnet of `benchmarks/class_measures.py`'s
`accuracy` table (conv16-pool-conv32-GAP-Dense(32, relu), Adam(2e-3), 2,000
training images, needs Debian's `dataset-fashion-mnist`), then reads the
sample-pairing `MIR()`, `HDR()` and `MatrixEntropy()` of its training features
at `sample_size` = 16, 32, ..., 1024. Each draw shuffles the 2,000 rows, feeds
them to the metrics in chunks of `--chunk` rows (not a multiple of the sizes:
the metrics gather rows across chunks into groups of `sample_size`) and reads
`result()`: the mean over the draw's complete groups. The table gives the
median over `--draws` draws and their spread (smallest to largest).

Two chance levels of the sample pairing, read the same way (MIR of the same
features against the head rows picked by other labels):

- classes relabelled: the labels mapped by a random permutation of the
  classes (one per draw), as `keras_nc.ops.class_pairing_chance` does for the
  class pairing: both Grams keep their block structure, the correspondence of
  a class's features with its head row is broken;
- labels shuffled: the labels permuted across the samples, so that the head
  rows carry no information about the features.

The last rows give the smallest size whose median is within 1% and 5% of the
median at the largest size.

A second table (`--tables batch`) evaluates the same trained model on its
first 512 training images with `evaluate(batch_size=b)`, b = 8, 16, 32, 128,
512, with per-batch estimates (`sample_size=None`, the behaviour before
`sample_size`) and with the default `sample_size=128`. The header line gives, for context, the class
pairing (MIR, its chance level, HDR) and NC1, the ETF error and the
self-duality of the same features (`keras_nc.callbacks.collapse_report`).

    python benchmarks/sample_size.py [--backend torch] [--epochs 12] [--draws 5] [--no-write]
        [--tables sizes batch]
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from _convnet import trained_convnet  # noqa: E402
from _docs import write_section  # noqa: E402

SIZES = (16, 32, 64, 128, 256, 512, 1024)
COLUMNS = ("mir", "chance_relabelled", "chance_shuffled", "hdr", "matrix_entropy")
BATCH_SIZES = (8, 16, 32, 128, 512)
TABLES = ("sizes", "batch")


def by_batch_size(model, x, y):
    """`evaluate` of 512 images at each batch size, per batch and with `sample_size=128`."""
    from keras_nc.metrics import HDR, MIR, MatrixEntropy

    rows = {}
    for label, size in (("per batch", None), ("sample_size=128", 128)):
        model.compile(
            metrics=[MIR(sample_size=size), HDR(sample_size=size),
                     MatrixEntropy(sample_size=size)],
        )  # fmt: skip
        for batch_size in BATCH_SIZES:
            logs = model.evaluate(x[:512], y[:512], batch_size=batch_size, verbose=0,
                                  return_dict=True)  # fmt: skip
            rows[(label, batch_size)] = [logs["mir"], logs["hdr"], logs["matrix_entropy"]]
        print(label, {b: [round(v, 4) for v in rows[(label, b)]] for b in BATCH_SIZES},
              file=sys.stderr)  # fmt: skip
    return rows


def render_batch(rows, args):
    import keras

    lines = [
        "| estimate | measure | " + " | ".join(f"batch {b}" for b in BATCH_SIZES) + " |",
        "|---|---|" + "---:|" * len(BATCH_SIZES),
    ]
    for label in ("per batch", "sample_size=128"):
        for index, name in enumerate(("MIR", "HDR", "matrix entropy")):
            cells = [f"{rows[(label, b)][index]:.4f}" for b in BATCH_SIZES]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    header = (
        f"{keras.backend.backend()} backend; the trained convnet of the table above "
        f"({args.epochs} epochs), `evaluate` on its first 512 training images at each batch "
        "size, in order (no shuffling); per-batch estimates (`sample_size=None`) and groups "
        "of 128 rows (the default)."
    )
    return header, "\n".join(lines)


def read(metrics, features, labels, head, chunk):
    """Feeds the rows in chunks of `chunk` and returns each metric's `result()`."""
    import keras

    for metric in metrics:
        metric.reset_state()
    for start in range(0, len(labels), chunk):
        z, y = features[start : start + chunk], labels[start : start + chunk]
        for metric in metrics:
            metric.update_state(y, features=z, head_weights=head)
    return [float(keras.ops.convert_to_numpy(metric.result())) for metric in metrics]


def measure(args):
    import keras
    import numpy as np

    from keras_nc.callbacks import collapse_report
    from keras_nc.metrics import HDR, MIR, MatrixEntropy
    from keras_nc.ops import class_pairing_chance

    start = time.perf_counter()
    model, x, y = trained_convnet(epochs=args.epochs)
    train_s = time.perf_counter() - start
    z = keras.ops.convert_to_numpy(model.extract_features(x)).astype("float32")
    head = keras.ops.convert_to_numpy(model.head_weights).astype("float32")
    y = np.asarray(y, "int32")
    logits = z @ head.T + keras.ops.convert_to_numpy(model.head.bias)
    report = collapse_report(z, y, head, logits, 10)
    context = dict(report)
    counts = np.bincount(y, minlength=10).astype("float32")
    sums = np.zeros((10, z.shape[1]), "float32")
    np.add.at(sums, y, z)
    chance = class_pairing_chance(counts, sums, head)
    context["mir_chance"] = float(keras.ops.convert_to_numpy(chance[0]))
    context["accuracy"] = float(np.mean(np.argmax(logits, axis=1) == y))
    context["train_s"] = train_s
    if "batch" in args.tables:
        context["batch_rows"] = by_batch_size(model, x, y)

    rows = {}
    for size in args.sizes if "sizes" in args.tables else ():
        metrics = [MIR(sample_size=size), HDR(sample_size=size), MatrixEntropy(sample_size=size)]
        values = {column: [] for column in COLUMNS}
        for draw in range(args.draws):
            rng = np.random.default_rng(1000 + draw)
            order = rng.permutation(len(y))
            zs, ys = z[order], y[order]
            mir, hdr, entropy = read(metrics, zs, ys, head, args.chunk)
            relabelled = rng.permutation(10).astype("int32")[ys]
            shuffled = rng.permutation(ys)
            values["mir"].append(mir)
            values["hdr"].append(hdr)
            values["matrix_entropy"].append(entropy)
            values["chance_relabelled"].append(
                read(metrics[:1], zs, relabelled, head, args.chunk)[0]
            )
            values["chance_shuffled"].append(read(metrics[:1], zs, shuffled, head, args.chunk)[0])
        rows[size] = {
            column: (statistics.median(v), min(v), max(v)) for column, v in values.items()
        }
        print(size, {c: round(v[0], 4) for c, v in rows[size].items()}, file=sys.stderr)
    return rows, context


def smallest_within(rows, column, tolerance):
    """The smallest size whose median is within `tolerance` (relative) of the largest size's."""
    sizes = sorted(rows)
    target = rows[sizes[-1]][column][0]
    for size in sizes:
        if abs(rows[size][column][0] - target) <= tolerance * abs(target):
            return size
    return sizes[-1]


def render(rows, context, args):
    import keras

    from keras_nc import theory

    lines = [
        "| `sample_size` | MIR (spread) | MIR chance: classes relabelled | MIR chance: labels "
        "shuffled | HDR (spread) | matrix entropy, nats (spread) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for size, row in sorted(rows.items()):
        cells = [str(size)]
        for column in COLUMNS:
            median, low, high = row[column]
            cells.append(f"{median:.4f} ({low:.4f}-{high:.4f})")
        lines.append("| " + " | ".join(cells) + " |")
    largest = max(rows)
    for tolerance in (0.01, 0.05):
        cells = [f"smallest within {tolerance:.0%} of {largest}"]
        cells += [str(smallest_within(rows, column, tolerance)) for column in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    c = context
    header = (
        f"{keras.backend.backend()} backend; Fashion-MNIST, 2,000 training images, "
        f"conv16-pool-conv32-GAP-Dense(32, relu), Adam(2e-3), {args.epochs} epochs, seed 0 "
        f"(training accuracy {c['accuracy']:.3f}, trained in {c['train_s']:.0f} s); the "
        f"sample-pairing measures of the 2,000 training features at each `sample_size`, fed "
        f"in chunks of {args.chunk} rows; median over {args.draws} shuffles of the rows "
        f"(smallest-largest). C = 10: MIR* = {theory.mir_at_collapse(10):.4f}, HDR* = 0, "
        f"log(C-1) = {theory.entropy_at_collapse(10):.4f}. The same features, class "
        f"pairing: MIR {c['mir']:.4f} (chance {c['mir_chance']:.4f}), HDR {c['hdr']:.4f}; "
        f"NC1 {c['nc1']:.3f}, ETF error {c['etf_error']:.3f}, self-duality "
        f"{c['self_duality']:.3f}."
    )
    return header, "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="torch", choices=["tensorflow", "jax", "torch"])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=250, help="rows per update_state call")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend  # before keras is imported
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows, context = measure(args)
    command = "python " + " ".join(["benchmarks/sample_size.py", *sys.argv[1:]])
    if "sizes" in args.tables:
        header, text = render(rows, context, args)
        print(header)
        print(text)
        if not args.no_write:
            write_section("sample-size", header, command, text, page="concepts.md")
    if "batch" in args.tables:
        header, text = render_batch(context["batch_rows"], args)
        print(header)
        print(text)
        if not args.no_write:
            write_section("sample-size-batch", header, command, text, page="concepts.md")


if __name__ == "__main__":
    main()
