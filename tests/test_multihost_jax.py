"""JAX on several processes, on loopback (docs/scaling.md, "Several machines").

Two processes on this machine join with `keras.distribution.initialize`
(coordinator on 127.0.0.1, a free port; CPU collectives: gloo), two virtual CPU
devices each, and train a `CollapseClassifier` under `DataParallel` over the 4
devices. Each process feeds only its share of every global batch
(tests/multihost/jax_worker.py says how). The reference is one process on one
device fed the same global batches.

- Agreement: `evaluate` (every collapse metric and the loss: cross-entropy,
  CMA and the MIR/HDR regulariser) and two epochs of unshuffled `fit` (losses,
  metrics, weights) equal the reference: one SPMD program over the global
  batch, as on one device.
- Failure: process 1 dies in the middle of the second epoch; the launcher
  kills process 0 (it would wait in a collective for ever), restarts both, and
  `BackupAndRestore` (one directory per process, barriers around the epoch-end
  backup) resumes from the end of the first epoch to the reference's final
  weights.

Every process runs in its own session, is bounded in time, and its process
group is killed in `finally`.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.distributed_setup import kill_process_group

BACKEND = keras.backend.backend()
pytestmark = pytest.mark.skipif(
    BACKEND != "jax",
    reason="multi-process keras.distribution runs on JAX only (TensorFlow: "
    "MultiWorkerMirroredStrategy; Keras has no torch distribution)",
)

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "multihost" / "jax_worker.py"
PROCESSES, DEVICES_PER_PROCESS, EPOCHS, STEPS_PER_EPOCH = 2, 2, 2, 4
DIE_EXIT_CODE = 17  # the worker's os._exit code for a simulated crash
LAUNCH_TIMEOUT = 240  # seconds for one launch of all processes
# One process and four devices add the same float32 terms in different orders;
# NC1 gets the looser tolerance tests/test_distribution.py explains.
RTOL, RTOL_NC1, WEIGHTS_ATOL = 1e-5, 1e-4, 1e-6
# LLVM optimisation level 0 roughly halves XLA's CPU compile time.
_XLA_FAST = "--xla_backend_optimization_level=0"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, log, devices):
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {_XLA_FAST}",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log, "w") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
        )


def _tail(log, chars=4000):
    return Path(log).read_text(errors="replace")[-chars:]


def _launch(directory, name, common=(), extra=None):
    """Starts the worker processes; returns [(process, log, result path)]."""
    port, extra = _free_port(), extra or {}
    launched = []
    for i in range(PROCESSES):
        out, log = directory / f"{name}_{i}.json", directory / f"{name}_{i}.log"
        args = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(PROCESSES)]
        args += ["--process-id", str(i), "--out", str(out), *common, *extra.get(i, ())]
        launched.append((_start(args, log, DEVICES_PER_PROCESS), log, out))
    return launched


def _wait(launched, timeout=LAUNCH_TIMEOUT):
    """Waits for all processes; fails (and kills them) on a timeout or an error."""
    deadline = time.monotonic() + timeout
    try:
        while any(proc.poll() is None for proc, _, _ in launched):
            for i, (proc, log, _) in enumerate(launched):
                # The others would wait in a collective for ever.
                assert proc.poll() in (None, 0), f"process {i} failed:\n{_tail(log)}"
            logs = "\n".join(_tail(log, 2000) for _, log, _ in launched)
            assert time.monotonic() < deadline, f"timed out after {timeout} s:\n{logs}"
            time.sleep(0.2)
        for i, (proc, log, _) in enumerate(launched):
            assert proc.returncode == 0, f"process {i} failed:\n{_tail(log)}"
        return [json.loads(out.read_text()) for _, _, out in launched]
    finally:
        for proc, _, _ in launched:
            kill_process_group(proc)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, one device: started at once, read when first needed."""
    directory = tmp_path_factory.mktemp("reference")
    out, log = directory / "reference.json", directory / "reference.log"
    proc = _start(["--out", str(out)], log, devices=1)
    result = {}

    def get():
        if not result:
            try:
                proc.wait(timeout=LAUNCH_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"reference timed out:\n{_tail(log)}")
            assert proc.returncode == 0, f"reference failed:\n{_tail(log)}"
            result.update(json.loads(out.read_text()))
        return result

    try:
        yield get
    finally:
        kill_process_group(proc)


