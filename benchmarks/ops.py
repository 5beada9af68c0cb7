"""Benchmark: entropy of a feature batch, fast min(n, d) path vs a naive n x n eigh.

For every backend (one subprocess each, since Keras fixes its backend at import)
and every (n, d), times

- naive: `matrix_entropy(gram(z))`, one n x n eigendecomposition;
- fast:  `feature_entropy(z)`, one min(n, d) x min(n, d) eigendecomposition;

interleaved in the same process (fast, naive, fast, naive, ...) so that machine
noise hits both alike, and reports medians and the ratio naive / fast. Modes:
JAX under `jax.jit`; TensorFlow under `tf.function` both without XLA ("graph",
LAPACK's eigh) and with `jit_compile=True` ("xla", what `model.fit` uses by
default, whose CPU eigh is far slower); torch eagerly. A variant whose warm-up
call takes longer than `--max-seconds` is timed once and not run at larger n.
The table is printed and written into docs/performance.md.

    python benchmarks/ops.py                      # all backends, default grid
    python benchmarks/ops.py --backends jax --n 128 1024 --d 64 --repeats 5
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
from _docs import write_section  # noqa: E402

MODES = {"tensorflow": ["graph", "xla"], "jax": ["jit"], "torch": ["eager"]}


def _compile(fn, mode):
    if mode == "jit":
        import jax

        return jax.jit(fn)
    if mode in ("graph", "xla"):
        import tensorflow as tf

        return tf.function(fn, jit_compile=mode == "xla")
    return fn


def _block(x):
    import keras

    return keras.ops.convert_to_numpy(x)


def _timed(fn, z):
    start = time.perf_counter()
    value = float(_block(fn(z)))
    return value, time.perf_counter() - start


def worker(mode, ns, ds, repeats, max_seconds):
    """Runs in a subprocess with KERAS_BACKEND set; prints one JSON line."""
    import keras
    import numpy as np

    from keras_nc import ops as nc

    fast = _compile(lambda z: nc.feature_entropy(z), mode)
    naive = _compile(lambda z: nc.matrix_entropy(nc.gram(z)), mode)
    rng = np.random.default_rng(0)
    rows, slow_at = [], None  # naive cost grows with n, hardly with d
    for n in ns:
        for d in ds:
            z = keras.ops.convert_to_tensor(rng.normal(size=(n, d)).astype("float32"))
            variants = {"fast": fast}
            if slow_at is None or n <= slow_at:
                variants["naive"] = naive
            times, values = {}, {}
            for name, fn in variants.items():  # warm-up (compiles), then one timed call
                _timed(fn, z)
                values[name], t = _timed(fn, z)
                times[name] = [t]
            timed = [name for name in variants if times[name][0] < max_seconds]
            for _ in range(repeats - 1):  # interleaved repeats
                for name in timed:
                    times[name].append(_timed(variants[name], z)[1])
            if "naive" in variants and "naive" not in timed:
                slow_at = n
            row = {"n": n, "d": d, "fast_ms": 1e3 * statistics.median(times["fast"])}
            if "naive" in times:
                row["naive_ms"] = 1e3 * statistics.median(times["naive"])
                row["ratio"] = row["naive_ms"] / row["fast_ms"]
                row["abs_diff"] = abs(values["fast"] - values["naive"])
            rows.append(row)
            print(f"[{keras.backend.backend()}/{mode}] {row}", file=sys.stderr, flush=True)
    print(json.dumps({"backend": keras.backend.backend(), "mode": mode, "rows": rows}))


def run_backend(backend, mode, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, __file__, "--worker", mode, "--repeats", str(args.repeats)]
    cmd += ["--max-seconds", str(args.max_seconds), "--n"]
    cmd += [str(n) for n in args.n] + ["--d"] + [str(d) for d in args.d]
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results):
    lines = [
        "| backend (mode) | n | d | naive n x n (ms) | fast min(n, d) (ms) | speed-up "
        "| abs. difference (nats) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for r in result["rows"]:
            if "naive_ms" in r:
                naive = f"{r['naive_ms']:.1f} | {r['fast_ms']:.1f} | {r['ratio']:.1f}x"
                naive += f" | {r['abs_diff']:.1e}"
            else:
                naive = f"not run (slow) | {r['fast_ms']:.1f} | | "
            lines.append(
                f"| {result['backend']} ({result['mode']}) | {r['n']} | {r['d']} | {naive} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--n", nargs="+", type=int, default=[128, 512, 1024, 2048])
    parser.add_argument("--d", nargs="+", type=int, default=[64, 128, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=5.0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.d, args.repeats, args.max_seconds)
        return
    results = [
        run_backend(backend, mode, args) for backend in args.backends for mode in MODES[backend]
    ]
    text = table(results)
    print(text)
    if not args.no_write:
        command = "python " + " ".join(["benchmarks/ops.py", *sys.argv[1:]])
        write_section("ops-benchmark", "float32, median of the timed repeats.", command, text)


if __name__ == "__main__":
    main()
