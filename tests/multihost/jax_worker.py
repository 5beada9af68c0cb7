"""One process of a multi-process JAX `fit`/`evaluate` (tests/test_multihost_jax.py).

Run one copy per process, each in a fresh interpreter with `KERAS_BACKEND=jax`:

    python tests/multihost/jax_worker.py --coordinator 127.0.0.1:PORT \
        --num-processes 2 --process-id I --out result_I.json

Without `--coordinator` it runs alone, on one device and without a
distribution: the reference. With it, `keras.distribution.initialize` joins the
processes (CPU collectives: gloo) and `DataParallel` spans the devices of all
of them (`XLA_FLAGS=--xla_force_host_platform_device_count=2` gives each process
two). Every process feeds only its share of each global batch of `B` rows:

- `fit` gets process-local NumPy arrays: process `p` of `P` holds the rows
  `p B/P ... (p+1) B/P - 1` of every global batch, and `batch_size=B/P`.
  Keras assembles each global batch from the local ones with
  `jax.make_array_from_process_local_data` (process 0's rows first). NumPy
  input needs `auto_shard_dataset=False` on the distribution.
- `evaluate` gets the *global* `tf.data` dataset batched by `B`, with
  `auto_shard_dataset=True`; Keras shards it per process
  (`DataParallel.distribute_dataset`: `rebatch(B/P).shard(P, p)`), which
  selects the same rows.

The result (JSON) holds the evaluation, the fit history, the final weights,
timings and, with `--backup-dir`, whether the run was resumed. `--die-at EPOCH
BATCH` makes the process exit abruptly (`os._exit(DIE_EXIT_CODE)`) before that
training batch: a crash.
"""

import argparse
import json
import os
import sys
import time

START = time.perf_counter()
NUM_CLASSES, SAMPLES, FEATURES, BATCH = 5, 64, 16, 16  # 4 global batches per epoch
DIE_EXIT_CODE = 17


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinator", help="host:port of process 0; none: run alone")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-evaluate", action="store_true", help="fit only")
    parser.add_argument("--few-metrics", action="store_true", help="compile with MIR only")
    parser.add_argument("--backup-dir", help="this process's BackupAndRestore directory")
    parser.add_argument("--save-freq", default="epoch", help='"epoch" or a number of batches')
    parser.add_argument(
        "--plain-backup", action="store_true", help="Keras' BackupAndRestore, without barriers"
    )
    parser.add_argument("--die-at", type=int, nargs=2, metavar=("EPOCH", "BATCH"))
    parser.add_argument("--out", required=True, help="JSON result file")
    return parser.parse_args()


args = parse_args()
distributed = args.coordinator is not None

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")  # the default, made explicit

import keras  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from keras_nc import losses, metrics  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import tests.distributed_setup as setup  # noqa: E402

if distributed:
    keras.distribution.initialize(
        job_addresses=args.coordinator, num_processes=args.num_processes, process_id=args.process_id
    )
    DISTRIBUTION = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    keras.distribution.set_distribution(DISTRIBUTION)
INITIALIZED = time.perf_counter() - START


def local_rows(process, processes):
    """Indices of process `process`'s rows of every global batch, in order."""
    share = BATCH // processes
    starts = range(0, SAMPLES, BATCH)
    return np.concatenate([s + np.arange(process * share, (process + 1) * share) for s in starts])


def build_model():
    model = setup.build_model()
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),  # momentum: optimizer state to restore
        loss=[
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            losses.CMALoss(0.5),
            losses.InformationRegularizer(),
        ],
        # The same per-batch MIR as `collapse_metrics()`: the runs' logs are compared.
        metrics=[metrics.MIR(sample_size=None)] if args.few_metrics else setup.collapse_metrics(),
    )
    return model


class MultiProcessBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose epoch-end backup is written between two barriers.

    Give every process its own `backup_dir`. The barrier before the backup
    stops a process whose peer died from overwriting its backup: JAX dispatches
    steps asynchronously, so a survivor can reach the epoch end, and fail in
    the middle of writing its backup, before it notices the failure. The
    barrier after it makes every process finish its backup before any process
    goes on to the next epoch (where it could crash while another one is still
    writing).
    """

    def on_epoch_end(self, epoch, logs=None):
        multihost_utils.sync_global_devices(f"before the backup of epoch {epoch}")
        super().on_epoch_end(epoch, logs)
        multihost_utils.sync_global_devices(f"after the backup of epoch {epoch}")


class DieAt(keras.callbacks.Callback):
    """Exits the process abruptly before training batch `batch` of `epoch`."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            sys.stdout.flush()
            os._exit(DIE_EXIT_CODE)


class Steps(keras.callbacks.Callback):
    """Records the (epoch, batch) pairs this `fit` trained on, and when each ended."""

    def __init__(self):
        super().__init__()
        self.steps, self.times, self.epoch = [], [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([self.epoch, batch])
        self.times.append(round(time.perf_counter() - START, 2))


def evaluate(model, x, y):
    """The evaluation of the global batches (and, alone, of half batches)."""
    if distributed:
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)  # global batches
        DISTRIBUTION.auto_shard_dataset = True  # Keras selects this process's rows
        return {"evaluate": model.evaluate(dataset, return_dict=True, verbose=0)}
    return {
        "evaluate": model.evaluate(x, y, batch_size=BATCH, return_dict=True, verbose=0),
        # What a process would measure on its own rows only (not what happens).
        "evaluate_half_batches": model.evaluate(
            x, y, batch_size=BATCH // 2, return_dict=True, verbose=0
        ),
    }


def fit_callbacks():
    callbacks = []
    if args.backup_dir:
        save_freq = args.save_freq if args.save_freq == "epoch" else int(args.save_freq)
        plain = args.plain_backup or not distributed
        backup = keras.callbacks.BackupAndRestore if plain else MultiProcessBackupAndRestore
        callbacks.append(backup(args.backup_dir, save_freq=save_freq))
    if args.die_at:
        callbacks.append(DieAt(*args.die_at))
    return callbacks


def main():
    x, y = setup.data()
    processes = args.num_processes if distributed else 1
    rows = local_rows(args.process_id, processes)
    model = build_model()
    initial = model.get_weights()
    timings = {"initialized": INITIALIZED, "built": time.perf_counter() - START}
    result = {
        "process_count": jax.process_count(),
        "process_index": jax.process_index(),
        "devices": len(jax.devices()),
        "local_devices": len(jax.local_devices()),
        "kernel_devices": len(model.head.kernel.value.sharding.device_set),
        "timings": timings,
    }
    if not args.no_evaluate:
        result.update(evaluate(model, x, y))
        timings["evaluated"] = time.perf_counter() - START
    if args.backup_dir:
        result["resumed"] = os.path.exists(os.path.join(args.backup_dir, "latest.weights.h5"))
    steps = Steps()
    if distributed:
        DISTRIBUTION.auto_shard_dataset = False  # the arrays hold this process's rows only
    history = model.fit(
        x[rows],
        y[rows],
        batch_size=BATCH // processes,  # per process; the global batch is BATCH
        epochs=args.epochs,
        shuffle=False,
        verbose=0,
        callbacks=[*fit_callbacks(), steps],
    )
    timings["fitted"] = time.perf_counter() - START
    weights = model.get_weights()
    result["history"] = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    result["steps"], timings["steps"] = steps.steps, steps.times
    result["weights"] = [w.ravel().tolist() for w in weights]
    changes = [np.abs(a - b).max() for a, b in zip(weights, initial, strict=True)]
    result["weights_changed"] = float(max(changes))
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
