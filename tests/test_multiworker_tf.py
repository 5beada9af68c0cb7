"""TensorFlow `MultiWorkerMirroredStrategy`: 2 workers on loopback (docs/scaling.md).

Two worker processes on this machine (`TF_CONFIG` with two free 127.0.0.1
ports; one CPU device, hence one replica, per worker) run
`tests/multiworker/tf_worker.py`: `evaluate` of a `CollapseClassifier` with
every collapse metric, then `fit` (2 epochs, unshuffled) with CMA and the
information regulariser, on a `tf.data` dataset of global batches of 16 with
`DATA` auto-sharding: worker `w` is fed rows `8w ... 8w + 7` of every global
batch. Two more processes, side by side, give the references: one device fed
the same global batches (with one-device metrics and losses on each replica's
rows), and `tf.distribute.MirroredStrategy` over 2 local devices (the same
per-replica semantics in one process). Checked: the rows each replica sees;
the class-statistics metrics equal one device's, the sample-head metrics and
NCCAgreement are per-replica values (pinned against one-device metrics fed
the same rows); the loss is the global cross-entropy plus the mean over
replicas of each replica's collapse terms; `fit` gives MirroredStrategy's
weights and, with the cross-entropy alone, one device's.

Failures: worker 1 exits mid-epoch, the launcher kills worker 0 (blocked in a
collective), and both restart with `keras.callbacks.BackupAndRestore`: from an
end-of-epoch backup the resumed run ends at the uninterrupted run's weights;
from a mid-epoch one (`save_freq=<steps>`) Keras 3.15 restarts the interrupted
epoch from its first batch (it restores the epoch only), which is pinned.

Every process is bounded by a timeout and its process group is killed in a
`finally` block; only 127.0.0.1 is used.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tests.distributed_setup import RTOL, assert_close, assert_distinguishable, kill_process_group

BACKEND = keras.backend.backend()
pytestmark = pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="tf.distribute.MultiWorkerMirroredStrategy is TensorFlow's (KERAS_BACKEND=tensorflow)",
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = "tests/multiworker/tf_worker.py"
WORKERS, BATCH, SAMPLES = 2, 16, 64  # as in the script: 4 steps per epoch
SLICE = BATCH // WORKERS
TIMEOUT = 300  # seconds, per launch: a safety bound (a launch takes 20-70 s on 2 busy cores)
WEIGHTS_ATOL = 1e-6  # float32 sums in another order (RTOL: tests/distributed_setup.py)
SAMPLE_METRICS = ("mir", "hdr", "matrix_entropy")
CLASS_METRICS = ("mir_class", "hdr_class", "nc1", "cdnv", "etf_error", "equinorm", "self_duality")
# The crash: worker 1 exits before step 3 (of 4) of epoch 1. Both workers back
# up at each epoch end and every 2 steps; the last backups before the crash are
# complete on both workers (the peer's step 2 needed them written first).
KILL_EPOCH, KILL_STEP, SAVE_FREQ = 1, 3, 2
# The batches Keras 3.15 applies when it resumes from the every-2-steps backup
# (written after step 1 of epoch 1): epoch 0, steps 0-1 of epoch 1, then
# epoch 1 again from its first batch. With plain SGD the weights are those of
# one pass over these global batches.
REPLAYED = [0, 1, 2, 3, 0, 1, 0, 1, 2, 3]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start(out_dir, name, args, tf_config=None):
    """Starts the script in a fresh interpreter (own process group, CPU only)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(
        KERAS_BACKEND="tensorflow",
        TF_CPP_MIN_LOG_LEVEL="3",
        CUDA_VISIBLE_DEVICES="-1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    stdout = open(out_dir / f"{name}.out", "w")  # closed by _kill
    stderr = open(out_dir / f"{name}.err", "w")
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, *args],
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    proc.files = (stdout, stderr)
    proc.name = name
    return proc


def _start_cluster(out_dir, name, worker_args):
    """Starts one worker per entry of `worker_args` on fresh loopback ports."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(len(worker_args))]}
    return [
        _start(
            out_dir,
            f"{name}-{index}",
            ["worker", *args],
            {"cluster": cluster, "task": {"type": "worker", "index": index}},
        )
        for index, args in enumerate(worker_args)
    ]


def _kill(proc):
    """Kills `proc`'s process group if it still runs; closes its output files."""
    kill_process_group(proc)
    for f in proc.files:
        f.close()


