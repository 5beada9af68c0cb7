"""The semi-supervised study (`studies.semi_supervised`): plan, resume, records, report.

The report and the bookkeeping do not touch Keras; the cells' runs are
`python -m recipes.semi_supervised`, which tests/test_recipes_semi_supervised.py
runs on every backend. Here everything runs on TensorFlow only (RandAugment
tracing takes ~25 s per run under JAX).
"""

import json

import numpy as np
import pytest
from scipy import stats

from studies import driver
from studies.semi_supervised import cells, cli, tables
from tests.helpers import BACKEND

pytestmark = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent: the study's bookkeeping and report"
)
# Differences of accuracies given to 2 decimals, times 100: exact to float64 round-off
# of a few operations on numbers below 100 (1e-9 is ~1e5 ulps of 100, far above it).
ROUND_OFF = 1e-9


def _study(tmp_path, *more):
    doc = tmp_path / "doc.md"
    if not doc.exists():
        doc.write_text("# Study\n\n<!-- experiment:start -->\nold\n<!-- experiment:end -->\nend\n")
    return [
        "--labels", "2", "--seeds", "0", "1", "--methods", "supervised", "FreeMatch",
        "--sign-labels", "--steps", "2", "--eval-every", "1", "--test-samples", "20",
        "--validation-samples", "20",
        "--common", "--dataset digits --model wrn10_1 --width 0.25 --batch-size 4 --uratio 2",
        "--extra", "--randaugment-ops 1 --lambda-f 0.01",
        "--records", str(tmp_path / "study"), "--output", str(tmp_path / "runs"),
        "--doc", str(doc), "--figure", str(tmp_path / "study.png"), *more,
    ]  # fmt: skip


def test_report_of_the_committed_records_is_the_docs_report(tmp_path):
    # Every planned cell of the committed study has its record, run with the planned
    # command (else `pending` stops), and `--report` writes, byte for byte, the report
    # that docs/semi_supervised.md holds (the doc's copy starts with a changed row).
    with open(cli.DOC) as f:
        committed = f.read()
    doc = tmp_path / "semi_supervised.md"
    head, rest = committed.split("<!-- experiment:start -->")
    doc.write_text(f"{head}<!-- experiment:start -->{rest.replace('| 40 | FreeMatch |', '|', 1)}")
    assert doc.read_text() != committed
    args = cli.parse(["--doc", str(doc), "--figure", ""])
    for stage in ("select", "grid"):
        status = cells.stage_jobs(args, stage)
        assert status and all(finished for _, finished in status), stage
    cli.main(["--report", "--doc", str(doc), "--figure", ""])
    assert doc.read_text() == committed
    with pytest.warns(DeprecationWarning, match="--report-only"):
        assert cli.parse(["--report-only"]).report


def test_study_resumes_and_skips_finished_cells(tmp_path, capsys):
    from recipes.semi_supervised import train

    def runner(job):  # the recipe in this process: the same command line, no interpreter start
        train.main(list(job.argv))

    study = tmp_path / "study"
    first = cli.main(_study(tmp_path, "--max-runs", "2"), runner=runner)
    assert first.startswith("Finished: 2 of 4 runs")  # the report text
    names = sorted(p.name for p in study.glob("*.json"))
    # Seed-major: both methods of seed 0 first, so the partial results are paired.
    assert names == ["grid-20-freematch-s0.json", "grid-20-supervised-s0.json"]
    stamps = {p.name: p.read_bytes() for p in study.glob("*.json")}
    record = json.loads((study / "grid-20-freematch-s0.json").read_text())
    command = "KERAS_BACKEND=tensorflow python -m recipes.semi_supervised"
    assert record["command"].startswith(command)
    assert "--seed 0" in record["command"] and "--algorithm freematch" in record["command"]
    assert len(record["history"]["test_accuracy"]) == 2 and record["train_seconds"] > 0

    # Resumed: the finished cells are skipped, only the next missing one runs.
    args = cli.parse(_study(tmp_path, "--max-runs", "1"))
    assert cli.run(args, runner=runner) == ["grid-20-supervised-s1"]
    for name, content in stamps.items():
        assert (study / name).read_bytes() == content, name  # not rerun
    capsys.readouterr()
    assert cli.run(cli.parse(_study(tmp_path, "--dry-run"))) == ["grid-20-freematch-s1"]
    # The dry run prints every cell's command, the finished ones marked with their file.
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and printed[0].startswith(command)
    assert [line.split("# finished: ")[-1] for line in printed if "# finished" in line] == [
        "grid-20-supervised-s0.json",
        "grid-20-freematch-s0.json",
        "grid-20-supervised-s1.json",
    ]
    assert "--seed 1 --algorithm freematch" in printed[3] and "#" not in printed[3]
    text = cli.write_report(args)
    assert "| 20 | supervised | 2/2 |" in text and "| 20 | FreeMatch | 1/2 |" in text
    assert "FreeMatch − supervised | 1 | s0:" in text
    doc = (tmp_path / "doc.md").read_text()
    assert "old" not in doc and doc.endswith("<!-- experiment:end -->\nend\n")
    assert (tmp_path / "study.png").stat().st_size > 0

    # Runs that shared the machine (`--jobs 2`) are named in the status line.
    record["concurrent_runs"], record["threads_per_run"] = 2, 1
    driver.write_record(str(study), "grid-20-freematch-s0", record)
    text = cli.write_report(args)
    assert "1 of them ran 2 at a time with 1 thread(s) each (`--jobs`), 2 alone" in text

    # Other settings: the recorded cells are not silently reused.
    with pytest.raises(SystemExit, match="was run with other settings"):
        cli.main(_study(tmp_path, "--steps", "3", "--dry-run"))
    with pytest.raises(SystemExit, match="--jobs must be a positive integer, got 0"):
        cli.main(_study(tmp_path, "--jobs", "0"))


