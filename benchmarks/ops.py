"""Benchmark: the collapse quantities of one batch, keras-nc's path vs a naive one.

For every backend (one subprocess each, since Keras fixes its backend at import)
and every batch shape, times

- `entropy` (n, d): `feature_entropy(z)`, one min(n, d) eigendecomposition, vs
  `matrix_entropy(gram(z))`, one n x n;
- `mir_hdr` (n, d, C), the sample-head pairing (MI, MIR and HDR come from the
  same three entropies): `sample_head_ratios(z, y, w)`, which picks by shape
  (`keras_nc.ops.pairing.direct_sample_head`, the `path` column) between one
  n x n eigendecomposition (the Hadamard product) plus a min(n, d) and a
  min(n, C, d) one ("sides") and the three n x n Grams in one batched call
  ("direct": small batches, where the calls cost more than the work the sides
  save), vs `information_ratios(*sample_head_grams(z, y, w))`, three n x n
  after validating the two Grams (the naive code);
- `cma` (n, d, C): `cma_entropy(z, w, y)` compiled, whose dispatcher picks
  the layout by shape (one block-diagonal eigendecomposition of size
  n + min(C, n) for many classes; per-class Grams padded to a common size in
  one batched `eigh` for few classes and large batches; the groups' d x d
  sides), vs the authors' loop: a Python loop over the classes present with
  one small eigendecomposition per class (eager: its shapes depend on the
  data, so it cannot be compiled); the `path` column says which layout ran;

interleaved in the same process (fast, naive, naive, fast, fast, ...: the order
alternates, since the second of a pair can run faster) so that machine noise
hits both alike, and reports medians, the spread of the ratio (its
lowest and highest over the interleaved pairs), the ratio naive / fast of the
medians and the largest absolute difference of the values. A row whose ratio
comes out between 0.9 and 1.0 (within noise of the goal, 1.0) is timed again
with twice the repeats, and the rerun is reported. Modes: JAX under `jax.jit`;
TensorFlow under `tf.function` without XLA ("graph", LAPACK's eigh; add "xla"
with `--tf-modes graph xla`: XLA's CPU eigh is 30-60x slower); torch eagerly. A
variant whose warm-up call takes longer than `--max-seconds` is timed once and
not run at larger n. The table is printed and written into docs/performance.md.

    python benchmarks/ops.py                      # all backends, the full grid
    python benchmarks/ops.py --backends jax --quantities cma --n 128 1024 --d 64 --c 10
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _docs import write_section  # noqa: E402

QUANTITIES = ("entropy", "mir_hdr", "cma")


def compile_for(fn, mode):
    """`fn` as the backend's mode runs it: `jax.jit`, `tf.function` (graph or XLA), eager."""
    if mode == "jit":
        import jax

        return jax.jit(fn)
    if mode in ("graph", "xla"):
        import tensorflow as tf

        return tf.function(fn, jit_compile=mode == "xla")
    return fn


def _numpy(x):
    import keras
    import numpy as np

    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCK["wall"]


def _timed(fn, *args):
    start = _clock()
    value = _numpy(fn(*args))  # blocks until the result is there
    return value, _clock() - start


def naive_cma(z, w, y):
    """The authors' CMA: a Python loop over the classes present, one eigh each."""
    import numpy as np
    from keras import ops

    from keras_nc import ops as nc

    labels = np.asarray(ops.convert_to_numpy(y))
    zhat = z / ops.sqrt(ops.sum(ops.square(z), axis=-1, keepdims=True))
    what = w / ops.sqrt(ops.sum(ops.square(w), axis=-1, keepdims=True))
    values = []
    for c in np.unique(labels):
        rows = ops.take(zhat, np.flatnonzero(labels == c), axis=0)
        group = ops.concatenate([rows, what[int(c) : int(c) + 1]], axis=0)
        entropy = nc.matrix_entropy(ops.matmul(group, ops.transpose(group)))
        values.append(entropy / math.log(group.shape[0]))
    return ops.mean(ops.stack(values))


