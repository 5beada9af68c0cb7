"""Benchmark: training-step overhead of the collapse metrics, losses and monitor.

A `CollapseClassifier` on CIFAR-shaped inputs (32x32x3, 10 classes, batch 128,
random data): by default the recipe's ResNet-18 at width 1/8 (64-d features;
`--model convnet`: three 3x3 conv layers, a much cheaper step, so the same
overhead weighs more). Variants:

- `plain`: cross-entropy, accuracy;
- `metrics`: + `[MIR(), HDR(), MatrixEntropy()]`;
- `regularizer`: + `InformationRegularizer(0.5, 0.5)`;
- `renyi2`: + `InformationRegularizer(0.5, 0.5, alpha=2)` (no eigendecomposition);
- `cma`: + `CMALoss(0.5)` in the loss list;
- `monitor`: + `CollapseMonitor` every epoch on `--monitor-samples` images
  (its cost is spread over the epoch's steps).

Each backend runs in its own process. After a warm-up epoch (compilation), the
variants' epochs are timed interleaved (plain, metrics, ..., plain, ...) so that
machine noise hits all alike; the table reports the median step time and its
ratio to `plain`. JAX compiles with XLA, TensorFlow runs `tf.function` graphs
without XLA (the CPU default of `CollapseClassifier` with collapse terms; XLA's
CPU eigh is slow), torch runs eagerly.

    python benchmarks/overhead.py [--backends jax torch] [--model convnet] [--steps 10]
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
sys.path.insert(0, ROOT)  # the recipes package
from _docs import write_section  # noqa: E402

VARIANTS = ("plain", "metrics", "regularizer", "renyi2", "cma", "monitor")


def conv_backbone(width):
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(4 * width, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(inputs, x, name="convnet")  # feature maps: pooled by the classifier


def backbone(model, width):
    if model == "convnet":
        return conv_backbone(int(width))
    from recipes.backbones import cifar_resnet

    return cifar_resnet(18, width=width)


def build(variant, model_name, width, jit_compile):
    import keras

    import keras_nc
    from keras_nc.losses import CMALoss, InformationRegularizer
    from keras_nc.metrics import HDR, MIR, MatrixEntropy

    keras.utils.set_random_seed(0)
    model = keras_nc.models.CollapseClassifier(backbone(model_name, width), num_classes=10)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss, metrics = [ce], ["accuracy"]
    if variant == "metrics":
        metrics += [MIR(), HDR(), MatrixEntropy()]
    elif variant == "cma":
        loss.append(CMALoss(0.5))
    elif variant == "regularizer":
        loss.append(InformationRegularizer(0.5, 0.5))
    elif variant == "renyi2":
        loss.append(InformationRegularizer(0.5, 0.5, alpha=2.0))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=loss,
        metrics=metrics,
        jit_compile=jit_compile,
    )
    return model


def worker(args):
    import keras
    import numpy as np

    from keras_nc.callbacks import CollapseMonitor

    backend = keras.backend.backend()
    jit = {"jax": True, "tensorflow": False, "torch": False}[backend]
    steps, batch = args.steps, args.batch
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=steps * batch).astype("int32")
    picked = rng.choice(len(x), size=min(args.monitor_samples, len(x)), replace=False)
    callbacks = {variant: [] for variant in VARIANTS}
    callbacks["monitor"] = [CollapseMonitor(x[picked], y[picked], batch_size=batch)]
    models = {v: build(v, args.model, args.width, jit) for v in VARIANTS}
    for variant, model in models.items():  # warm-up: compile
        model.fit(
            x[: 2 * batch],
            y[: 2 * batch],
            batch_size=batch,
            epochs=1,
            verbose=0,
            callbacks=callbacks[variant],
        )
    times = {variant: [] for variant in VARIANTS}
    for _ in range(args.repeats):
        for variant, model in models.items():
            start = time.perf_counter()
            model.fit(
                x,
                y,
                batch_size=batch,
                epochs=1,
                verbose=0,
                shuffle=False,
                callbacks=callbacks[variant],
            )
            times[variant].append((time.perf_counter() - start) / steps)
            print(f"[{backend}] {variant}: {1e3 * times[variant][-1]:.1f} ms/step", file=sys.stderr)
    medians = {variant: statistics.median(t) for variant, t in times.items()}
    print(json.dumps({"backend": backend, "jit_compile": jit, "step_s": medians}))


def run_backend(backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, __file__, "--worker", "--steps", str(args.steps)]
    cmd += ["--repeats", str(args.repeats), "--batch", str(args.batch), "--width", str(args.width)]
    cmd += ["--model", args.model, "--monitor-samples", str(args.monitor_samples)]
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results):
    header = "| backend (jit_compile) | " + " | ".join(VARIANTS) + " |"
    lines = [header, "|---|" + "---:|" * len(VARIANTS)]
    for result in results:
        steps = result["step_s"]
        cells = [f"{1e3 * steps['plain']:.0f} ms"]
        cells += [
            f"{1e3 * steps[v]:.0f} ms ({steps[v] / steps['plain']:.2f}x)" for v in VARIANTS[1:]
        ]
        lines.append(
            f"| {result['backend']} ({result['jit_compile']}) | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--model", choices=["resnet18", "convnet"], default="resnet18")
    parser.add_argument(
        "--width",
        type=float,
        default=None,
        help="ResNet width multiplier (default 0.125) "
        "or the convnet's first conv width (default 16)",
    )
    parser.add_argument("--monitor-samples", type=int, default=1024)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.width is None:
        args.width = 0.125 if args.model == "resnet18" else 16
    if args.worker:
        worker(args)
        return
    results = [run_backend(backend, args) for backend in args.backends]
    text = table(results)
    print(text)
    if not args.no_write:
        command = "python " + " ".join(["benchmarks/overhead.py", *sys.argv[1:]])
        if args.model == "resnet18":
            net = f"ResNet-18 at width {args.width:g} ({int(512 * args.width)}-d features)"
        else:
            width = int(args.width)
            net = f"3-layer convnet, widths {width}/{2 * width}/{4 * width}"
        header = (
            f"{net}, batch {args.batch}, monitor on {args.monitor_samples} images, "
            f"median of {args.repeats} interleaved epochs of {args.steps} steps."
        )
        write_section(f"overhead-benchmark-{args.model}", header, command, text)


if __name__ == "__main__":
    main()
