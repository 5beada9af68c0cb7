"""Collapse metrics and losses on several devices (docs/scaling.md).

- JAX, `keras.distribution.DataParallel` over 4 CPU devices
  (`XLA_FLAGS=--xla_force_host_platform_device_count=4`): one SPMD program over
  the global batch, so every metric, the loss and a short `fit` must match one
  device.
- TensorFlow, `tf.distribute.MirroredStrategy` over 4 logical CPU devices: each
  replica runs the step on its slice of the global batch (contiguous chunks of
  `BATCH / 4` rows). The class-statistics metrics sum their state across
  replicas and match one device (computed once, from the summed state, when
  the epoch ends; the per-batch logs hold their last value); the per-batch
  metrics (sample-pairing MIR and HDR, MatrixEntropy) are means of per-slice
  values, and NCCAgreement is the mean of per-replica values: all pinned
  against the one-device metrics fed the same rows. The collapse losses of each replica's
  slice are averaged over replicas, like Keras' own losses.

Device counts must be fixed before a backend initialises, so every check runs
a script in a fresh interpreter (one with 1 device and one with 4, side by
side) that prints its numbers as JSON on its last line.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.distributed_setup import ATOL, RTOL, assert_close, assert_distinguishable
from tests.tolerances import float32_tolerance

BACKEND = keras.backend.backend()
NUM_DEVICES = 4
BATCH = 32  # global batch: 2 batches of 64 samples, 8 rows per replica
SLICE = BATCH // NUM_DEVICES
# The head rows read across replicas are the assigned float32 rows, or (were the read
# a mean of the replicas' identical copies) a sum of NUM_DEVICES of them over their number.
HEAD_READ_RTOL = float32_tolerance(terms=NUM_DEVICES)
# LLVM optimisation level 0 roughly halves the XLA CPU compile time of the
# train/test steps and the eagerly run metric results; both runs use it.
_XLA_FAST = "--xla_backend_optimization_level=0"
SAMPLE_METRICS = ("mir", "hdr", "matrix_entropy")
CLASS_METRICS = ("mir_class", "hdr_class", "nc1", "cdnv", "etf_error", "equinorm", "self_duality")

# The scripts (`_script` puts the constants above first; the first command-line
# argument is the device count). Shared: data, a model with fixed weights, the
# metrics and losses, and one-device references.
_COMMON = """
import json, sys

sys.path.insert(0, TESTS_DIR)
import keras
import numpy as np

from tests.distributed_setup import SAMPLES, build_model, collapse_metrics, data
from keras_nc import losses, metrics


def collapse_losses():
    return [
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        losses.CMALoss(0.5),
        losses.InformationRegularizer(),
    ]


def compile_model(model, metric_list=None):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=collapse_losses(),
        metrics=collapse_metrics() if metric_list is None else metric_list,
    )


def to_float(value):
    return float(np.asarray(keras.ops.convert_to_numpy(value)))


def history_floats(history):
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def fit_metrics():
    return [
        metrics.MIR(sample_size=None),
        metrics.MIR(pairing="class", name="mir_class"),
        metrics.NC1(),
    ]


def slices(batches, contiguous=True):
    # Replica r's rows of every global batch: chunk r, or every NUM_DEVICES-th row.
    if contiguous:
        return [rows[r * SLICE : (r + 1) * SLICE] for rows in batches for r in range(NUM_DEVICES)]
    return [rows[r::NUM_DEVICES] for rows in batches for r in range(NUM_DEVICES)]


def references(model, x, y, full=True):
    # One-device values on groups of rows: the per-batch metrics on the slices
    # a replica sees and, with `full`, on strided slices, the class statistics
    # of each replica and the losses.
    z = keras.ops.convert_to_numpy(model.extract_features(x))
    head = keras.ops.convert_to_numpy(model.head.kernel).T
    logits = keras.ops.convert_to_numpy(model(x))

    def metric_value(metric, groups):
        for rows in groups:  # one update per group, like one batch each
            metric.update_state(y[rows], features=z[rows], head_weights=head, logits=logits[rows])
        return to_float(metric.result())

    def by_name(groups, metric_list=None):
        metric_list = collapse_metrics() if metric_list is None else metric_list
        return {m.name: metric_value(m, groups) for m in metric_list}

    def collapse_terms(rows):
        return sum(
            to_float(loss(y[rows], features=z[rows], head_weights=head))
            for loss in collapse_losses()[1:]
        )

    batches = [np.arange(start, start + BATCH) for start in range(0, SAMPLES, BATCH)]
    contiguous = slices(batches)
    if not full:
        # sample_scope="device": the per-batch metrics and the regulariser on each
        # device's slice (averaged), cross-entropy and CMA on the global batch.
        per_batch = [
            metrics.MIR(sample_size=None),
            metrics.HDR(sample_size=None),
            metrics.MatrixEntropy(sample_size=None),
        ]
        ce, cma, regularizer = collapse_losses()

        def batch_loss(rows):
            terms = [to_float(ce(y[rows], logits[rows]))]
            terms.append(to_float(cma(y[rows], features=z[rows], head_weights=head)))
            shards = slices([rows])
            terms += [
                to_float(regularizer(y[s], features=z[s], head_weights=head)) / len(shards)
                for s in shards
            ]
            return sum(terms)

        return {
            "contiguous_slices": by_name(contiguous, per_batch),
            "device_scope_loss": float(np.mean([batch_loss(rows) for rows in batches])),
        }
    # Replica r's state: its slices of the global batches, one update each.
    per_replica = [by_name(slices(batches)[r::NUM_DEVICES]) for r in range(NUM_DEVICES)]
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return {
        "contiguous_slices": by_name(contiguous),
        "strided_slices": by_name(slices(batches, contiguous=False)),
        "replica_mean": {k: float(np.mean([v[k] for v in per_replica])) for k in per_replica[0]},
        "cross_entropy": to_float(ce(y, logits)),
        "collapse_terms_global": float(np.mean([collapse_terms(rows) for rows in batches])),
        "collapse_terms_slices": float(np.mean([collapse_terms(rows) for rows in contiguous])),
    }
