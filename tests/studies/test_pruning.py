"""The pruning study (`studies.pruning`): plan, cell, tables, the report.

The report and the bookkeeping are backend-independent (the cells run on
TensorFlow, as the committed records say): these tests run on TensorFlow only.
The pruning tools themselves are tested on every backend in tests/pruning/ and
tests/callbacks/test_pruning.py.
"""

import numpy as np
import pytest

from studies import fashion_mnist, statistics
from studies.pruning import cell, cli, table
from tests.helpers import BACKEND
from tests.studies.reports import reproduces_report

# One weight out of the conv net's 27,920 kernel weights (the prunable ones): the counts
# of zeros are exact integers, rounded from sparsity * 27,920.
KERNEL_WEIGHTS = 27920
ONE_WEIGHT = 1 / KERNEL_WEIGHTS
pytestmark = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent: the study's bookkeeping and report"
)


def test_report_of_the_committed_records_is_the_docs_report(tmp_path):
    # Every planned cell has its record, run with the planned command (else `pending`
    # stops), and `--report` writes, byte for byte, the tables docs/pruning.md holds.
    finished = reproduces_report(cli, tmp_path, "| pruned | 0.5 |")
    assert len(finished) == 3 and all(finished)
    for seed, record in cli.records(cli.parse([])).items():
        assert record["cell"] == {"seed": seed} and record["backend"] == "tensorflow"
        assert record["settings"]["seed"] == seed
        assert record["settings"]["epochs"] == cli.EPOCHS
        assert len(record["rows"]) == len(cell.VARIANTS) * len(cell.SPARSITIES)
        # The recorded fraction of zeros is the requested sparsity to one weight, and the
        # fine-tuned copies kept their zeros (KeepPruned).
        for row in record["rows"]:
            assert abs(row["zeros"] - row["sparsity"]) <= ONE_WEIGHT, row


def _records(accuracies, mirs):
    """`{seed: record}` whose rows hold the given `{sparsity: [per seed]}` values."""
    records = {}
    for seed in range(3):
        rows = []
        for variant, _ in table.VARIANTS:
            for s in accuracies:
                values = {"accuracy": accuracies[s][seed], "mir": mirs[s][seed]}
                rows.append({"variant": variant, "sparsity": s, "hdr": 0.1, "nc1": None,
                             "loss": 1.0, **values})  # fmt: skip
        records[seed] = {"rows": rows}
    return records


def test_tables_give_intervals_first_changes_and_rank_correlations():
    accuracies = {0.0: [0.80, 0.82, 0.81], 0.5: [0.79, 0.83, 0.80], 0.9: [0.40, 0.45, 0.42]}
    mirs = {0.0: [0.50, 0.52, 0.51], 0.5: [0.40, 0.41, 0.40], 0.9: [0.20, 0.23, 0.21]}
    records = _records(accuracies, mirs)
    assert table.values(records, "tuned", 0.9, "accuracy", 100.0) == pytest.approx([40, 45, 42])
    # Accuracy's change at 0.5 (-0.3, +1, -1 points) is no effect; at 0.9 it is.
    assert table.first_change(records, "direct", "accuracy") == 0.9
    assert table.first_change(records, "direct", "mir") == 0.5
    assert table.first_change(records, "direct", "hdr") is None  # constant: no change
    rho = table.rank_correlation(records, "bn", "mir")
    assert rho.rho == pytest.approx(1.0) and rho.count == 3
    text = table.report(records)
    interval = statistics.mean_interval([80.0, 82.0, 81.0]).text(1)
    assert f"| pruned | 0 | {interval} |" in text
    assert "| pruned + fine-tuned | HDR | none detected (n = 3) |" in text
    assert "| n/a |" in text  # NC1 missing everywhere
    assert table.report({}).startswith("No recorded cells")


def test_plan_and_dry_run(tmp_path, capsys):
    args = ["--records", str(tmp_path / "records"), "--output", str(tmp_path / "runs")]
    jobs = cli.plan(cli.parse(args))
    assert [job.name for job in jobs] == ["seed0", "seed1", "seed2"]
    assert jobs[1].argv[:4] == ("--seed", "1", "--epochs", str(cli.EPOCHS))
    assert cli.main([*args, "--dry-run", "--doc", ""]) == ["seed0", "seed1", "seed2"]
    assert "python -m studies.pruning.cell --seed 0" in capsys.readouterr().out


def test_cell_records_every_variant_with_the_zeros_it_asked_for(tmp_path):
    # A tiny split (one batch) and one epoch each: the bookkeeping, not the numbers.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 28, 28, 1)).astype("float32")
    y = (np.arange(40) % fashion_mnist.NUM_CLASSES).astype("int32")
    data = fashion_mnist.Splits(train=(x, y), val=(x, y), test=(x, y))
    argv = ["--seed", "0", "--epochs", "1", "--fine-tune-epochs", "1", "--sparsities", "0.5",
            "--output", str(tmp_path), "--verbose", "0"]  # fmt: skip
    results = cell.main(argv, data=data)
    assert [row["variant"] for row in results["rows"]] == list(cell.VARIANTS)
    for row in results["rows"]:
        assert row["zeros"] == round(0.5 * KERNEL_WEIGHTS) / KERNEL_WEIGHTS  # exact count
        assert {"accuracy", "mir", "hdr", "nc1", "loss"} <= set(row)
    assert (tmp_path / "results.json").exists()
