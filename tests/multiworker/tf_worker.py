"""One process of the TensorFlow multi-worker test (tests/test_multiworker_tf.py).

Run in a fresh interpreter with `KERAS_BACKEND=tensorflow` from the repository
root; prints its numbers as JSON on its last line.

    python tests/multiworker/tf_worker.py worker [--fit-only] [--kill-at EPOCH STEP]
        [--backup DIR FREQ]... [--resume DIR FREQ]...
        One `tf.distribute.MultiWorkerMirroredStrategy` worker (cluster and
        index from `TF_CONFIG`; one CPU device, one replica): the rows its
        replica is fed, `evaluate` with every collapse metric, then `fit` (2
        epochs, unshuffled) with the collapse losses, then the same `fit` with
        the cross-entropy alone. `--fit-only`: the first `fit` only, with
        `keras.callbacks.BackupAndRestore(DIR, save_freq=FREQ)` for each
        `--backup`; `--kill-at`: this worker exits (`os._exit(1)`) before step
        STEP of epoch EPOCH, as a crash would. `--resume` (instead): one such
        `fit` per entry, each with its own `BackupAndRestore`, one after the
        other. Every worker must run the same phases (the same collectives in
        the same order): give all workers the same phase flags.
    python tests/multiworker/tf_worker.py one-device
        The single-worker reference: one device (no strategy) fed the same
        global batches, and the one-device metrics and losses on the rows
        each replica sees.
    python tests/multiworker/tf_worker.py mirrored [--replay BATCH...]
        `tf.distribute.MirroredStrategy` over 2 logical CPU devices: the
        multi-worker semantics in one process. `--replay`: also one epoch
        over these global batches (indices), from the initial weights.

Keras 3.15 needs two fixes to run `fit`/`evaluate` under
`MultiWorkerMirroredStrategy` (keras-team/keras#20585, tensorflow/tensorflow#72388);
`keras_nc.models.CollapseClassifier` carries them (inert elsewhere).
"""

import argparse
import json
import os
import sys
import time

START = time.monotonic()
import tensorflow as tf  # noqa: E402

NUM_CLASSES, SAMPLES, FEATURES = 5, 64, 16
REPLICAS, BATCH = 2, 16  # global batch: 4 steps per epoch, 8 rows per replica
SLICE = BATCH // REPLICAS
EPOCHS = 2


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("worker", "one-device", "mirrored"))
    parser.add_argument("--fit-only", action="store_true")
    parser.add_argument("--kill-at", type=int, nargs=2, metavar=("EPOCH", "STEP"))
    parser.add_argument("--backup", nargs=2, action="append", default=[], metavar=("DIR", "FREQ"))
    parser.add_argument("--resume", nargs=2, action="append", default=[], metavar=("DIR", "FREQ"))
    parser.add_argument("--replay", type=int, nargs="+", default=[], metavar="BATCH")
    return parser.parse_args()


ARGS = parse_args()
if ARGS.role == "mirrored":  # before anything initialises the runtime
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    STRATEGY = None
elif ARGS.role == "one-device":
    STRATEGY = None
else:  # reads TF_CONFIG; must come before anything initialises the runtime
    STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_nc import losses, metrics  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.distributed_setup import build_model, collapse_metrics, data  # noqa: E402