def _rel(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _assert_close(actual, expected, what):
    assert set(actual) == set(expected), what
    for key in expected:
        rtol = RTOL_NC1 if key == "nc1" else RTOL
        np.testing.assert_allclose(actual[key], expected[key], rtol=rtol, err_msg=f"{what} {key}")


def _max_weight_difference(a, b):
    assert len(a) == len(b)
    return max(float(np.max(np.abs(np.subtract(u, v)))) for u, v in zip(a, b, strict=True))


def test_two_processes_match_one_process(reference, tmp_path):
    start = time.monotonic()
    first, second = _wait(_launch(tmp_path, "agreement"))
    one = reference()
    print(f"wall time {time.monotonic() - start:.1f} s; timings {first['timings']}")

    for i, run in enumerate((first, second)):
        assert (run["process_count"], run["process_index"]) == (PROCESSES, i)
        assert (run["devices"], run["local_devices"]) == (4, DEVICES_PER_PROCESS)
        assert run["kernel_devices"] == 4  # the variables are replicated on all devices
    assert one["process_count"] == one["devices"] == one["kernel_devices"] == 1
    # Every process holds the same (replicated) values.
    for key in ("evaluate", "history", "weights"):
        assert first[key] == second[key], key

    # evaluate: every metric and the loss, on the global batches.
    _assert_close(first["evaluate"], one["evaluate"], "evaluate")
    print(
        "evaluate rel:",
        {k: f"{_rel(first['evaluate'][k], v):.1e}" for k, v in one["evaluate"].items()},
    )
    # ... which per-process batches would not give.
    half = one["evaluate_half_batches"]
    for key in ("mir", "hdr", "matrix_entropy"):
        assert abs(half[key] - one["evaluate"][key]) > 1e-3, key

    # fit: the same trajectory, epoch by epoch, and the same final weights.
    steps = [[e, b] for e in range(EPOCHS) for b in range(STEPS_PER_EPOCH)]
    assert first["steps"] == one["steps"] == steps
    _assert_close(first["history"], one["history"], "fit")
    print("fit rel:", {k: f"{_rel(first['history'][k], v):.1e}" for k, v in one["history"].items()})
    difference = _max_weight_difference(first["weights"], one["weights"])
    print(f"max weight difference {difference:.1e}")
    assert difference <= WEIGHTS_ATOL
    assert one["weights_changed"] > 1e-2  # training moved the weights


def test_killed_process_resumes_to_uninterrupted_weights(reference, tmp_path):
    start = time.monotonic()
    backups = [tmp_path / "backup" / f"process_{i}" for i in range(PROCESSES)]
    common = ["--no-evaluate", "--few-metrics"]  # the weights do not depend on metrics
    extra = {i: ["--backup-dir", str(backups[i])] for i in range(PROCESSES)}
    # Process 1 dies before the second batch of the second epoch.
    crash = {0: extra[0], 1: [*extra[1], "--die-at", "1", "1"]}
    launched = _launch(tmp_path, "crash", common, crash)
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        (survivor, _, _), (victim, victim_log, _) = launched
        while victim.poll() is None:
            assert time.monotonic() < deadline, f"no crash:\n{_tail(victim_log)}"
            time.sleep(0.1)
        assert victim.returncode == DIE_EXIT_CODE, _tail(victim_log)
        assert survivor.poll() != 0  # it cannot have finished training
    finally:
        for proc, _, _ in launched:
            kill_process_group(proc)  # process 0 would wait for process 1 in a collective
    crash_time = time.monotonic() - start
    for backup in backups:  # both backed up the end of the first epoch
        metadata = json.loads((backup / "training_metadata.json").read_text())
        assert metadata["epoch"] == 1, metadata

    resumed = _wait(_launch(tmp_path, "resume", common, extra))
    one = reference()
    print(f"wall time {time.monotonic() - start:.1f} s (crash after {crash_time:.1f} s)")
    for run in resumed:
        assert run["resumed"]
        assert run["steps"] == [[1, b] for b in range(STEPS_PER_EPOCH)]  # the second epoch only
        for key in ("loss", "mir"):  # its logs are the reference's second epoch's
            np.testing.assert_allclose(run["history"][key], one["history"][key][1:], rtol=RTOL)
        difference = _max_weight_difference(run["weights"], one["weights"])
        print(f"max weight difference {difference:.1e}")
        assert difference <= WEIGHTS_ATOL
    assert resumed[0]["weights"] == resumed[1]["weights"]
    assert not any(backup.exists() for backup in backups)  # deleted when training ends