def test_paired_differences_and_t_test_match_numpy(tmp_path):
    # Records with known accuracies: FreeMatch = supervised + (3, 1, 5) points at the last
    # step, + (2, 2, 2.6) at the best-validation epoch; the tail is the last 4 evaluations.
    args = cli.parse(_study(tmp_path, "--seeds", "0", "1", "2"))
    rng = np.random.default_rng(0)
    records = {}
    for method, last, best in (
        ("supervised", [0.50, 0.52, 0.48], [0.51, 0.50, 0.49]),
        ("FreeMatch", [0.53, 0.53, 0.53], [0.53, 0.52, 0.516]),
    ):
        for seed in range(3):
            history = [*rng.uniform(0.4, 0.6, 5), last[seed]]
            records.setdefault((2, method), {})[seed] = {
                "final": {"test_accuracy": last[seed]},
                "best_validation": {"test_accuracy": best[seed]},
                "history": {"test_accuracy": history},
            }
    _, a, b = tables.paired(records, "FreeMatch", "supervised", 2)
    np.testing.assert_allclose(a - b, [3.0, 1.0, 5.0], atol=ROUND_OFF)
    _, a, b = tables.paired(records, "FreeMatch", "supervised", 2, key="tail")
    tail = [
        100 * np.mean(records[2, m][s]["history"]["test_accuracy"][-4:])
        for m in ("FreeMatch", "supervised")
        for s in range(3)
    ]
    np.testing.assert_allclose(np.concatenate([a, b]), tail, atol=ROUND_OFF)

    def t_test(diffs):  # two-sided one-sample t-test of the differences, by hand
        t = np.mean(diffs) / (np.std(diffs, ddof=1) / np.sqrt(len(diffs)))
        return 2 * stats.t.sf(abs(t), len(diffs) - 1)

    row = [r for r in tables.paired_table(records, args).splitlines() if "FreeMatch −" in r]
    columns = [c.strip() for c in row[0].strip("|").split("|")]
    assert columns[2:5] == ["3", "s0: +3.0, s1: +1.0, s2: +5.0", "3.0 ± 2.0"]
    # t = 3 / (2 / sqrt(3)) = 2.60 with 2 degrees of freedom
    assert columns[5] == f"{t_test([3.0, 1.0, 5.0]):.2f}" == "0.12"
    assert columns[6] == "2.2 ± 0.3" and columns[7] == f"{t_test([2.0, 2.0, 2.6]):.2f}"
    diffs = np.subtract(tail[:3], tail[3:])
    assert columns[8] == f"{diffs.mean():.1f} ± {diffs.std(ddof=1):.1f}"
    # A non-finite accuracy (null in results.json) is left out of a mean, not a crash.
    assert tables._mean_std([0.5, None, 0.7], 100) == "60.0 ± 14.1"


def test_study_selects_the_weight_on_validation_accuracy(tmp_path, capsys):
    # Selection records (as the driver writes them) with known validation accuracies.
    args = cli.parse(
        _study(tmp_path, "--methods", "FreeMatch", cells.MIRHDR, "--weights", "0.1", "0.5",
               "1", "--dry-run")
    )  # fmt: skip
    selection = [c for c in cells.plan(args) if c.stage == "select"]
    assert [c.weight for c in selection] == [0.1, 0.5, 1.0]
    assert all(c.seed not in args.seeds for c in selection)
    assert cells.selected_weight(args)[0] is None  # nothing finished
    study = tmp_path / "study"
    study.mkdir()
    for cell, val in zip(selection, (0.60, 0.70, 0.70), strict=True):
        record = {"argv": cells.command(cell, args), "final": {"val_accuracy": val}}
        (study / f"{cell.name}.json").write_text(json.dumps(record))
    weight, table = cells.selected_weight(args)
    assert weight == 0.5  # the best; the earliest candidate of a tie
    assert table == [(0.1, 0.60), (0.5, 0.70), (1.0, 0.70)]
    planned = cli.run(args)
    assert planned[0] == "grid-20-freematch-s0"
    assert "--mir-weight 0.5 --hdr-weight 0.5" in capsys.readouterr().out

    # One driver per study: a second one stops before running anything.
    held = driver.lock(args.output)
    try:
        with pytest.raises(SystemExit, match="another driver is running this study"):
            cli.main(_study(tmp_path, "--max-runs", "1"))
    finally:
        held.close()
    assert sorted(p.name for p in study.glob("grid-*.json")) == []