def cma_path(y, num_classes, d, mode):
    """The layout `cma_entropy`'s dispatcher takes for labels `y` (see `keras_nc.ops.cma`)."""
    import numpy as np

    from keras_nc.ops import cma

    n = len(y)
    fallback, sizes = cma.plan(n, num_classes, d)
    largest = int(np.bincount(y, minlength=num_classes).max()) + 1
    if not sizes:
        return fallback
    if mode == "eager":  # concrete data: each group's Gram, in runs or alone
        cost = cma.padded_cost(n, num_classes, d, largest)
        if cost >= cma.layout_costs(n, num_classes, d)[fallback]:
            return fallback
        sizes = sorted((c + 1 for c in np.bincount(y, minlength=num_classes) if c), reverse=True)
        if largest > d:  # groups wider than d: normalised rows, their d x d sides
            return f"tiered ({len(cma.tiers(sizes))} runs, largest {largest})"
        return f"grams ({len(cma.eager_runs(sizes, d))} eigh calls, largest {largest})"
    if mode == "jit" and min(num_classes, n) <= cma.PER_GROUP_SLOTS:
        return f"per group (largest {largest})"
    fitting = [size for size in sizes if size >= largest]
    return f"padded {fitting[0]}" if fitting else fallback


def mir_hdr_path(n, d, num_classes):
    """The path `sample_head_ratios` takes at this shape: "direct" or "sides"."""
    from keras_nc.ops import pairing

    return "direct" if pairing.direct_sample_head(n, d, num_classes) else "sides"


def variants(quantity, mode):
    """`(fast, naive)` callables of `(z, w, y)` for one quantity."""
    from keras import ops

    from keras_nc import ops as nc

    if quantity == "entropy":
        fast = lambda z, w, y: nc.feature_entropy(z, center=True)  # noqa: E731
        naive = lambda z, w, y: nc.matrix_entropy(nc.gram(z, center=True))  # noqa: E731
        return compile_for(fast, mode), compile_for(naive, mode)
    if quantity == "mir_hdr":
        fast = lambda z, w, y: ops.stack(nc.sample_head_ratios(z, y, w))  # noqa: E731

        def naive(z, w, y):
            return ops.stack(nc.information_ratios(*nc.sample_head_grams(z, y, w)))

        return compile_for(fast, mode), compile_for(naive, mode)
    return compile_for(nc.cma_entropy, mode), naive_cma


def measure(fns, inputs, repeats, max_seconds):
    """Times `fns` (`fast`, optionally `naive`) interleaved; a row of medians and spread."""
    import numpy as np

    times, values = {}, {}
    for name, fn in fns.items():  # warm-up (compiles), then one timed call
        _timed(fn, *inputs)
        values[name], t = _timed(fn, *inputs)
        times[name] = [t]
    timed = [name for name in fns if times[name][0] < max_seconds]
    for repeat in range(repeats - 1):  # interleaved repeats, the order alternating
        for name in timed[:: -1 if repeat % 2 == 0 else 1]:
            times[name].append(_timed(fns[name], *inputs)[1])
    row = {"fast_ms": 1e3 * statistics.median(times["fast"]), "repeats": repeats}
    row["slow"] = "naive" in fns and "naive" not in timed  # timed once: not at larger n
    if "naive" in times:
        row["naive_ms"] = 1e3 * statistics.median(times["naive"])
        row["ratio"] = row["naive_ms"] / row["fast_ms"]
        pairs = [a / b for a, b in zip(times["naive"], times["fast"], strict=False)]
        row["ratio_low"], row["ratio_high"] = min(pairs), max(pairs)
        row["abs_diff"] = float(np.abs(values["fast"] - values["naive"]).max())
    return row


def worker(args):
    """Runs in a subprocess with KERAS_BACKEND set; prints one JSON line."""
    import keras
    import numpy as np

    global _clock
    _clock = CLOCK[args.clock]
    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for quantity in args.quantities:
        fast, naive = variants(quantity, args.worker)
        slow_at = {}  # naive cost grows with n (and C for cma)
        classes = [None] if quantity == "entropy" else args.c
        for c in classes:
            for n in args.n:
                for d in args.d:
                    num_classes = c or 10
                    z = keras.ops.convert_to_tensor(rng.normal(size=(n, d)).astype("float32"))
                    w = keras.ops.convert_to_tensor(
                        rng.normal(size=(num_classes, d)).astype("float32")
                    )
                    y = keras.ops.convert_to_tensor(rng.integers(0, num_classes, n).astype("int32"))
                    fns = {"fast": fast}
                    if n <= slow_at.get(c, math.inf):
                        fns["naive"] = naive
                    row = measure(fns, (z, w, y), args.repeats, args.max_seconds)
                    if 0.9 <= row.get("ratio", 0.0) < 1.0:  # within noise of 1.0: again
                        row = measure(fns, (z, w, y), 2 * args.repeats, args.max_seconds)
                        row["rerun"] = True
                    if row.pop("slow"):
                        slow_at[c] = n
                    row.update(quantity=quantity, n=n, d=d, c=c)
                    if quantity == "cma":
                        labels = np.asarray(keras.ops.convert_to_numpy(y))
                        row["path"] = cma_path(labels, num_classes, d, args.worker)
                    elif quantity == "mir_hdr":
                        row["path"] = mir_hdr_path(n, d, num_classes)
                    rows.append(row)
                    print(f"[{keras.backend.backend()}/{args.worker}] {row}", file=sys.stderr)
    print(json.dumps({"backend": keras.backend.backend(), "mode": args.worker, "rows": rows}))


