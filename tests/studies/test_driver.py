"""The studies' generic driver and docs writer (`studies.driver`, `studies.docs`).

The runs here are a stand-in recipe (`tests.studies.fake_recipe`): the
driver's bookkeeping (records, resume, other settings, lock, pool) does not
touch Keras, so these tests run on the TensorFlow backend only.
"""

import os

import pytest

from studies import docs, driver
from tests.helpers import BACKEND
from tests.studies import fake_recipe

pytestmark = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent: no Keras in the driver's bookkeeping"
)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _jobs(tmp_path, seeds=(0, 1, 2), extra=()):
    jobs = []
    for seed in seeds:
        output = str(tmp_path / "runs" / f"cell-s{seed}")
        argv = ("--seed", str(seed), *extra, "--output", output)
        jobs.append(driver.Job(f"cell-s{seed}", "tests.studies.fake_recipe", argv, output))
    return jobs


def _runner(calls):
    def run(job):  # in-process
        calls.append(job.name)
        fake_recipe.main(job.argv)

    return run


def _summarize(results, job, backend, wall_seconds):
    return {
        "argv": list(job.argv),
        "command": driver.command_line(job, backend),
        "accuracy": driver.number(results["accuracy"]),
        "wall_seconds": driver.number(wall_seconds),
    }


def test_records_resume_and_refuse_other_settings(tmp_path, capsys):
    records, calls = str(tmp_path / "records"), []
    jobs = _jobs(tmp_path)
    done = driver.run_jobs(jobs[:2], _summarize, records, runner=_runner(calls))
    assert done == calls == ["cell-s0", "cell-s1"]
    record = driver.load_record(records, "cell-s1")
    assert record["accuracy"] == 0.6 and record["wall_seconds"] >= 0
    assert record["command"].startswith("KERAS_BACKEND=")
    assert record["command"].endswith(f"fake_recipe --seed 1 --output {jobs[1].output}")
    assert (record["concurrent_runs"], record["threads_per_run"]) == (1, None)
    stamp = open(driver.record_path(records, "cell-s0"), "rb").read()

    # Resumed: the finished jobs are skipped, the missing one runs; null results read as None.
    status = driver.pending(jobs, records)
    assert [finished for _, finished in status] == [True, True, False]
    todo = [job for job, finished in status if not finished]
    assert driver.run_jobs(todo, _summarize, records, runner=_runner(calls)) == ["cell-s2"]
    assert driver.load_record(records, "cell-s2")["accuracy"] is None
    assert open(driver.record_path(records, "cell-s0"), "rb").read() == stamp  # not rerun
    assert sorted(os.listdir(records)) == ["cell-s0.json", "cell-s1.json", "cell-s2.json"]

    driver.print_plan(status, set(todo), "jax")
    printed = capsys.readouterr().out.splitlines()[-3:]
    assert printed[0].endswith(f"{jobs[0].output}  # finished: cell-s0.json")
    assert printed[2] == "KERAS_BACKEND=jax python -m tests.studies.fake_recipe --seed 2 " + (
        f"--output {jobs[2].output}"
    )
    with pytest.raises(SystemExit, match="was run with other settings"):
        driver.pending(_jobs(tmp_path, extra=("--steps", "3")), records)


def test_reuse_records_a_finished_run_folder_without_running_it(tmp_path):
    records, calls = str(tmp_path / "records"), []
    (job,) = _jobs(tmp_path, seeds=(1,))
    _runner([])(job)  # a run finished before the study recorded it
    driver.run_jobs([job], _summarize, records, runner=_runner(calls), reuse=True)
    assert calls == [] and driver.load_record(records, job.name)["wall_seconds"] is None
    os.remove(driver.record_path(records, job.name))
    driver.run_jobs([job], _summarize, records, runner=_runner(calls))  # no reuse: reruns
    assert calls == [job.name]


def test_processes_run_concurrently_with_limited_threads(tmp_path, monkeypatch):
    # Two real processes at once (`python -m tests.studies.fake_recipe`), each with its log.
    monkeypatch.chdir(ROOT)
    jobs, records = _jobs(tmp_path, seeds=(0, 1)), str(tmp_path / "records")
    done = driver.run_jobs(jobs, _summarize, records, jobs=2)
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert sorted(done) == ["cell-s0", "cell-s1"]
    for seed, job in enumerate(jobs):
        record = driver.load_record(records, job.name)
        assert (record["concurrent_runs"], record["threads_per_run"]) == (2, threads)
        assert record["accuracy"] == 0.5 + seed / 10
        log = (tmp_path / "runs" / f"{job.name}.log").read_text()
        assert f"fake run of seed {seed}" in log
    env = driver.thread_environment(1)
    for name in driver.THREAD_VARIABLES:
        assert env[name] == "1"
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert driver.threads_per_run(1) is None  # one run: no limit
    with pytest.raises(SystemExit, match="--jobs must be a positive integer, got 0"):
        driver.run_jobs(jobs, _summarize, records, jobs=0)


def test_one_driver_per_study(tmp_path):
    held = driver.lock(str(tmp_path))
    try:
        with pytest.raises(SystemExit, match="another driver is running this study"):
            driver.lock(str(tmp_path))
    finally:
        held.close()
    driver.lock(str(tmp_path)).close()  # released with its handle


def test_docs_write_replaces_only_between_the_markers(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text(f"# Page\n\nabove\n{docs.START}\nold\n{docs.END}\nbelow\n")
    text = docs.table(["run", "seed"], "l r", [["default", 0], ["batch 512", 1]])
    assert text == "| run | seed |\n|---|---:|\n| default | 0 |\n| batch 512 | 1 |"
    docs.write(text, str(doc))
    assert doc.read_text() == f"# Page\n\nabove\n{docs.START}\n{text}\n{docs.END}\nbelow\n"
    with pytest.raises(ValueError, match="need 2 columns"):
        docs.table(["run", "seed"], "l", [])
    doc.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="lacks the"):
        docs.write(text, str(doc))
