"""The studies' generic driver: plan, run in a process pool, record, resume, lock.

A study turns its grid into `Job`s (one `python -m <module> <argv>` run each,
writing `results.json` into its `output` folder) and hands them to
`run_jobs`. Each finished job becomes one JSON record, `<records>/<name>.json`,
written atomically by `run_job` from the run's `results.json` (the study's
`summarize` decides what the record keeps). A job whose record exists is not
run again (`pending`), so a study resumes where it stopped; a record made
with another command than the planned one is an error, never reused
silently. `lock` keeps a second driver off the same study.

Example:

```python
from studies import driver

job = driver.Job(
    "grid-40-freematch-s0",
    "recipes.semi_supervised",
    ("--seed", "0", "--output", "outputs/ssl-study/grid-40-freematch-s0"),
    "outputs/ssl-study/grid-40-freematch-s0",
)
print(driver.command_line(job, "tensorflow"))
# KERAS_BACKEND=tensorflow python -m recipes.semi_supervised --seed 0 --output ...
```
"""

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


@dataclass(frozen=True)
class Job:
    """One run of a study: `python -m <module> <argv>`, writing into `output`.

    `name` names the record (`<name>.json`) and the log (`<name>.log`, beside
    `output`, when runs share the machine); `cell` is what the study needs to
    know about the job later (its place in the grid).
    """

    name: str
    module: str
    argv: tuple
    output: str
    cell: dict = field(default_factory=dict, compare=False)


def backend_name():
    """The Keras backend the runs use: `KERAS_BACKEND`, else Keras' default."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def command_line(job, backend):
    """The job's shell command, backend included (what a record keeps as `command`)."""
    return f"KERAS_BACKEND={backend} python -m {job.module} {shlex.join(job.argv)}"


def run_header(job, backend, results, wall_seconds):
    """The fields every record starts with: command, arguments, backend, times."""
    return {
        "command": command_line(job, backend),
        "argv": list(job.argv),
        "backend": backend,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "train_seconds": float(results["train_seconds"]),
        "wall_seconds": number(wall_seconds),
    }


def report_flag(parser, deprecated, help):
    """Adds `--report` and its hidden deprecated spelling `deprecated` to `parser`."""
    parser.add_argument("--report", action="store_true", help=help)
    parser.add_argument(deprecated, action="store_true", help=argparse.SUPPRESS)


def resolve_report(args, deprecated):
    """Maps the deprecated spelling of `--report` onto it, with a `DeprecationWarning`."""
    if getattr(args, deprecated.lstrip("-").replace("-", "_")):
        from keras_nc.deprecation import warn_renamed  # imports Keras: only when needed

        warn_renamed(deprecated, "--report", since="0.3.0", stacklevel=3)
        args.report = True
    return args


def number(value):
    """`float(value)`, or `None` for a missing or non-finite one (results.json writes null)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- #
# Records
# --------------------------------------------------------------------------- #


def record_path(records, name):
    return os.path.join(records, f"{name}.json")


def load_record(records, name):
    """The record `<records>/<name>.json`, or `None` if that job has not finished."""
    path = record_path(records, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_record(records, name, record):
    """Writes the record atomically: a record exists only once complete."""
    os.makedirs(records, exist_ok=True)
    path = record_path(records, name)
    with open(f"{path}.tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(f"{path}.tmp", path)


def pending(jobs, records):
    """`(job, finished)` per job; a record made with other options is an error."""
    status = []
    for job in jobs:
        record = load_record(records, job.name)
        if record is not None and record["argv"] != list(job.argv):
            raise SystemExit(
                f"error: {record_path(records, job.name)} was run with other settings:\n"
                f"  recorded: {shlex.join(record['argv'])}\n"
                f"  planned:  {shlex.join(job.argv)}\n"
                "move it away or pass the settings it was run with"
            )
        status.append((job, record is not None))
    return status


def print_plan(status, chosen, backend):
    """The dry run: each finished or chosen job's command, the finished ones marked."""
    for job, finished in status:
        if finished or job in chosen:
            mark = f"  # finished: {job.name}.json" if finished else ""
            print(f"{command_line(job, backend)}{mark}")


# --------------------------------------------------------------------------- #
# Running
# --------------------------------------------------------------------------- #


def threads_per_run(jobs):
    """CPU threads of each of `jobs` concurrent runs, or `None` (no limit) for one run."""
    return None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)


def thread_environment(threads):
    """Environment variables limiting a run's TensorFlow, oneDNN/OpenMP and BLAS threads."""
    env = dict(os.environ)
    if threads is not None:
        for name in THREAD_VARIABLES:
            env[name] = str(threads)
        if threads == 1:  # JAX's CPU kernels: single-threaded Eigen
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false"
    return env


def run_process(job, jobs):
    """Runs the job as its own process; concurrent runs log to `<name>.log` beside `output`."""
    log_path = os.path.join(os.path.dirname(job.output), f"{job.name}.log")
    with open(log_path, "w") if jobs > 1 else contextlib.nullcontext() as log:
        subprocess.run(
            [sys.executable, "-m", job.module, *job.argv],
            check=True,
            env=thread_environment(threads_per_run(jobs)),
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
        )


def run_job(job, summarize, records, jobs=1, runner=None, reuse=False):
    """Runs one job from scratch (or, `reuse`, takes its finished `results.json`); records it.

    `summarize(results, job, backend, wall_seconds)` makes the record from the
    run's `results.json` (`wall_seconds` is `None` for a reused run); `runner(job)`
    replaces the process (tests run the recipe in-process). Returns the record.
    """
    results_path = os.path.join(job.output, "results.json")
    backend = backend_name()
    wall = None
    if not (reuse and os.path.exists(results_path)):
        shutil.rmtree(job.output, ignore_errors=True)  # an interrupted run restarts
        os.makedirs(os.path.dirname(job.output) or ".", exist_ok=True)
        print(f"[{time.strftime('%H:%M:%S')}] {command_line(job, backend)}", flush=True)
        start = time.time()
        if runner is None:
            run_process(job, jobs)
        else:
            runner(job)
        wall = time.time() - start
    with open(results_path) as f:
        results = json.load(f)
    record = summarize(results, job, backend, wall)
    record["concurrent_runs"] = jobs
    record["threads_per_run"] = threads_per_run(jobs)
    write_record(records, job.name, record)
    return record


def run_jobs(todo, summarize, records, jobs=1, runner=None, reuse=False, after_each=None):
    """Runs `todo` (up to `jobs` at a time, in order); returns the names of the finished ones.

    `after_each()` runs after every finished job (the studies rewrite their
    report). A failed run stops the study (its log says why).
    """
    if jobs < 1:
        raise SystemExit(f"error: --jobs must be a positive integer, got {jobs}")
    done = []
    if runner is not None or jobs == 1:  # one after the other, in this thread
        for job in todo:
            run_job(job, summarize, records, 1, runner, reuse)
            done.append(job.name)
            if after_each is not None:
                after_each()
        return done
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {
            pool.submit(run_job, job, summarize, records, jobs, None, reuse): job for job in todo
        }
        for future in as_completed(futures):
            future.result()
            done.append(futures[future].name)
            if after_each is not None:
                after_each()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return done


def lock(folder):
    """Holds an exclusive lock on `<folder>/driver.lock` (one driver per study at a time).

    The lock is released when the returned handle is closed or the process
    ends, however it ends.
    """
    import fcntl

    os.makedirs(folder, exist_ok=True)
    handle = open(os.path.join(folder, "driver.lock"), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise SystemExit(
            f"error: another driver is running this study ({handle.name} is locked)"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
