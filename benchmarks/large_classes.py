"""Benchmark: the epoch-end class measures at C = 1,000 to 100,000 classes, d = 512.

What `result()` of the class metrics computes once per epoch, called directly
on exactly consistent class statistics (every class present, 2 samples each:
counts, sums, squared norms and the `d x d` second moment of features
`mu_c + noise`, built in closed form, no data pass), each backend in its own
process:

- `nc`: `keras_nc.ops.neural_collapse_measures` with the head: NC1, CDNV, ETF
  error, equinorm, self-duality;
- `pairing_2`: `class_pairing_ratios(..., alpha=2)` (MIR and HDR of order 2:
  no eigendecomposition, tiled);
- `pairing_1`: `class_pairing_ratios(..., alpha=1)` (the default order: the
  joint entropy needs the spectrum of a `C x C` matrix when `C <= d^2`,
  eigenvalues only: `keras_nc.compat.eigvalsh`), run up to `--pairing-max`
  classes only.

Per cell: the median and range (min-max) of `--repeats` timings taken after a
warm-up call at C = 100 (JAX compiles each eager operation once), the repeats
of the cells interleaved (cell 1, 2, ..., then again); and the peak resident
memory above the process's memory before the call (Linux: `VmHWM` after
resetting it through `/proc/self/clear_refs`), which covers every backend's
allocations (tracemalloc sees only Python's).

    python benchmarks/large_classes.py [--classes 1000 10000 100000] [--backends torch]
    python benchmarks/large_classes.py --classes 10000 --pairing-max 10000 --cells pairing_1
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

CELLS = ("nc", "pairing_2", "pairing_1")


def _memory_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def statistics_of(num_classes, d, seed=0):
    """Consistent class statistics of 2 samples a class: `mu_c + N(0, sigma^2 I)`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_classes, d)) + 0.5  # a common offset, like ReLU features
    counts = np.full(num_classes, 2.0)
    sigma2 = 0.25
    sums = counts[:, None] * means
    sq_norms = counts * (np.sum(means**2, axis=1) + d * sigma2)
    second = (means * counts[:, None]).T @ means + counts.sum() * sigma2 * np.eye(d)
    head = rng.normal(size=(num_classes, d))
    stats = {
        "counts": counts.astype("float32"),
        "sums": sums.astype("float32"),
        "sq_norms": sq_norms.astype("float32"),
        "second_moment": second.astype("float32"),
    }
    return stats, head.astype("float32")


def run_cell(cell, stats, head):
    import keras

    from keras_nc import ops as nc_ops

    if cell == "nc":
        values = nc_ops.neural_collapse_measures(stats, head)
        values = list(values.values())
    else:
        alpha = 2.0 if cell == "pairing_2" else 1.0
        values = nc_ops.class_pairing_ratios(stats["counts"], stats["sums"], head, alpha=alpha)
    return [float(keras.ops.convert_to_numpy(v)) for v in values]


def worker(args):
    import keras
    import numpy as np

    if args.threads and keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(args.threads)
    elif args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    cells = [
        (num_classes, cell)
        for num_classes in args.classes
        for cell in args.cells
        if not (cell == "pairing_1" and num_classes > args.pairing_max)
    ]
    small, small_head = statistics_of(100, args.dim)
    for cell in args.cells:
        run_cell(cell, small, small_head)  # warm-up: JAX compiles each eager operation once
    data = {num_classes: statistics_of(num_classes, args.dim) for num_classes in args.classes}
    times = {key: [] for key in cells}
    memory = {key: [] for key in cells}
    for repeat in range(args.repeats):
        for num_classes, cell in cells:
            if repeat and num_classes >= args.once_above:
                continue
            stats, head = data[num_classes]
            before = _memory_kb("VmRSS")
            _reset_peak()
            start = time.perf_counter()
            values = run_cell(cell, stats, head)
            times[(num_classes, cell)].append(time.perf_counter() - start)
            memory[(num_classes, cell)].append((_memory_kb("VmHWM") - before) / 1024)
            assert all(np.isfinite(values)), (cell, num_classes, values)
            seconds = times[(num_classes, cell)][-1]
            print(f"{cell} C={num_classes}: {seconds:.2f} s", file=sys.stderr)
    rows = []
    for num_classes in args.classes:
        row = {"backend": keras.backend.backend(), "classes": num_classes}
        for cell in CELLS:
            t = times.get((num_classes, cell))
            row[cell] = None if not t else [statistics.median(t), min(t), max(t), len(t)]
            row[cell + "_mb"] = None if not t else max(memory[(num_classes, cell)])
        rows.append(row)
    return rows


def run(backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT
    if args.threads:  # every BLAS/LAPACK and intra-op pool of the three backends
        n = str(args.threads)
        env.update(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
            f" intra_op_parallelism_threads={n}"
        ).strip()
    cmd = [sys.executable, __file__, "--worker", *sys.argv[1:]]
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cell(value, mb):
    if value is None:
        return "not run", ""
    median, low, high, count = value
    spread = f" ({low:.2f}-{high:.2f})" if count > 1 else ""
    return f"{median:.2f}{spread}", f"{mb:,.0f}"


def render(rows, args):
    lines = [
        "| backend | C | NC1, CDNV, ETF, equinorm, self-duality (s) | MB "
        "| class MIR + HDR, order 2 (s) | MB | class MIR + HDR, order 1 (s) | MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [_cell(r[cell], r[cell + "_mb"]) for cell in CELLS]
        body = " | ".join(f"{t} | {m}" for t, m in cells)
        lines.append(f"| {r['backend']} | {r['classes']:,} | {body} |")
    threads = f"{args.threads} thread(s) per pool" if args.threads else "the backends' threads"
    header = (
        f"d = {args.dim}, every class present, {threads}; median (range) of {args.repeats} "
        f"interleaved repeats (1 at C >= {args.once_above:,}); MB: peak resident memory above the "
        f"process's before the call. Order-1 pairing run up to C = {args.pairing_max:,}."
    )
    return header, "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--classes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--once-above", type=int, default=50000, help="one repeat from this C")
    parser.add_argument("--pairing-max", type=int, default=1000, help="largest C of order 1")
    parser.add_argument(
        "--cells", nargs="+", default=list(CELLS), choices=CELLS, help="what to time (all)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="threads of every pool (default: the backends')"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = [row for backend in args.backends for row in run(backend, args)]
    header, text = render(rows, args)
    print(text)
    if not args.no_write:
        command = "python " + " ".join(["benchmarks/large_classes.py", *sys.argv[1:]])
        write_section("large-classes", header, command, text)


if __name__ == "__main__":
    main()