def run_backend(backend, mode, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    if args.threads:
        # OpenMP/BLAS threads of the LAPACK kernels (jaxlib's and torch's eigh):
        # on an oversubscribed machine their spinning threads make one eigh up
        # to 100x slower, at random; one thread each gives stable timings.
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(args.threads)
    cmd = [sys.executable, __file__, "--worker", mode, "--repeats", str(args.repeats)]
    cmd += ["--max-seconds", str(args.max_seconds), "--quantities", *args.quantities]
    cmd += ["--clock", args.clock, "--threads", str(args.threads)]
    cmd += ["--n", *map(str, args.n), "--d", *map(str, args.d), "--c", *map(str, args.c)]
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results, quantity):
    path = quantity in ("cma", "mir_hdr")
    lines = [
        "| backend (mode) | n | d | C | naive (ms) | keras-nc (ms) | speed-up | spread "
        "| abs. difference |" + (" path |" if path else ""),
        "|---|---:|---:|---:|---:|---:|---:|---|---:|" + ("---|" if path else ""),
    ]
    for result in results:
        for r in result["rows"]:
            if r["quantity"] != quantity:
                continue
            if "naive_ms" in r:
                rerun = " (rerun)" if r.get("rerun") else ""
                naive = f"{r['naive_ms']:.1f} | {r['fast_ms']:.1f} | {r['ratio']:.2f}x{rerun}"
                naive += f" | {r['ratio_low']:.2f}-{r['ratio_high']:.2f} | {r['abs_diff']:.1e}"
            else:
                naive = f"not run (slow) | {r['fast_ms']:.1f} | | | "
            c = r["c"] if r["c"] is not None else "-"
            extra = f" {r['path']} |" if path else ""
            lines.append(
                f"| {result['backend']} ({result['mode']}) | {r['n']} | {r['d']} | {c} | {naive} |"
                + extra
            )
    return "\n".join(lines)


HEADERS = {
    "entropy": "feature entropy, naive n x n `eigh` vs the min(n, d) side",
    "mir_hdr": "sample-head MI/MIR/HDR, three n x n `eigh` vs one n x n and two small ones "
    "(sides) or the three n x n in one batched call (direct)",
    "cma": "CMA, the authors' per-class Python loop (eager) vs the layout picked by shape",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--tf-modes", nargs="+", default=["graph"], choices=["graph", "xla"])
    parser.add_argument("--quantities", nargs="+", default=list(QUANTITIES), choices=QUANTITIES)
    parser.add_argument("--n", nargs="+", type=int, default=[64, 128, 256, 1024, 2048])
    parser.add_argument("--d", nargs="+", type=int, default=[64, 512, 2048])
    parser.add_argument("--c", nargs="+", type=int, default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=3.0)
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCK),
        default="wall",
        help="wall time (default), or the process's CPU time (all its threads): less "
        "sensitive to other processes on a shared machine, blind to idle waits",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads of the kernels (OpenMP, BLAS, TensorFlow intra-op); 0: the default",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    modes = {"tensorflow": args.tf_modes, "jax": ["jit"], "torch": ["eager"]}
    results = [
        run_backend(backend, mode, args) for backend in args.backends for mode in modes[backend]
    ]
    command = "python " + " ".join(["benchmarks/ops.py", *sys.argv[1:]])
    for quantity in args.quantities:
        text = table(results, quantity)
        print(f"\n{HEADERS[quantity]}\n{text}")
        if not args.no_write:
            header = (
                f"{HEADERS[quantity]}; float32, median of {args.repeats} interleaved repeats "
                "(spread: lowest and highest ratio of one naive and one keras-nc call), "
                f"{args.clock} clock" + (f", {args.threads} thread(s)." if args.threads else ".")
            )
            write_section(f"ops-benchmark-{quantity}", header, command, text)


if __name__ == "__main__":
    main()
