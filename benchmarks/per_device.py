"""Benchmark: the sample-head collapse terms on the global batch vs per device (JAX).

`CollapseClassifier(sample_scope="global")` computes MIR/HDR (and the
regulariser) on the global batch: under `keras.distribution.DataParallel`
every device runs the same `n x n` eigendecomposition. `sample_scope="device"`
runs them on each device's `n / S` rows (`jax.shard_map`) and averages.

Two tables, written into docs/performance.md and docs/scaling.md:

1. **Cost**: one jitted step of the terms a training step adds (the
   regulariser's value and its gradient with respect to the features, the MIR,
   HDR and feature-entropy metrics sharing its entropies) on `S` CPU devices,
   global vs per device, at global batches `--batches` (features `(n, d)`,
   sharded over the devices as `DataParallel` lays them out). Best of
   `--repeats` timed calls after a warm-up; the variants alternate, so a load
   change on the machine hits all of them. One BLAS thread, as
   `CollapseClassifier.fit` sets on JAX CPUs.
2. **What the per-device value is**: on the features of an MLP trained on the
   digits data (1,797 images), the sample-head MIR and HDR of batches of `n`
   rows (mean and spread over `--draws` random batches). Per device on `S`
   devices at global batch `B` is exactly the global value at batch `B / S`,
   averaged over the `S` shards: the table shows how that statistic moves with
   the batch size.

    python benchmarks/per_device.py [--devices 4] [--batches 512 1024]

It sets `KERAS_BACKEND=jax` and the CPU device count itself (a fresh process).
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_parser():
    parser = argparse.ArgumentParser(prog="python benchmarks/per_device.py")
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--batches", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser


def _step_function(scope):
    import jax
    import keras

    from keras_nc.losses import InformationRegularizer
    from keras_nc.step import CollapseStep

    regularizer = InformationRegularizer(0.5, 0.5)

    def terms(features, labels, head):
        step = CollapseStep(labels, features, head, sample_scope=scope)
        loss = regularizer(labels, features=features, head_weights=head, step=step)
        mir, hdr = step.sample_ratios(center=True, alpha=1.0)
        return loss, (mir, hdr, step.feature_entropy(center=True, alpha=1.0))

    grad = jax.jit(jax.value_and_grad(terms, has_aux=True))
    return lambda *arrays: keras.tree.map_structure(lambda v: v.block_until_ready(), grad(*arrays))


def cost_table(args):
    import keras
    import numpy as np

    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    layouts = [distribution.get_data_layout(shape) for shape in ((1, 1), (1,))]
    rng = np.random.default_rng(0)
    head = rng.normal(size=(args.classes, args.dim)).astype("float32")
    rows = []
    for n in args.batches:
        labels = rng.integers(0, args.classes, n).astype("int32")
        features = rng.normal(size=(n, args.dim)).astype("float32")
        # "one device": no distribution when traced, unsharded arrays.
        keras.distribution.set_distribution(None)
        variants = {"one device": (_step_function("global"), (features, labels, head))}
        keras.distribution.set_distribution(distribution)
        sharded = [
            keras.distribution.distribute_tensor(array, layout)
            for array, layout in zip((features, labels), layouts, strict=True)
        ]
        for scope in ("global", "device"):
            variants[scope] = (_step_function(scope), (*sharded, head))
        values, times = {}, {name: [] for name in variants}
        for name, (step, arrays) in variants.items():
            (_, (mir, _, _)), _ = step(*arrays)  # compile, warm up
            values[name] = float(mir)
        for _ in range(args.repeats):
            for name, (step, arrays) in variants.items():
                start = time.perf_counter()
                step(*arrays)
                times[name].append(time.perf_counter() - start)
        ms = {name: 1000 * float(np.min(t)) for name, t in times.items()}
        rows.append((n, ms, values))
        print(n, ms, values, flush=True)
    keras.distribution.set_distribution(None)
    lines = [
        "| global batch n | rows per device | one device, global (ms) | "
        f"{len(devices)} devices, global (ms) | {len(devices)} devices, per device (ms) | "
        "global / per device | MIR global | MIR per device |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, ms, values in rows:
        lines.append(
            f"| {n} | {n // len(devices)} | {ms['one device']:.0f} | {ms['global']:.0f} | "
            f"{ms['device']:.0f} | {ms['global'] / ms['device']:.0f}x | "
            f"{values['global']:.3f} | {values['device']:.3f} |"
        )
    return "\n".join(lines)


def trained_features():
    import keras
    from sklearn.datasets import load_digits

    from keras_nc.models import CollapseClassifier

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(256, activation="relu")(inputs)
    features = keras.layers.Dense(128, activation="relu")(hidden)
    model = CollapseClassifier(keras.Model(inputs, features), num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    z = keras.ops.convert_to_numpy(model.extract_features(x))
    return z, y, keras.ops.convert_to_numpy(model.head_weights)


def batch_size_table(args):
    import numpy as np

    from keras_nc import ops as nc_ops

    z, y, head = trained_features()
    rng = np.random.default_rng(1)
    lines = ["| batch n | MIR | HDR |", "|---:|---:|---:|"]
    sizes = [n for n in (16, 32, 64, 128, 256, 512, 1024) if n <= len(y)]
    for n in sizes:
        values = []
        for _ in range(args.draws):
            rows = rng.choice(len(y), n, replace=False)
            values.append([float(v) for v in nc_ops.sample_head_ratios(z[rows], y[rows], head)])
        mean, std = np.mean(values, axis=0), np.std(values, axis=0, ddof=1)
        lines.append(f"| {n} | {mean[0]:.3f} ± {std[0]:.3f} | {mean[1]:.3f} ± {std[1]:.3f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}"
    )
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import threadpoolctl
    from _docs import write_section

    # One BLAS thread, as `CollapseClassifier.fit` sets on JAX CPUs (LAPACK's own
    # threads would otherwise compete with XLA's for the cores: 10-40x slower here).
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        cost = cost_table(args)
    print(cost)
    sizes = batch_size_table(args)
    print(sizes)
    if args.no_write:
        return
    command = "python benchmarks/per_device.py " + " ".join(argv or sys.argv[1:])
    header = (
        f"JAX, {args.devices} CPU devices (`--xla_force_host_platform_device_count`), "
        f"d = {args.dim}, C = {args.classes}; one jitted step of the regulariser's value "
        "and gradient plus the MIR, HDR and feature-entropy metrics, best of "
        f"{args.repeats} calls, one BLAS thread (as `CollapseClassifier.fit` sets on JAX CPUs)."
    )
    for page in ("performance.md", "scaling.md"):
        write_section("per-device-cost", header, command.strip(), cost, page=page)
    write_section(
        "per-device-batch-size",
        "sample-head MIR and HDR of random batches of n digits images, features of an "
        f"MLP trained 30 epochs (mean ± std over {args.draws} batches).",
        command.strip(),
        sizes,
        page="scaling.md",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
