"""The linear-mode-connectivity study (`studies.mode_connectivity`): plan, cell, tables, report.

The report and the bookkeeping are backend-independent (the cells run on
TensorFlow, as the committed records say): these tests run on TensorFlow only.
The tools the cells use (`keras_nc.paths`) are tested on every backend in
tests/paths/.
"""

import json
import math

import numpy as np
import pytest
from scipy import stats

from keras_nc import paths
from studies import driver, fashion_mnist
from studies.mode_connectivity import cell, cli, table
from tests.helpers import BACKEND
from tests.studies.reports import reproduces_report

pytestmark = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent: the study's bookkeeping and report"
)
# Means and differences of a few numbers below 100, printed to 3 decimals: float64
# round-off (~1e-14) is far below half a unit of the last printed digit.
PRINTED = 5e-4


def test_report_of_the_committed_records_is_the_docs_report(tmp_path):
    # Every planned cell has its record, run with the planned command (else `pending`
    # stops), and `--report` writes, byte for byte, the tables docs/mode_connectivity.md holds.
    finished = reproduces_report(cli, tmp_path, "| 1 | 3 |")
    assert len(finished) == 12 and all(finished)


def test_committed_records_are_consistent_with_their_paths():
    for (spawn_epoch, seed), record in cli.records(cli.parse([])).items():
        assert record["cell"] == {"spawn_epoch": spawn_epoch, "seed": seed}
        assert record["backend"] == "tensorflow"
        settings = record["settings"]
        assert (settings["spawn_epoch"], settings["seed"]) == (spawn_epoch, seed)
        assert settings["epochs"] == cli.EPOCHS and settings["alphas"] == cell.ALPHAS
        path = record["path"]
        assert [row["alpha"] for row in path] == [float(a) for a in np.linspace(0, 1, 11)]
        # The summaries are those of the recorded path (the same float64 operations).
        assert record["loss_barrier"] == paths.loss_barrier(path)
        assert record["accuracy_barrier"] == paths.accuracy_barrier(path)
        for key in fashion_mnist.MEASURES:
            assert record["midpoint"][key] == path[5][key]
            assert record["end_points"][key] == (path[0][key] + path[-1][key]) / 2


def _record(loss_barrier, mir_mid, mir_ends, nc1_mid=1.0, nc1_ends=1.0):
    middle = {"loss": 0.5, "accuracy": 0.8, "mir": mir_mid, "hdr": 0.1, "nc1": nc1_mid}
    ends = {"loss": 0.5, "accuracy": 0.8, "mir": mir_ends, "hdr": 0.1, "nc1": nc1_ends}
    return {"loss_barrier": loss_barrier, "accuracy_barrier": 0.0, "midpoint": middle,
            "end_points": ends}  # fmt: skip