def dataset(*tensors, batch_order=None):
    """The global batches, unshuffled (or the batches `batch_order` lists).

    `DATA` sharding (what `AUTO` falls back to for a dataset without files):
    every worker reads every global batch and keeps its contiguous chunk.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    if batch_order is not None:
        rows = np.concatenate([np.arange(b * BATCH, (b + 1) * BATCH) for b in batch_order])
        tensors = tuple(t[rows] for t in tensors)
    batches = tf.data.Dataset.from_tensor_slices(tensors).batch(BATCH)
    return batches.with_options(options)


def fit_metrics():
    return [metrics.MIR(), metrics.MIR(pairing="class", name="mir_class"), metrics.NC1()]


def collapse_losses():
    return [
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        losses.CMALoss(0.5),
        losses.InformationRegularizer(),
    ]


def compile_model(model, metric_list, loss=None):
    loss = collapse_losses() if loss is None else loss
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, metrics=metric_list)


def to_float(value):
    return float(np.asarray(keras.ops.convert_to_numpy(value)))


def run_fit(strategy, x, y, loss=None, callbacks=(), batch_order=None):
    """`fit` from the initial weights (2 epochs; 1 over `batch_order`)."""
    with strategy.scope():
        model = build_model()
        compile_model(model, fit_metrics(), loss)
    epochs = EPOCHS if batch_order is None else 1
    history = model.fit(
        dataset(x, y, batch_order=batch_order),
        epochs=epochs,
        verbose=0,
        callbacks=list(callbacks),
    )
    return {
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "epochs_run": len(history.epoch),
        "weights": [w.ravel().tolist() for w in model.get_weights()],
    }


def run_evaluate(strategy, x, y):
    with strategy.scope():
        model = build_model()
        compile_model(model, collapse_metrics())
    return model.evaluate(dataset(x, y), return_dict=True, verbose=0)


def replica_rows(strategy, x):
    """The sample indices each local replica is fed, step by step."""
    distributed = strategy.experimental_distribute_dataset(dataset(np.arange(len(x))))
    return [
        [t.numpy().tolist() for t in strategy.experimental_local_results(indices)]
        for (indices,) in distributed
    ]


class KillAt(keras.callbacks.Callback):
    """Ends this process, as a crash would, before step `step` of epoch `epoch`."""

    def __init__(self, epoch, step):
        super().__init__()
        self.epoch, self.step, self.current = epoch, step, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.step):
            sys.stdout.flush()
            os._exit(1)


def run_worker():
    x, y = data()
    result = {
        "task": json.loads(os.environ["TF_CONFIG"])["task"]["index"],
        "replicas": STRATEGY.num_replicas_in_sync,
        "local_replicas": len(STRATEGY.extended.worker_devices),
    }

    def backup(path, freq):
        freq = freq if freq == "epoch" else int(freq)
        return keras.callbacks.BackupAndRestore(path, save_freq=freq)

    if ARGS.resume:
        result["resumed"] = [run_fit(STRATEGY, x, y, callbacks=[backup(*b)]) for b in ARGS.resume]
        return result
    callbacks = [backup(*b) for b in ARGS.backup]
    if ARGS.kill_at:
        callbacks.append(KillAt(*ARGS.kill_at))
    if not ARGS.fit_only:
        result["rows"] = replica_rows(STRATEGY, x)
        result["evaluate"] = run_evaluate(STRATEGY, x, y)
    result["fit"] = run_fit(STRATEGY, x, y, callbacks=callbacks)
    if not ARGS.fit_only:
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        result["fit_cross_entropy"] = run_fit(STRATEGY, x, y, loss=cross_entropy)
    return result


def slices(batches, contiguous=True):
    """Replica r's rows of every global batch: chunk r, or every REPLICAS-th row."""
    if contiguous:
        return [rows[r * SLICE : (r + 1) * SLICE] for rows in batches for r in range(REPLICAS)]
    return [rows[r::REPLICAS] for rows in batches for r in range(REPLICAS)]


def references(model, x, y):
    """One-device metrics and losses on the rows each replica sees."""
    z = keras.ops.convert_to_numpy(model.extract_features(x))
    head = keras.ops.convert_to_numpy(model.head.kernel).T
    logits = keras.ops.convert_to_numpy(model(x))

    def by_name(groups):
        values = {}
        for metric in collapse_metrics():
            for rows in groups:  # one update per group, like one batch each
                metric.update_state(
                    y[rows], features=z[rows], head_weights=head, logits=logits[rows]
                )
            values[metric.name] = to_float(metric.result())
        return values

    def collapse_terms(rows):
        return sum(
            to_float(loss(y[rows], features=z[rows], head_weights=head))
            for loss in collapse_losses()[1:]
        )

    batches = [np.arange(start, start + BATCH) for start in range(0, SAMPLES, BATCH)]
    contiguous = slices(batches)
    # Replica r's state: its own chunks of the global batches, one update each.
    per_replica = [by_name(contiguous[r::REPLICAS]) for r in range(REPLICAS)]
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return {
        "contiguous_slices": by_name(contiguous),
        "strided_slices": by_name(slices(batches, contiguous=False)),
        "replica_mean": {k: float(np.mean([v[k] for v in per_replica])) for k in per_replica[0]},
        "cross_entropy": to_float(ce(y, logits)),
        "collapse_terms_global": float(np.mean([collapse_terms(rows) for rows in batches])),
        "collapse_terms_slices": float(np.mean([collapse_terms(rows) for rows in contiguous])),
    }


def run_one_device():
    x, y = data()
    one_device = tf.distribute.get_strategy()
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return {
        "evaluate": run_evaluate(one_device, x, y),
        "references": references(build_model(), x, y),
        "fit": run_fit(one_device, x, y),
        "fit_cross_entropy": run_fit(one_device, x, y, loss=cross_entropy),
    }


def run_mirrored():
    x, y = data()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    mirrored = tf.distribute.MirroredStrategy(devices)
    result = {
        "replicas": mirrored.num_replicas_in_sync,
        "rows": replica_rows(mirrored, x),
        "evaluate": run_evaluate(mirrored, x, y),
        "fit": run_fit(mirrored, x, y),
    }
    if ARGS.replay:
        result["fit_replayed"] = run_fit(mirrored, x, y, batch_order=ARGS.replay)
    return result


if __name__ == "__main__":
    run = {"worker": run_worker, "one-device": run_one_device, "mirrored": run_mirrored}
    result = run[ARGS.role]()
    result["seconds"] = time.monotonic() - START  # after the interpreter's start
    print(json.dumps(result))