def _finish(procs, out_dir, expect_crash=False):
    """Waits for `procs`; a failed worker makes the launcher kill the others.

    Returns `{name: (returncode, JSON of the last stdout line or None)}`.
    """
    deadline = time.monotonic() + TIMEOUT
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed:
                # The others would block in a collective: end them, as a
                # launcher on real hosts would.
                break
            if time.monotonic() > deadline:
                pytest.fail(f"timeout after {TIMEOUT} s: {[p.name for p in procs]}")
            time.sleep(0.1)
    finally:
        for p in procs:
            _kill(p)
    if not expect_crash:  # report the first process that failed by itself
        for p in sorted(procs, key=lambda p: p.returncode <= 0):
            stderr = (out_dir / f"{p.name}.err").read_text()
            assert p.returncode == 0, f"{p.name} exited with {p.returncode}:\n{stderr[-5000:]}"
    results = {}
    for p in procs:
        stdout = (out_dir / f"{p.name}.out").read_text().strip().splitlines()
        results[p.name] = (p.returncode, json.loads(stdout[-1]) if stdout else None)
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two workers and the single-process references, side by side."""
    out_dir = tmp_path_factory.mktemp("multiworker_tf")
    start = time.monotonic()
    procs = [
        _start(out_dir, "one-device", ["one-device"]),
        _start(out_dir, "mirrored", ["mirrored", "--replay", *map(str, REPLAYED)]),
    ]
    try:
        procs += _start_cluster(out_dir, "worker", [[]] * WORKERS)
        results = _finish(procs, out_dir)
    finally:
        for p in procs:
            _kill(p)
    seconds = {name: round(result["seconds"], 1) for name, (_, result) in results.items()}
    print(f"\nagreement runs: {time.monotonic() - start:.1f} s (each: {seconds})")
    workers = [results[f"worker-{i}"][1] for i in range(WORKERS)]
    return {
        "one_device": results["one-device"][1],
        "mirrored": results["mirrored"][1],
        "workers": workers,
    }


def _max_difference(a, b):
    return max(float(np.max(np.abs(np.subtract(x, y)))) for x, y in zip(a, b, strict=True))


def test_each_worker_feeds_its_replica_a_contiguous_chunk(runs):
    steps = SAMPLES // BATCH
    for index, worker in enumerate(runs["workers"]):
        assert worker["task"] == index
        assert (worker["replicas"], worker["local_replicas"]) == (WORKERS, 1)
        # DATA sharding of a dataset of global batches: each worker reads every
        # batch and keeps chunk `index` (rows 8 index ... 8 index + 7).
        expected = [
            [list(range(s * BATCH + index * SLICE, s * BATCH + (index + 1) * SLICE))]
            for s in range(steps)
        ]
        assert worker["rows"] == expected
    # MirroredStrategy over 2 local devices splits each batch the same way.
    assert runs["mirrored"]["replicas"] == WORKERS
    mirrored_rows = runs["mirrored"]["rows"]
    for step in range(steps):
        assert mirrored_rows[step] == [w["rows"][step][0] for w in runs["workers"]]


def test_multiworker_metrics(runs):
    first, second = runs["workers"]
    one, mirrored = runs["one_device"], runs["mirrored"]
    refs = one["references"]
    evaluated = first["evaluate"]
    # Every worker returns the same (cross-replica) values, those of
    # MirroredStrategy over as many replicas in one process.
    assert second["evaluate"] == evaluated
    assert set(evaluated) == set(one["evaluate"])
    assert_close(evaluated, mirrored["evaluate"], evaluated, what="vs MirroredStrategy")

    # Class statistics are summed across the replicas of all workers: exact.
    assert_close(evaluated, one["evaluate"], CLASS_METRICS, what="class metric")

    # Per-batch metrics: each replica's chunk of every global batch, averaged
    # over all chunks (equal sizes): the one-device metric fed those chunks.
    chunks, strided = refs["contiguous_slices"], refs["strided_slices"]
    assert_close(evaluated, chunks, SAMPLE_METRICS, what="per-chunk metric")
    assert_distinguishable(one["evaluate"], chunks, SAMPLE_METRICS)
    assert_distinguishable(strided, chunks, SAMPLE_METRICS)

    # NCCAgreement: each replica compares its samples with its own class
    # means; the agreements are pooled over replicas.
    assert_close(evaluated, refs["replica_mean"], ("ncc_agreement",), what="NC4")
    assert_distinguishable(one["evaluate"], refs["replica_mean"], ("ncc_agreement",))


def test_multiworker_loss(runs):
    refs = runs["one_device"]["references"]
    # Global-batch cross-entropy plus the mean over replicas of the collapse
    # terms (CMA + regulariser) of each replica's chunk.
    assert not np.isclose(refs["collapse_terms_global"], refs["collapse_terms_slices"])
    expected = refs["cross_entropy"] + refs["collapse_terms_slices"]
    for worker in runs["workers"]:
        np.testing.assert_allclose(worker["evaluate"]["loss"], expected, rtol=RTOL)


def test_multiworker_fit(runs):
    first, second = runs["workers"]
    one, mirrored = runs["one_device"], runs["mirrored"]
    assert _max_difference(first["fit"]["weights"], second["fit"]["weights"]) == 0.0

    # With the collapse losses (per-chunk terms): MirroredStrategy's trajectory.
    fit = first["fit"]
    assert set(fit["history"]) == set(mirrored["fit"]["history"])
    assert_close(fit["history"], mirrored["fit"]["history"], fit["history"], what="fit")
    assert _max_difference(fit["weights"], mirrored["fit"]["weights"]) < WEIGHTS_ATOL
    # ... which is not one device's: slices of 8 rows have other collapse terms.
    assert _max_difference(fit["weights"], one["fit"]["weights"]) > 1e-3

    # With the cross-entropy alone the gradient is that of the global batch:
    # one device's weights, losses and (exact) class metrics.
    plain, plain_one = first["fit_cross_entropy"], one["fit_cross_entropy"]
    assert _max_difference(plain["weights"], plain_one["weights"]) < WEIGHTS_ATOL
    assert_close(plain["history"], plain_one["history"], ("loss", "mir_class", "nc1"))
    assert _max_difference(plain["weights"], fit["weights"]) > 1e-3  # the collapse terms count


def test_worker_killed_mid_epoch_resumes(runs, tmp_path):
    start = time.monotonic()
    backups = {
        freq: [tmp_path / f"backup-{freq}" / f"worker-{i}" for i in range(WORKERS)]
        for freq in ("epoch", str(SAVE_FREQ))
    }

    def backup_args(index, freqs):
        return [arg for f in freqs for arg in ("--backup", str(backups[f][index]), f)]

    # Launch 1: worker 1 crashes before step KILL_STEP of epoch KILL_EPOCH.
    crash = [
        ["--fit-only", *backup_args(i, backups)]
        + (["--kill-at", str(KILL_EPOCH), str(KILL_STEP)] if i == 1 else [])
        for i in range(WORKERS)
    ]
    results = _finish(_start_cluster(tmp_path, "crash", crash), tmp_path, expect_crash=True)
    assert results["crash-1"] == (1, None)  # the crash
    assert results["crash-0"][0] != 0 and results["crash-0"][1] is None  # killed, blocked
    # Every worker wrote its own complete backup (Keras 3.15 has no chief-only
    # saving); the metadata holds the epoch to resume (and the last batch).
    last_saves = {"epoch": {"epoch": 1, "batch": 0}, str(SAVE_FREQ): {"epoch": 1, "batch": 1}}
    for freq, metadata in last_saves.items():
        for path in backups[freq]:
            assert json.loads((path / "training_metadata.json").read_text()) == metadata
            assert (path / "latest.weights.h5").stat().st_size > 0

    # Launch 2: restart both workers; they resume from each kind of backup in
    # turn (one `fit` each, from a fresh model).
    resume = [
        [arg for f in backups for arg in ("--resume", str(backups[f][i]), f)]
        for i in range(WORKERS)
    ]
    results = _finish(_start_cluster(tmp_path, "resume", resume), tmp_path)
    by_epoch, by_steps = results["resume-0"][1]["resumed"]
    assert results["resume-1"][1]["resumed"] == [by_epoch, by_steps]
    for freq in backups:
        assert not any(path.exists() for path in backups[freq])  # deleted at the end
    uninterrupted = runs["workers"][0]["fit"]

    # From the end-of-epoch-0 backup: epoch 1 again, the uninterrupted weights.
    assert by_epoch["epochs_run"] == 1
    assert _max_difference(by_epoch["weights"], uninterrupted["weights"]) < WEIGHTS_ATOL
    assert_close(
        {k: v[-1] for k, v in by_epoch["history"].items()},
        {k: v[-1] for k, v in uninterrupted["history"].items()},
        uninterrupted["history"],
        what="resumed epoch",
    )
    # From the mid-epoch backup, Keras 3.15 restores the weights after step 1
    # of epoch 1 but restarts epoch 1 from its first batch: steps 0-1 are
    # applied twice, and the run ends elsewhere.
    replayed = runs["mirrored"]["fit_replayed"]
    assert by_steps["epochs_run"] == 1
    assert _max_difference(by_steps["weights"], replayed["weights"]) < WEIGHTS_ATOL
    assert _max_difference(by_steps["weights"], uninterrupted["weights"]) > 1e-3
    seconds = results["resume-0"][1]["seconds"]
    print(f"\ncrash and resume: {time.monotonic() - start:.1f} s (resume: {seconds:.1f} s)")
