"""Benchmark: the classic NC measures and the class pairing at ImageNet-sized heads.

Three tables, each backend in its own process:

- `step`: the training step of a `CollapseClassifier` (MLP backbone 64 -> 512,
  ReLU; head of `--classes` = 1000 classes; batch 128, random data) with all
  seven class measures (`NC1`, `CDNV`, `ETFError`, `Equinorm`, `SelfDuality`,
  `MIR/HDR(pairing="class")`), and with the six without NC1, against the same
  model without metrics. After a
  warm-up epoch (compilation), epochs of the two are timed interleaved and the
  median step time (from batch-begin to batch-end callbacks) is reported with
  its ratio. The step adds the batch to one shared `ClassStatistics`
  (segment sums, `n d`, and NC1's `d x d` second moment, `n d^2`); the
  measures themselves are computed once, at the end of the epoch.
- `epoch_end`: the seconds of that epoch-end computation (`get_metrics_result()`
  outside the step) for C = 100, 1,000 and 10,000 classes, all present, d = 512:
  the five NC measures (one SVD of `C x d` and `C x C` products) and the class
  pairing MIR/HDR (eigendecompositions of `C x C`) separately.
- `accuracy`: NC1 of a small convnet (conv16-pool-conv32-GAP-Dense(32, relu))
  trained 12 epochs with Adam(2e-3) on 2,000 Fashion-MNIST training images:
  `evaluate`'s NC1 against `tr(Sigma_W Sigma_B^+)/C` in float64 NumPy on the same
  features (needs Debian's `dataset-fashion-mnist`).

    python benchmarks/class_measures.py [--tables step epoch_end accuracy] [--backends jax]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from _docs import write_section  # noqa: E402

TABLES = ("step", "epoch_end", "accuracy")
MEASURES = ("nc1", "cdnv", "etf_error", "equinorm", "self_duality", "mir_class", "hdr_class")


def class_metrics():
    from keras_nc import metrics

    return [
        metrics.NC1(),
        metrics.CDNV(),
        metrics.ETFError(),
        metrics.Equinorm(),
        metrics.SelfDuality(),
        metrics.MIR(pairing="class", name="mir_class"),
        metrics.HDR(pairing="class", name="hdr_class"),
    ]


def mlp(num_classes, d, seed=0):
    import keras

    from keras_nc.models import CollapseClassifier

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,))
    features = keras.layers.Dense(d, activation="relu")(inputs)
    return CollapseClassifier(keras.Model(inputs, features), num_classes)


class StepTimer:
    """Collects the wall time of every training step (batch begin to batch end)."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_train_batch_begin(self, batch, logs=None):
                self._start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter() - self._start)

        return _Timer()


def step_worker(args):
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    x = rng.normal(size=(n, 64)).astype("float32")
    y = rng.integers(0, args.classes, n).astype("int32")
    models = {}
    variants = {"plain": [], "measures": class_metrics(), "without_nc1": class_metrics()[1:]}
    for variant, metric_list in variants.items():
        model = mlp(args.classes, args.dim)
        model.compile(optimizer="sgd", loss="auto", metrics=metric_list)
        model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)  # warm-up: compilation
        models[variant] = model
    times = {variant: [] for variant in models}
    for _ in range(args.rounds):
        for variant, model in models.items():
            timer = StepTimer()
            model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, callbacks=[timer])
            times[variant].extend(timer.times)
    plain = statistics.median(times["plain"])
    measures = statistics.median(times["measures"])
    without_nc1 = statistics.median(times["without_nc1"])
    return {
        "backend": keras.backend.backend(),
        "plain_ms": 1e3 * plain,
        "measures_ms": 1e3 * measures,
        "ratio": measures / plain,
        "without_nc1_ms": 1e3 * without_nc1,
        "without_nc1_ratio": without_nc1 / plain,
    }


def epoch_end_worker(args):
    import keras
    import numpy as np

    from keras_nc.metrics import ClassStatistics

    rows = []
    for num_classes in args.epoch_classes:
        rng = np.random.default_rng(0)
        statistics_ = ClassStatistics(num_classes, args.dim, second_moment=True)
        head = rng.normal(size=(num_classes, args.dim)).astype("float32")
        for start in range(0, 2 * num_classes, 1024):  # every class present, twice
            y = (np.arange(start, start + 1024) % num_classes).astype("int32")
            z = (rng.normal(size=(1024, args.dim)) + 0.1 * y[:, None]).astype("float32")
            statistics_.update_state(y, features=z, head_weights=head)
        row = {"backend": keras.backend.backend(), "classes": num_classes}
        for name, metric_list in (
            ("nc_s", class_metrics()[:5]),
            ("pairing_s", class_metrics()[5:]),
        ):
            if name == "pairing_s" and num_classes > args.pairing_max:
                row[name] = None
                continue
            for metric in metric_list:
                metric.share_statistics(statistics_)
            start = time.perf_counter()
            values = [float(keras.ops.convert_to_numpy(m.result())) for m in metric_list]
            row[name] = time.perf_counter() - start
            assert all(np.isfinite(values)), values
        rows.append(row)
    return rows


