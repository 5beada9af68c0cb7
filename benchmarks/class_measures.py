"""Benchmark: the classic NC measures and the class pairing at ImageNet-sized heads.

Three tables, each backend in its own process:

- `step`: the training step of a `CollapseClassifier` with all seven class
  measures (`NC1`, `CDNV`, `ETFError`, `Equinorm`, `SelfDuality`,
  `MIR/HDR(pairing="class")`), and with the six without NC1, against the same
  model without metrics, for two models: an MLP (backbone 64 -> 512, ReLU;
  head of `--classes` = 1000 classes; batch 128, random data), where the
  measures' per-step work weighs most, and the recipe's CIFAR ResNet-18 at
  width 1/8 (64-d features, `--conv-classes` = 10 classes, 32 x 32 x 3 random
  images, batch 128). After a warm-up epoch (compilation), `--rounds`
  epochs of each variant are timed interleaved (plain, measures, without NC1,
  plain, ...); each step is timed from the batch-begin to the batch-end
  callback, so the epoch-end computation of the measures is not in it. A
  round's ratio is the median step of the variant over the median plain step
  of the same round; the table gives the median ratio over the rounds and its
  spread (smallest to largest). The step adds the batch to one shared
  `ClassStatistics` (one scatter-add, `n d`, and the upper block triangle of
  NC1's `d x d` second moment, `5/8 n d^2` at d = 512); the measures
  themselves are computed once, at the end of the epoch. `--models mlp`
  times the MLP only; `--clock cpu --threads 1` the process's CPU time on one
  thread (for a shared machine). `--profile` prints the busiest operations
  of ten MLP steps instead (`torch.profiler` on PyTorch, the TensorFlow
  profiler's trace on TensorFlow: open it in TensorBoard).
- `epoch_end`: the seconds of that epoch-end computation (`get_metrics_result()`
  outside the step) for C = 100, 1,000 and 10,000 classes, all present, d = 512:
  the five NC measures (one SVD of `C x d` and `C x C` products) and the class
  pairing MIR/HDR (eigendecompositions of `C x C`) separately.
- `offset`: relative error of NC1 and CDNV from `evaluate` (4 batches of
  100, C = 5, d = 8, class means spread 2 sigma) against float64 NumPy, with a
  common offset of 0 to 1e4 within-class spreads added to every feature.
- `accuracy`: NC1 of a small convnet (conv16-pool-conv32-GAP-Dense(32, relu))
  trained 12 epochs with Adam(2e-3) on 2,000 Fashion-MNIST training images:
  `evaluate`'s NC1 against `tr(Sigma_W Sigma_B^+)/C` in float64 NumPy on the same
  features (needs Debian's `dataset-fashion-mnist`).

    python benchmarks/class_measures.py [--tables step epoch_end accuracy] [--backends jax]
    python benchmarks/class_measures.py --tables step --models mlp --clock cpu --threads 1
    python benchmarks/class_measures.py --profile --backends torch
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

TABLES = ("step", "epoch_end", "accuracy", "offset")
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


def resnet(num_classes, seed=0):
    import keras

    from keras_nc.models import CollapseClassifier
    from recipes.backbones import cifar_resnet

    keras.utils.set_random_seed(seed)
    return CollapseClassifier(cifar_resnet(18, width=0.125), num_classes)


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


class StepTimer:
    """Collects the time of every training step (batch begin to batch end).

    `clock="cpu"`: the process's CPU time (all its threads), which other jobs
    on a shared machine inflate far less than the wall time.
    """

    def __new__(cls, clock="wall"):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_train_batch_begin(self, batch, logs=None):
                self._start = CLOCK[clock]()

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(CLOCK[clock]() - self._start)

        return _Timer()


def _step_data(args, conv):
    import numpy as np

    rng = np.random.default_rng(0)
    n = args.batch * (args.conv_steps if conv else args.steps)
    shape = (32, 32, 3) if conv else (64,)
    x = rng.normal(size=(n, *shape)).astype("float32")
    y = rng.integers(0, args.conv_classes if conv else args.classes, n).astype("int32")
    return x, y


def _step_models(args, conv):
    import keras

    variants = {"plain": [], "measures": class_metrics(), "without_nc1": class_metrics()[1:]}
    if conv:
        del variants["without_nc1"]
    models = {}
    for variant, metric_list in variants.items():
        model = resnet(args.conv_classes) if conv else mlp(args.classes, args.dim)
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9) if conv else "sgd"
        model.compile(optimizer=optimizer, loss="auto", metrics=metric_list)
        models[variant] = model
    return models


def _limit_threads(threads):
    import keras

    if not threads:
        return
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)


def step_worker(args):
    import keras

    _limit_threads(args.threads)
    rows = []
    for conv in [model == "resnet18" for model in args.models]:
        x, y = _step_data(args, conv)
        models = _step_models(args, conv)
        for model in models.values():  # warm-up: compilation, first calls
            model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, shuffle=False)
        medians = {variant: [] for variant in models}
        for _ in range(args.rounds):
            for variant, model in models.items():
                timer = StepTimer(args.clock)
                model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, shuffle=False,
                          callbacks=[timer])  # fmt: skip
                medians[variant].append(statistics.median(timer.times))
        row = {"backend": keras.backend.backend(), "model": "resnet18" if conv else "mlp"}
        row["plain_ms"] = 1e3 * statistics.median(medians["plain"])
        for variant in medians:
            if variant == "plain":
                continue
            ratios = [a / b for a, b in zip(medians[variant], medians["plain"], strict=True)]
            row[f"{variant}_ms"] = 1e3 * statistics.median(medians[variant])
            row[f"{variant}_ratio"] = statistics.median(ratios)
            row[f"{variant}_spread"] = (min(ratios), max(ratios))
        rows.append(row)
        print(row, file=sys.stderr)
    return rows


def profile_worker(args):
    """The busiest operations of ten MLP steps with the seven measures (after a warm-up)."""
    import keras

    _limit_threads(args.threads)
    x, y = _step_data(args, conv=False)
    model = _step_models(args, conv=False)["measures"]
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)
    backend = keras.backend.backend()

    class Profile(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 5:
                self.session = _profiler(backend, args.profile_dir)
                self.session.__enter__()

        def on_train_batch_end(self, batch, logs=None):
            if batch == 14:
                self.session.__exit__(None, None, None)

    callback = Profile()
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, callbacks=[callback])
    if backend == "torch":
        events = callback.session.key_averages(group_by_input_shape=True)
        print(events.table(sort_by="self_cpu_time_total", row_limit=30), file=sys.stderr)
        count = sum(event.count for event in events if event.key.startswith("aten::"))
        print(f"aten operations per step: {count / 10:.0f}", file=sys.stderr)
    else:
        print(f"trace written to {args.profile_dir} (TensorBoard's profile tab)", file=sys.stderr)
    return []


def _profiler(backend, directory):
    if backend == "torch":
        from torch.profiler import ProfilerActivity, profile

        return profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    if backend == "tensorflow":
        import contextlib

        import tensorflow as tf

        @contextlib.contextmanager
        def trace():
            tf.profiler.experimental.start(directory)
            try:
                yield
            finally:
                tf.profiler.experimental.stop()

        return trace()
    import jax

    return jax.profiler.trace(directory)


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
    from _convnet import trained_convnet

    model, x_train, y_train = trained_convnet(metrics=class_metrics()[:1])
    nc1 = model.evaluate(x_train, y_train, batch_size=256, verbose=0,
                         return_dict=True)["nc1"]  # fmt: skip
    z = keras.ops.convert_to_numpy(model.extract_features(x_train)).astype("float64")
    want = reference.neural_collapse(z, y_train, np.zeros((10, z.shape[1])), 10)["nc1"]
    centred = np.stack([z[y_train == c].mean(axis=0) for c in range(10)]) - z.mean(axis=0)
    spectrum = np.linalg.eigvalsh(centred @ centred.T)[::-1]  # one ~0: the means sum to ~0
    return {
        "backend": keras.backend.backend(),
        "nc1": nc1,
        "float64": want,
        "relative_error": abs(nc1 / want - 1.0),
        "eig_ratio": float(spectrum[-2] / spectrum[0]) if len(spectrum) > 1 else 1.0,
        "dead_units": int(np.sum(np.all(z == 0, axis=0))),
    }


def offset_worker(args):
    import keras
    import numpy as np
    import reference  # tests/reference.py: the suite's independent float64 NumPy reference

    from keras_nc import metrics
    from keras_nc.models import CollapseClassifier

    rows = []
    for offset in (0.0, 1e2, 1e3, 1e4):
        rng = np.random.default_rng(0)
        means = 2.0 * rng.normal(size=(5, 8))
        y = rng.permutation(np.arange(400) % 5).astype("int32")
        z = (offset * np.ones(8) + means[y] + rng.normal(size=(400, 8))).astype("float32")
        inputs = keras.Input((8,))
        model = CollapseClassifier(keras.Model(inputs, keras.layers.Identity()(inputs)), 5)
        model.compile(metrics=[metrics.NC1(), metrics.CDNV()])
        got = model.evaluate(z, y, batch_size=100, verbose=0, return_dict=True)
        want = reference.neural_collapse(z, y, np.zeros((5, 8)), 5)
        row = {"backend": keras.backend.backend(), "offset": offset}
        row.update({key: abs(got[key] / want[key] - 1.0) for key in ("nc1", "cdnv")})
        rows.append(row)
    return rows


def run(backend, table, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    if args.threads:  # the kernels' own pools (OpenMP, BLAS; XLA's CPU client)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(args.threads)
        # XLA's CPU client (JAX; TensorFlow with XLA): its own Eigen pool.
        xla = f"intra_op_parallelism_threads={args.threads}"
        if args.threads == 1:
            xla = "--xla_cpu_multi_thread_eigen=false " + xla
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla).strip()
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "tests"), ROOT])
    cmd = [sys.executable, __file__, "--worker", table, *sys.argv[1:]]
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(result, file=sys.stderr)
    return result if isinstance(result, list) else [result]


def render(table, rows, args):
    if table == "step":
        lines = ["| backend | model | plain step (ms) | + 7 class measures (ms) | ratio (spread) "
                 "| + 6, without NC1 (ms) | ratio (spread) |",
                 "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in rows:
            cells = [r["backend"], r["model"], f"{r['plain_ms']:.1f}"]
            for variant in ("measures", "without_nc1"):
                if f"{variant}_ms" not in r:
                    cells += ["-", "-"]
                    continue
                low, high = r[f"{variant}_spread"]
                cells += [f"{r[f'{variant}_ms']:.1f}",
                          f"{r[f'{variant}_ratio']:.2f}x ({low:.2f}-{high:.2f})"]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        header = (f"MLP: C = {args.classes}, d = {args.dim}, {args.steps} steps an epoch; "
                  f"ResNet-18 x1/8: C = {args.conv_classes}, d = 64, {args.conv_steps} steps "
                  f"an epoch; batch {args.batch}, {args.rounds} interleaved epochs each; median "
                  "step; ratio of the medians of a round: median (smallest-largest); "
                  f"{args.clock} clock" + (f", {args.threads} thread(s)." if args.threads
                                           else "."))  # fmt: skip
    elif table == "epoch_end":
        lines = ["| backend | C | NC1, CDNV, ETF, equinorm, self-duality (s) "
                 "| class MIR + HDR (s) |", "|---|---:|---:|---:|"]  # fmt: skip
        for r in rows:
            pairing = "not run" if r["pairing_s"] is None else f"{r['pairing_s']:.2f}"
            lines.append(f"| {r['backend']} | {r['classes']:,} | {r['nc_s']:.2f} | {pairing} |")
        header = (f"d = {args.dim}, every class present, one `result()` read of the metrics "
                  f"sharing one `ClassStatistics` (class pairing run up to C = "
                  f"{args.pairing_max:,}).")  # fmt: skip
    elif table == "offset":
        lines = ["| backend | offset / sigma | NC1 relative error | CDNV relative error |",
                 "|---|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {r['backend']} | {r['offset']:.0e} | {r['nc1']:.1e} | {r['cdnv']:.1e} |"
                  for r in rows]  # fmt: skip
        header = ("C = 5, d = 8, 400 samples in 4 `evaluate` batches, class means spread "
                  "2 sigma, a common offset on every feature; against float64 NumPy.")  # fmt: skip
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
    parser.add_argument(
        "--models",
        nargs="+",
        default=["mlp", "resnet18"],
        choices=["mlp", "resnet18"],
        help="the models of the `step` table",
    )
    parser.add_argument("--conv-classes", type=int, default=10)
    parser.add_argument("--conv-steps", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="profile ten MLP steps")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCK),
        default="wall",
        help="wall time (default), or the process's CPU time (all its threads): less "
        "sensitive to other jobs on a shared machine",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="threads of the kernels; 0: the default"
    )
    parser.add_argument("--profile-dir", default="/tmp/class_measures_profile")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epoch-classes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--pairing-max", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = {"step": step_worker, "epoch_end": epoch_end_worker,
                  "accuracy": accuracy_worker, "profile": profile_worker,
                  "offset": offset_worker}[args.worker]  # fmt: skip
        print(json.dumps(worker(args)))
        return
    if args.profile:
        for backend in args.backends:
            run(backend, "profile", args)
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
