"""Benchmark: the cost of `keras_nc.ops.rank_me` against the float32 Gram it replaced.

For every backend (one subprocess each) and batch shape `(n, d)`, times, compiled
(`jax.jit`; `tf.function`, with and without XLA; torch eagerly):

- `rank_me`: the library's path (float64 Gram and `eigh` on TensorFlow, PyTorch
  and JAX with x64; a float32 SVD on JAX without x64);
- `gram32`: the previous path, the float32 `min(n, d)` Gram and its `eigh`
  (exact only to `sqrt(eps) * s_max`, 3e-4);
- `svd32`: `keras.ops.svd(z, compute_uv=False)` in float32.

Calls are interleaved (rank_me, gram32, svd32, rank_me, ...) so that machine
noise hits all alike; prints the median and the spread (min-max) of the repeats
and the ratio rank_me / gram32. Final numbers must be taken on an idle machine.

    python benchmarks/rank_speed.py
    python benchmarks/rank_speed.py --backends torch --shapes 256x512 --repeats 3
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


def _modes(backend):
    return {"jax": ["jit"], "tensorflow": ["graph", "xla"], "torch": ["eager"]}[backend]


def run_backend(shapes, repeats, max_seconds):
    import keras
    import numpy as np
    from keras import ops
    from ops import compile_for  # benchmarks/ops.py: one way to compile per backend mode

    from keras_nc import ops as nc_ops

    def gram32(z):
        n, d = z.shape
        k = ops.matmul(z, ops.transpose(z)) if n <= d else ops.matmul(ops.transpose(z), z)
        return ops.eigh(k)[0]

    variants = {
        "rank_me": nc_ops.rank_me,
        "gram32": gram32,
        "svd32": lambda z: ops.svd(z, compute_uv=False),
    }
    rng = np.random.default_rng(0)
    rows, slow = [], set()
    for mode in _modes(keras.backend.backend()):
        for n, d in shapes:
            z = ops.convert_to_tensor(rng.normal(size=(n, d)).astype("float32"))
            fns, times = {}, {}
            for name, fn in variants.items():
                if (mode, name) in slow:
                    continue
                fns[name] = compile_for(fn, mode)
                start = time.perf_counter()
                ops.convert_to_numpy(fns[name](z))  # compile and warm up
                if time.perf_counter() - start > max_seconds:
                    slow.add((mode, name))  # timed once, not at larger shapes
                times[name] = []
            for _ in range(repeats):
                for name, fn in fns.items():
                    if (mode, name) in slow and times[name]:
                        continue
                    start = time.perf_counter()
                    ops.convert_to_numpy(fn(z))
                    times[name].append(time.perf_counter() - start)
            for name, ts in times.items():
                rows.append({"mode": mode, "n": n, "d": d, "variant": name,
                             "median_ms": 1e3 * statistics.median(ts),
                             "min_ms": 1e3 * min(ts), "max_ms": 1e3 * max(ts)})  # fmt: skip
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--shapes", nargs="+", default=["128x128", "256x512", "1024x512"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=5.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    if args.worker:
        print(json.dumps(run_backend(shapes, args.repeats, args.max_seconds)))
        return
    print(f"{'backend':<11} {'mode':<6} {'n x d':>10} {'variant':<8} {'median ms':>10}"
          f" {'min-max ms':>17} {'/ gram32':>9}")  # fmt: skip
    for backend in args.backends:
        env = {**os.environ, "KERAS_BACKEND": backend}
        options = ["--repeats", str(args.repeats), "--max-seconds", str(args.max_seconds)]
        command = [sys.executable, __file__, "--worker", "--shapes", *args.shapes, *options]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True,
                             cwd=ROOT).stdout  # fmt: skip
        rows = json.loads(out.strip().splitlines()[-1])
        base = {
            (r["mode"], r["n"], r["d"]): r["median_ms"] for r in rows if r["variant"] == "gram32"
        }
        for r in rows:
            ratio = r["median_ms"] / base[(r["mode"], r["n"], r["d"])]
            print(
                f"{backend:<11} {r['mode']:<6} {r['n']:>4} x {r['d']:<4} {r['variant']:<8}"
                f" {r['median_ms']:10.2f} {r['min_ms']:8.2f}-{r['max_ms']:<8.2f} {ratio:9.2f}"
            )


if __name__ == "__main__":
    main()
