"""The label-smoothing study (`studies.label_smoothing`): plan, cell, tables, the report.

The report and the bookkeeping are backend-independent (the cells run on
TensorFlow, as the committed records say): these tests run on TensorFlow only.
The closed forms the report draws (`keras_nc.theory`) are tested on every
backend in tests/test_theory.py.
"""

import json
import math

import numpy as np
import pytest
from scipy import stats

from keras_nc import theory
from studies import driver, fashion_mnist
from studies.label_smoothing import cell, cli, table
from tests.helpers import BACKEND
from tests.studies.reports import reproduces_report

pytestmark = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent: the study's bookkeeping and report"
)
# Means and differences of a few numbers below 100, printed to 3 decimals: float64
# round-off (~1e-14) is far below half a unit of the last printed digit.
PRINTED = 5e-4
# Accuracies are printed in % to 1 decimal: half a unit of it is their rounding.
PRINTED_PERCENT = 0.05


def test_report_of_the_committed_records_is_the_docs_report(tmp_path):
    # Every planned cell has its record, run with the planned command (else `pending`
    # stops), and `--report` writes, byte for byte, the tables docs/label_smoothing.md holds.
    finished = reproduces_report(cli, tmp_path, "| 0.05 | 3 |")
    assert len(finished) == 15 and all(finished)
    for (smoothing, seed), record in cli.records(cli.parse([])).items():
        assert record["cell"] == {"smoothing": smoothing, "seed": seed}
        assert record["backend"] == "tensorflow"
        settings = record["settings"]
        assert (settings["smoothing"], settings["seed"]) == (smoothing, seed)
        assert len(record["history"]["loss"]) == settings["epochs"] == cli.EPOCHS


def _record(smoothing, seed, accuracy, mir):
    final = {key: 0.5 for key in ("accuracy", "loss", "nc1", "mir", "hdr", "mir_class")}
    final.update(accuracy=accuracy, mir=mir, hdr_class=None)
    return {"final": {"train": dict(final), "test": dict(final)}, "history": {}}


def test_tables_give_intervals_paired_differences_and_the_collapse_values():
    records = {
        (0.0, 0): _record(0.0, 0, 0.80, 0.50),
        (0.0, 1): _record(0.0, 1, 0.82, 0.52),
        (0.0, 2): _record(0.0, 2, 0.78, 0.51),
        (0.1, 0): _record(0.1, 0, 0.81, 0.55),
        (0.1, 1): _record(0.1, 1, 0.84, 0.56),
        (0.1, 2): _record(0.1, 2, 0.80, 0.58),
    }
    lines = table.measures_table(records, [0.0, 0.1]).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    column = {title: index for index, title in enumerate(header)}
    # Test accuracy at s = 0.1 in %: mean 81.67, t(0.975, 2) * sd / sqrt(3).
    acc = 100 * np.array([0.81, 0.84, 0.80])
    half = stats.t.ppf(0.975, 2) * acc.std(ddof=1) / math.sqrt(3)
    mean, width = (float(v) for v in rows[1][column["test acc. (%)"]].split(" ± "))
    assert mean == pytest.approx(acc.mean(), abs=PRINTED_PERCENT)
    assert width == pytest.approx(half, abs=PRINTED_PERCENT)
    assert rows[1][column["class HDR"]] == "n/a"  # a measure no seed recorded
    floor = float(rows[1][column["floor"]])
    assert floor == pytest.approx(theory.cross_entropy_at_collapse(10, 0.1), abs=PRINTED)
    assert rows[0][column["floor"]] == "0.000"
    assert rows[2][:2] == ["collapse", "theory"]
    assert float(rows[2][column["MIR"]]) == pytest.approx(theory.mir_at_collapse(10), abs=PRINTED)
    assert rows[2][column["class HDR"]] == "0.000" and rows[2][column["NC1"]] == "0"
    # The paired differences from s = 0 on the same seeds, with the t-test's p-value.
    lines = table.differences_table(records, [0.0, 0.1]).splitlines()
    assert len(lines) == 3  # s = 0 is the baseline, not a row
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    differences = np.array([0.55, 0.56, 0.58]) - np.array([0.50, 0.52, 0.51])
    expected = stats.ttest_1samp(differences, 0.0)
    text = cells[header.index("MIR")]  # the same column order after "s", "pairs"
    assert text.endswith(f"(p = {expected.pvalue:.2f})")
    assert float(text.split(" ± ")[0]) == pytest.approx(differences.mean(), abs=PRINTED)
    assert table.report({}, [0.0]).startswith("No finished cell yet")


def test_plan_names_and_commands():
    args = cli.parse(["--smoothings", "0", "0.05", "--seeds", "2", "--epochs", "3"])
    jobs = cli.plan(args)
    assert [job.name for job in jobs] == ["s0-seed2", "s0.05-seed2"]
    assert jobs[1].argv[:6] == ("--smoothing", "0.05", "--seed", "2", "--epochs", "3")
    assert jobs[1].cell == {"smoothing": 0.05, "seed": 2}
    assert driver.command_line(jobs[0], "tensorflow").startswith(
        "KERAS_BACKEND=tensorflow python -m studies.label_smoothing.cell --smoothing 0 "
    )


def test_cell_records_the_measures_and_the_history(tmp_path):
    rng = np.random.default_rng(0)

    def split(n):
        return rng.normal(size=(n, 28, 28, 1)).astype("float32"), np.arange(n) % 10

    data = fashion_mnist.Splits(train=split(40), val=split(20), test=split(20))
    argv = ["--smoothing", "0.2", "--seed", "1", "--epochs", "2", "--output", str(tmp_path)]
    cell.main([*argv, "--verbose", "0"], data=data)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["settings"]["smoothing"] == 0.2 and results["settings"]["train_size"] == 40
    for split_name in ("train", "test"):
        assert set(results["final"][split_name]) >= {"accuracy", "loss", "mir", "hdr", "nc1",
                                                     "mir_class", "hdr_class"}  # fmt: skip
    assert len(results["history"]["val_mir_class"]) == 2
    # The recorded loss is Keras' smoothed cross-entropy: at least its floor.
    assert results["final"]["train"]["loss"] > theory.cross_entropy_at_collapse(10, 0.2)
    with pytest.raises(SystemExit, match="--smoothing must lie in"):
        cell.main(["--smoothing", "1", "--output", str(tmp_path)], data=data)