def accuracy_worker(args):
    import keras
    import numpy as np
    import reference  # tests/reference.py: the suite's independent float64 NumPy reference

    from keras_nc.models import CollapseClassifier
    from recipes.data import load_dataset

    data = load_dataset("fashion_mnist", samples_per_class=200, seed=0)
    keras.utils.set_random_seed(0)
    inputs = keras.Input(data.x_train.shape[1:])
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    features = keras.layers.Dense(32, activation="relu")(x)
    model = CollapseClassifier(keras.Model(inputs, features), 10)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), metrics=class_metrics()[:1])
    model.fit(data.x_train, data.y_train, batch_size=64, epochs=12, verbose=0)
    nc1 = model.evaluate(data.x_train, data.y_train, batch_size=256, verbose=0,
                         return_dict=True)["nc1"]  # fmt: skip
    z = keras.ops.convert_to_numpy(model.extract_features(data.x_train)).astype("float64")
    want = reference.neural_collapse(z, data.y_train, np.zeros((10, z.shape[1])), 10)["nc1"]
    centred = np.stack([z[data.y_train == c].mean(axis=0) for c in range(10)]) - z.mean(axis=0)
    spectrum = np.linalg.eigvalsh(centred @ centred.T)[::-1]  # one ~0: the means sum to ~0
    return {
        "backend": keras.backend.backend(),
        "nc1": nc1,
        "float64": want,
        "relative_error": abs(nc1 / want - 1.0),
        "eig_ratio": float(spectrum[-2] / spectrum[0]) if len(spectrum) > 1 else 1.0,
        "dead_units": int(np.sum(np.all(z == 0, axis=0))),
    }


def run(backend, table, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "tests"), ROOT])
    cmd = [sys.executable, __file__, "--worker", table, *sys.argv[1:]]
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(result, file=sys.stderr)
    return result if isinstance(result, list) else [result]


def render(table, rows, args):
    if table == "step":
        lines = ["| backend | plain step (ms) | + 7 class measures (ms) | ratio "
                 "| + 6, without NC1 (ms) | ratio |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {r['backend']} | {r['plain_ms']:.1f} | {r['measures_ms']:.1f} "
                  f"| {r['ratio']:.2f}x | {r['without_nc1_ms']:.1f} "
                  f"| {r['without_nc1_ratio']:.2f}x |" for r in rows]  # fmt: skip
        header = (f"C = {args.classes}, d = {args.dim}, batch {args.batch}, {args.steps} steps "
                  f"an epoch, {args.rounds} interleaved epochs each, median step.")  # fmt: skip
    elif table == "epoch_end":
        lines = ["| backend | C | NC1, CDNV, ETF, equinorm, self-duality (s) "
                 "| class MIR + HDR (s) |", "|---|---:|---:|---:|"]  # fmt: skip
        for r in rows:
            pairing = "not run" if r["pairing_s"] is None else f"{r['pairing_s']:.2f}"
            lines.append(f"| {r['backend']} | {r['classes']:,} | {r['nc_s']:.2f} | {pairing} |")
        header = (f"d = {args.dim}, every class present, one `result()` read of the metrics "
                  f"sharing one `ClassStatistics` (class pairing run up to C = "
                  f"{args.pairing_max:,}).")  # fmt: skip
    else:
        lines = ["| backend | NC1 (`evaluate`) | NC1 (float64 NumPy) | relative error "
                 "| eigenvalue ratio of M M^T | dead ReLU units |",
                 "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {r['backend']} | {r['nc1']:.3f} | {r['float64']:.3f} "
                  f"| {r['relative_error']:.1e} | {r['eig_ratio']:.1e} | {r['dead_units']} |"
                  for r in rows]  # fmt: skip
        header = ("Fashion-MNIST, 2,000 training images, conv16-pool-conv32-GAP-Dense(32, relu), "
                  "Adam(2e-3), 12 epochs, seed 0; NC1 of the training features.")  # fmt: skip
    return header, "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epoch-classes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--pairing-max", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = {"step": step_worker, "epoch_end": epoch_end_worker,
                  "accuracy": accuracy_worker}[args.worker]  # fmt: skip
        print(json.dumps(worker(args)))
        return
    command = "python " + " ".join(["benchmarks/class_measures.py", *sys.argv[1:]])
    for table in args.tables:
        rows = [row for backend in args.backends for row in run(backend, table, args)]
        header, text = render(table, rows, args)
        print(text)
        if not args.no_write:
            write_section(f"class-measures-{table.replace('_', '-')}", header, command, text)


if __name__ == "__main__":
    main()
