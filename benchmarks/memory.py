"""Benchmark: memory of the accumulating metrics at C = 1000 classes, d = 2048 features.

For each backend and each metric that accumulates class statistics over an
epoch (`MIR(pairing="class")`, `NC1()` with its d x d second moment, `ETFError()`
as the other NC measures), a fresh subprocess builds the metric, feeds it
`--batches` batches of `--n` samples and computes `result()`, and reports

- the metric state: the bytes of its variables (exact);
- the peak memory: the growth of the process's peak resident set size
  (`ru_maxrss`) from just before the first `update_state` to after `result()`.
  It includes everything the backend allocated on the way (kernel workspaces,
  the eigendecompositions of `result()`, first-call compilation), so it is an
  upper bound of what the metric costs, measured the way an OS sees it;
- the time of `result()` (an epoch-end cost, eager): its first call (which
  includes the backend's first-call set-up: compilation on JAX, LAPACK's
  thread pool on torch) and a second call.

    python benchmarks/memory.py [--backends jax] [--classes 1000] [--dim 2048]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _docs import write_section  # noqa: E402

METRICS = ("MIR(pairing='class')", "NC1()", "ETFError()")


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(args):
    import keras
    import numpy as np

    from keras_nc import metrics

    metric = {
        METRICS[0]: lambda: metrics.MIR(pairing="class"),
        METRICS[1]: metrics.NC1,
        METRICS[2]: metrics.ETFError,
    }[args.worker]()
    metric.build_for(args.classes, args.dim)
    state = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in metric.variables)
    rng = np.random.default_rng(0)
    batches = [
        (
            keras.ops.convert_to_tensor(rng.integers(0, args.classes, args.n).astype("int32")),
            keras.ops.convert_to_tensor(rng.normal(size=(args.n, args.dim)).astype("float32")),
        )
        for _ in range(args.batches)
    ]
    head = keras.ops.convert_to_tensor(rng.normal(size=(args.classes, args.dim)).astype("float32"))
    before = _peak_mib()
    for y, z in batches:
        metric.update_state(y, features=z, head_weights=head)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        value = float(keras.ops.convert_to_numpy(metric.result()))
        seconds.append(time.perf_counter() - start)
    row = {
        "backend": keras.backend.backend(),
        "metric": args.worker,
        "state_mib": state / 2**20,
        "peak_mib": _peak_mib() - before,
        "first_result_s": seconds[0],
        "result_s": seconds[1],
        "value": value,
    }
    print(json.dumps(row))


def run(backend, metric, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, __file__, "--worker", metric, "--classes", str(args.classes)]
    cmd += ["--dim", str(args.dim), "--n", str(args.n), "--batches", str(args.batches)]
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(row, file=sys.stderr)
    return row


def table(rows):
    lines = [
        "| backend | metric | state (MiB) | peak memory growth (MiB) | first `result()` (s) "
        "| next `result()` (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | `{r['metric']}` | {r['state_mib']:.1f} | {r['peak_mib']:.0f} "
            f"| {r['first_result_s']:.2f} | {r['result_s']:.2f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = [run(backend, metric, args) for backend in args.backends for metric in METRICS]
    text = table(rows)
    print(text)
    if not args.no_write:
        command = "python " + " ".join(["benchmarks/memory.py", *sys.argv[1:]])
        header = (
            f"C = {args.classes}, d = {args.dim}, {args.batches} batches of {args.n} samples, "
            "one fresh process per row."
        )
        write_section("memory-benchmark", header, command, text)


if __name__ == "__main__":
    main()