"""

_JAX_SCRIPT = """
distributed = int(sys.argv[1]) > 1
devices = keras.distribution.list_devices()
if distributed:
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
x, y = data()
model = build_model()
compile_model(model)
initial = [w.copy() for w in model.get_weights()]
result = {
    "devices": len(devices),
    "kernel_devices": len(model.head.kernel.value.sharding.device_set),
    "evaluate": model.evaluate(x, y, batch_size=BATCH, return_dict=True, verbose=0),
}
if not distributed:
    result["references"] = references(model, x, y, full=False)
else:
    per_device = build_model(sample_scope="device")
    compile_model(
    per_device,
    [metrics.MIR(sample_size=None), metrics.HDR(sample_size=None),
     metrics.MatrixEntropy(sample_size=None)],
)
    result["evaluate_device"] = per_device.evaluate(
        x, y, batch_size=BATCH, return_dict=True, verbose=0
    )
compile_model(model, fit_metrics())
history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
result["history"] = history_floats(history)
result["weights"] = [w.ravel().tolist() for w in model.get_weights()]
result["weights_changed"] = max(
    float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), initial)
)
print(json.dumps(result))
"""

_TF_PROLOGUE = """
import sys

import tensorflow as tf

if int(sys.argv[1]) > 1:  # before anything initialises the runtime
    cpu = tf.config.list_physical_devices("CPU")[0]
    logical = [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES
    tf.config.set_logical_device_configuration(cpu, logical)
"""

_TF_SCRIPT = """
x, y = data()
if int(sys.argv[1]) == 1:
    model = build_model()
    compile_model(model)
    evaluated = model.evaluate(x, y, batch_size=BATCH, return_dict=True, verbose=0)
    print(json.dumps({"evaluate": evaluated, "references": references(model, x, y)}))
    sys.exit()


class LastBatchLogs(keras.callbacks.Callback):
    def on_test_batch_end(self, batch, logs=None):
        self.logs = {key: float(value) for key, value in logs.items()}


devices = [d.name for d in tf.config.list_logical_devices("CPU")]
strategy = tf.distribute.MirroredStrategy(devices)
with strategy.scope():
    model = build_model()
    metric_list = collapse_metrics()
    compile_model(model, metric_list)
last_batch = LastBatchLogs()
evaluated = model.evaluate(
    x, y, batch_size=BATCH, return_dict=True, verbose=0, callbacks=[last_batch]
)
head = keras.ops.convert_to_numpy(model.head.kernel).T
self_duality = next(m for m in metric_list if m.name == "self_duality")
head_read = keras.ops.convert_to_numpy(self_duality.statistics.head)  # cross-replica read
head_read_scale = float(np.sum(head_read * head) / np.sum(head * head))
initial = [w.copy() for w in model.get_weights()]
with strategy.scope():
    compile_model(model, fit_metrics())
history = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "kernel_replicas": len(strategy.experimental_local_results(model.head.kernel.value)),
    "evaluate": evaluated,
    "last_batch_logs": last_batch.logs,
    "head_read_scale": head_read_scale,
    "head_read_residual": float(
        np.abs(head_read - head_read_scale * head).max() / np.abs(head).max()
    ),
    "history": history_floats(history),
    "weights_finite": all(bool(np.isfinite(w).all()) for w in model.get_weights()),
    "weights_changed": max(
        float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), initial)
    ),
}))
"""


def _script(*parts):
    constants = (
        f"NUM_DEVICES, BATCH, SLICE = {NUM_DEVICES}, {BATCH}, {SLICE}\n"
        f"TESTS_DIR = {os.path.dirname(os.path.abspath(__file__))!r}\n"
    )
    return "\n".join([constants, *parts])


def _start(script, *args, env=None):
    """Starts `script` in a fresh interpreter on this suite's backend."""
    env = {**os.environ, "KERAS_BACKEND": BACKEND, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_side_by_side(script, env=None):
    """Runs `script 1` and `script 4` concurrently; returns their JSON results."""
    procs = {n: _start(script, str(n), env=env) for n in (1, NUM_DEVICES)}
    results = {}
    try:
        for n, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"{n}-device script failed:\n{stderr[-5000:]}"
            results[n] = json.loads(stdout.strip().splitlines()[-1])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results[1], results[NUM_DEVICES]


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution.DataParallel (JAX)")
def test_jax_data_parallel_matches_one_device():
    one, four = _run_side_by_side(
        _script(_COMMON, _JAX_SCRIPT),
        env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={NUM_DEVICES} {_XLA_FAST}"},
    )
    assert one["devices"] == four["devices"] == NUM_DEVICES
    assert (one["kernel_devices"], four["kernel_devices"]) == (1, NUM_DEVICES)

    # Global-batch semantics: evaluate equals one device for every metric and the loss.
    assert set(four["evaluate"]) == set(one["evaluate"])
    assert_close(four["evaluate"], one["evaluate"], one["evaluate"], what="evaluate")
    # ... and per-replica slices would have given visibly different values.
    slices = one["references"]["contiguous_slices"]
    assert_distinguishable(one["evaluate"], slices, SAMPLE_METRICS)
    # sample_scope="device": each device's rows (shard_map), averaged; the
    # one-device metrics fed the same slices. The loss: cross-entropy and CMA
    # of the global batch plus the mean of the slices' regulariser terms.
    assert_close(four["evaluate_device"], slices, SAMPLE_METRICS, what="device scope")
    np.testing.assert_allclose(
        four["evaluate_device"]["loss"], one["references"]["device_scope_loss"], rtol=RTOL
    )

    # Two epochs of fit from the same weights, unshuffled: same trajectory.
    assert set(four["history"]) == set(one["history"])
    for key in one["history"]:
        assert np.isfinite(four["history"][key]).all(), key
    assert_close(four["history"], one["history"], one["history"], what="fit")
    for w4, w1 in zip(four["weights"], one["weights"], strict=True):
        np.testing.assert_allclose(w4, w1, rtol=RTOL, atol=ATOL)
    assert one["weights_changed"] > 1e-4


@pytest.fixture(scope="module")
def tensorflow_runs():
    if BACKEND != "tensorflow":
        pytest.skip("tf.distribute.MirroredStrategy (TensorFlow)")
    return _run_side_by_side(_script(_TF_PROLOGUE, _COMMON, _TF_SCRIPT))


def test_tensorflow_mirrored_strategy_metrics(tensorflow_runs):
    one, four = tensorflow_runs
    assert four["replicas"] == four["kernel_replicas"] == NUM_DEVICES
    refs = one["references"]

    # Class statistics are summed across replicas: the one-device values.
    assert_close(four["evaluate"], one["evaluate"], CLASS_METRICS, what="class metric")

    # Per-batch metrics: each replica's contiguous slice of every global batch,
    # averaged (slices have equal size), i.e. the one-device metric fed slices.
    slices, strided = refs["contiguous_slices"], refs["strided_slices"]
    assert_close(four["evaluate"], slices, SAMPLE_METRICS, what="per-slice metric")
    assert_distinguishable(one["evaluate"], slices, SAMPLE_METRICS)
    assert_distinguishable(strided, slices, SAMPLE_METRICS)

    # NCCAgreement compares each sample with the class means its replica has
    # accumulated so far (its own slices only): the mean of per-replica values.
    replica_mean = refs["replica_mean"]
    assert_close(four["evaluate"], replica_mean, ("ncc_agreement",), what="NC4")
    assert_distinguishable(one["evaluate"], replica_mean, ("ncc_agreement",))

    # The per-batch logs that callbacks see hold the epoch measures' last value
    # (none yet: NaN, on every replica); the values above are computed from the
    # summed state when the evaluation ends.
    for key in CLASS_METRICS:
        assert np.isnan(four["last_batch_logs"][key]), key

    # The head rows are stored in an "only_first_replica" metric variable: read
    # outside a replica they are the rows every replica assigned, not their sum.
    assert four["head_read_scale"] == pytest.approx(1.0, rel=HEAD_READ_RTOL)
    # Each entry within HEAD_READ_RTOL of its row, the fitted scale within it of 1:
    # the residual, relative to the largest entry, within twice.
    assert four["head_read_residual"] <= 2 * HEAD_READ_RTOL

    # A short fit with the collapse losses: finite, and the weights move.
    for key, values in four["history"].items():
        assert np.isfinite(values).all(), key
    assert four["weights_finite"] and four["weights_changed"] > 1e-4


def test_tensorflow_mirrored_strategy_loss(tensorflow_runs):
    one, four = tensorflow_runs
    refs = one["references"]
    # Cross-entropy is over the global batch; the collapse terms of each replica's
    # slice are averaged over replicas, as Keras does for its own losses.
    assert not np.isclose(refs["collapse_terms_global"], refs["collapse_terms_slices"])
    expected = refs["cross_entropy"] + refs["collapse_terms_slices"]
    np.testing.assert_allclose(four["evaluate"]["loss"], expected, rtol=RTOL)
