"""The grokking study (`studies.grokking`): plan, records, the table of steps, the report.

Neither the report nor the bookkeeping touches Keras (the runs are
`python -m recipes.grokking`, tested on every backend in tests/recipes/grokking/):
these tests run on TensorFlow only.
"""

import json
import shutil

import pytest

from studies import driver
from studies.grokking import cli, table
from tests.helpers import BACKEND
from tests.studies.reports import reproduces_report

pytestmark = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent: the study's bookkeeping and report"
)


def test_report_of_the_committed_records_is_the_docs_table(tmp_path):
    # Every committed record was run with the planned command, and `--report` writes,
    # byte for byte, the table that docs/grokking.md holds.
    recorded = cli.records(cli.parse([]))
    assert len(recorded) >= 5  # the five runs the docs discuss
    finished = reproduces_report(cli, tmp_path, "| default | 0 |", figure=False)
    assert sum(finished) == len(recorded)
    for (name, seed), record in recorded.items():
        assert record["cell"] == {"run": name, "seed": seed}
        assert record["settings"]["seed"] == seed and record["backend"] == "jax"
        # The steps of the table are those of the record's own history (test accuracy).
        every = record["settings"]["log_every"]
        accuracy = record["history"]["val_accuracy"]
        first = next((i for i, a in enumerate(accuracy) if a >= 0.5), None)
        expected = None if first is None else every * (first + 1)
        assert record["steps_to"].get("val_accuracy_50") == expected, (name, seed)


def test_legend_names_every_column():
    for _, title in table.COLUMNS:
        assert title in table.LEGEND, title
    assert "never: not reached" in table.LEGEND


def test_row_gives_steps_leads_and_never():
    record = {
        "steps_to": {"val_accuracy_50": 1600, "train_accuracy_99": 150, "train_nc1_min": 950},
        "train_seconds": 151.0,
    }
    cells = table.row("default", 0, record).strip("|").split(" | ")
    assert cells[:4] == [" default", "0", "150", "1600"]
    assert cells[8] == "950 (-650)" and cells[4] == "never" and cells[-1].strip() == "2.5"
    del record["steps_to"]["val_accuracy_50"]  # no jump: the measures' steps alone
    assert table.cells(record)[6] == "950"


def test_plan_records_and_reuse_of_a_finished_run_folder(tmp_path, capsys):
    args = cli.parse(["--runs", "default", "batch 512 + MIR/HDR 0.5", "--seeds", "0", "1",
                      "--records", str(tmp_path / "records"), "--output", str(tmp_path / "runs"),
                      "--doc", ""])  # fmt: skip
    jobs = cli.plan(args)
    assert [job.name for job in jobs] == [
        "default-seed0",
        "default-seed1",
        "batch-512-MIRHDR-05-seed0",
        "batch-512-MIRHDR-05-seed1",
    ]
    assert jobs[2].argv[-6:] == ("--batch-size", "512", "--mir-weight", "0.5", "--hdr-weight",
                                 "0.5")  # fmt: skip
    # A run folder finished before the study recorded it: recorded, not rerun.
    folder = tmp_path / "runs" / "default-seed1"
    folder.mkdir(parents=True)
    results = {
        "settings": {"seed": 1, "log_every": 50},
        "backend": "jax",
        "train_seconds": 60.0,
        "train_size": 4,
        "test_size": 5,
        "final": {"val_loss": None},
        "steps_to": {"val_accuracy_50": 100},
    }
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "history.csv").write_text("epoch,val_accuracy,val_loss\n0,0.25,nan\n1,0.75,2.5\n")

    def runner(job):
        raise AssertionError(f"{job.name} ran")

    assert cli.main([*_argv(args), "--runs", "default", "--seeds", "1"], runner=runner)
    record = driver.load_record(args.records, "default-seed1")
    assert record["history"] == {"epoch": [0.0, 1.0], "val_accuracy": [0.25, 0.75],
                                 "val_loss": [None, 2.5]}  # fmt: skip
    assert record["command"].startswith("KERAS_BACKEND=jax python -m recipes.grokking --seed 1")
    assert record["wall_seconds"] is None and record["final"] == {"val_loss": None}
    capsys.readouterr()
    todo = cli.main([*_argv(args), "--runs", "default", "--dry-run"])
    assert todo == ["default-seed0"]
    assert "# finished: default-seed1.json" in capsys.readouterr().out
    shutil.rmtree(folder)
    text = cli.main([*_argv(args), "--report"])
    assert text.splitlines()[2].startswith("| default | 1 | never | 100 | never |")
    assert text.splitlines()[2].endswith("| 1.0 |") and len(text.splitlines()) == 3
    with pytest.warns(DeprecationWarning, match="--table-only"):
        assert cli.parse(["--table-only"]).report


def _argv(args):
    return ["--records", args.records, "--output", args.output, "--doc", "", "--seeds", "0", "1"]