def test_tables_give_intervals_paired_differences_and_rank_correlations():
    records = {
        (-1, 0): _record(0.9, 0.30, 0.50),
        (-1, 1): _record(0.7, 0.35, 0.50),
        (-1, 2): _record(0.8, 0.32, 0.51),
        (0, 0): _record(0.0, 0.52, 0.50),
        (0, 1): _record(0.1, 0.49, 0.50),
        (0, 2): _record(0.2, 0.45, 0.50),
    }
    lines = table.barriers_table(records, [-1, 0]).splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert rows[0][:2] == ["indep.", "3"] and rows[1][:2] == ["0", "3"]
    barriers = np.array([0.9, 0.7, 0.8])
    half = stats.t.ppf(0.975, 2) * barriers.std(ddof=1) / math.sqrt(3)
    mean, width = (float(v) for v in rows[0][2].split(" ± "))
    assert mean == pytest.approx(barriers.mean(), abs=PRINTED)
    assert width == pytest.approx(half, abs=PRINTED)
    # Midpoint minus end points, paired over seeds, with the t-test's p-value.
    lines = table.differences_table(records, [-1, 0]).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    text = [cell.strip() for cell in lines[2].strip("|").split("|")][header.index("Δ MIR")]
    differences = np.array([0.30, 0.35, 0.32]) - np.array([0.50, 0.50, 0.51])
    assert text.endswith(f"(p = {stats.ttest_1samp(differences, 0.0).pvalue:.2f})")
    assert float(text.split(" ± ")[0]) == pytest.approx(differences.mean(), abs=PRINTED)
    # MIR drops (ends - midpoint) and barriers: -0.02, 0.01, 0.05 against 0, 0.1, 0.2 for
    # the spawned cells (rho = 1); all six cells: the control's large drops come with
    # large barriers.
    found = table.correlations({cell: r for cell, r in records.items() if cell[0] >= 0})
    assert found["MIR drop"].rho == pytest.approx(1.0) and found["MIR drop"].count == 3
    assert math.isnan(found["NC1 rise"].rho)  # no change: no rank correlation
    everything = table.correlations(records)["MIR drop"]
    drops = [0.2, 0.15, 0.19, -0.02, 0.01, 0.05]
    expected = stats.spearmanr([0.9, 0.7, 0.8, 0.0, 0.1, 0.2], drops).statistic
    assert everything.rho == pytest.approx(expected) and everything.count == 6
    assert "| MIR drop | +1.00 (p = " in table.correlation_table(records)
    assert table.report({}, [0]).startswith("No finished cell yet")


def test_plan_names_and_commands():
    args = cli.parse(["--spawn-epochs", "-1", "4", "--seeds", "2", "--epochs", "6"])
    jobs = cli.plan(args)
    assert [job.name for job in jobs] == ["independent-seed2", "k4-seed2"]
    assert jobs[1].argv[:6] == ("--seed", "2", "--spawn-epoch", "4", "--epochs", "6")
    assert jobs[0].cell == {"spawn_epoch": -1, "seed": 2}
    assert driver.command_line(jobs[1], "tensorflow").startswith(
        "KERAS_BACKEND=tensorflow python -m studies.mode_connectivity.cell --seed 2 "
    )


def _data(rng, n_train=40, n_test=20):
    def split(n):
        return rng.normal(size=(n, 28, 28, 1)).astype("float32"), np.arange(n) % 10

    return fashion_mnist.Splits(train=split(n_train), val=split(10), test=split(n_test))


def test_children_share_the_parent_or_start_independently():
    data = _data(np.random.default_rng(0))
    parent_trained = cell.make_children(0, 1, data)  # a parent trained one epoch
    for mine, theirs in zip(*(child.get_weights() for child in parent_trained), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    first, second = (child.optimizer.variables for child in parent_trained)
    assert len(first) > 2  # the momentum is copied, not rebuilt at zero
    for mine, theirs in zip(first, second, strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    independent = cell.make_children(0, cell.INDEPENDENT, data)
    kernels = [child.get_weights()[0] for child in independent]
    assert not np.array_equal(*kernels)


@pytest.mark.parametrize("spawn_epoch", [1, cell.INDEPENDENT])
def test_cell_records_the_path_and_its_summaries(tmp_path, spawn_epoch):
    data = _data(np.random.default_rng(1), n_train=20, n_test=10)
    argv = ["--seed", "1", "--spawn-epoch", str(spawn_epoch), "--epochs", "2", "--alphas", "3"]
    cell.main([*argv, "--output", str(tmp_path), "--verbose", "0"], data=data)
    results = json.loads((tmp_path / "results.json").read_text())
    settings = results["settings"]
    assert settings["spawn_epoch"] == spawn_epoch and settings["train_size"] == 20
    assert [row["alpha"] for row in results["path"]] == [0.0, 0.5, 1.0]
    assert set(results["midpoint"]) == set(fashion_mnist.MEASURES)
    assert results["loss_barrier"] >= 0.0 and results["accuracy_barrier"] >= 0.0
    assert len(results["children_test"]) == 2
    with pytest.raises(SystemExit, match="--spawn-epoch must be -1"):
        cell.main(["--spawn-epoch", "2", "--epochs", "2", "--output", str(tmp_path)], data=data)
