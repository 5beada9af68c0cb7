"""The early-stopping study (`studies.early_stopping`): replay, tables, the committed report.

`mode="auto"`'s direction for the keras-nc metrics runs on every backend; the
replay, the tables and the report are bookkeeping around Keras' own
`EarlyStopping` and run on TensorFlow only (the study's backend).
"""

import json

import keras
import numpy as np
import pytest

import keras_nc
from studies import driver
from studies.early_stopping import cli, replay, table
from tests.helpers import BACKEND
from tests.studies.reports import reproduces_report

tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent: the study's replay and report"
)


def tiny_model(accuracy=False):
    """A `CollapseClassifier` compiled with the study's measures (and accuracy, built)."""
    backbone = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu")])
    model = keras_nc.models.CollapseClassifier(backbone, 2)
    metrics = [keras_nc.metrics.MIR(), keras_nc.metrics.HDR(), keras_nc.metrics.NC1()]
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy", *metrics] if accuracy else metrics,
    )
    if accuracy:  # Keras resolves "accuracy"'s direction from the built compiled metrics
        model.evaluate(np.ones((4, 4), "float32"), np.array([0, 1, 0, 1]), verbose=0)
    return model


def test_mode_auto_maximises_mir_and_minimises_hdr_and_nc1():
    # arXiv 2409.16767's measures carry their direction (docs/log_keys.md): "up" for MIR,
    # "down" for HDR and NC1, which Keras' EarlyStopping reads in mode="auto".
    model = tiny_model()
    assert replay.comparison(model, "val_mir") == "max"
    assert replay.comparison(model, "val_hdr") == "min"
    assert replay.comparison(model, "val_nc1") == "min"
    assert replay.comparison(model, "val_loss") == "min"


@tensorflow_only
def test_replay_stops_where_the_rule_says_by_hand():
    model = tiny_model(accuracy=True)
    values = [0.5, 0.4, 0.6, 0.3, 0.2, 0.1, 0.7]
    # Maximised (MIR), patience 2: best 0.6 at epoch 2, then two epochs without a new
    # maximum: stops after epoch 4 (5 epochs trained), restores epoch 2.
    assert replay.replay({"val_mir": values}, model, "val_mir", 2) == replay.Stop(5, 4, 2, True)
    # Minimised (HDR), same values: new minima up to epoch 5, one worse epoch: never stops,
    # and restores epoch 5 at the end of training.
    assert replay.replay({"val_hdr": values}, model, "val_hdr", 2) == replay.Stop(7, 0, 5, False)
    # Accuracy, patience 3: best 0.6 at epoch 2, three epochs without improvement.
    assert replay.replay({"val_accuracy": values}, model, "val_accuracy", 3) == replay.Stop(
        6, 5, 2, True
    )
    # Equal values are no improvement (min_delta 0): the first of them is kept.
    flat = {"val_loss": [1.0, 0.5, 0.5, 0.5]}
    assert replay.replay(flat, model, "val_loss", 2) == replay.Stop(4, 3, 1, True)


def fake_runs(tests, monitor_values):
    """Records of full runs: `{seed: {"history": {...}}}` with the given test accuracies."""
    return {
        seed: {"history": {"test_accuracy": test, "val_mir": monitor_values[seed]}}
        for seed, test in enumerate(tests)
    }


@tensorflow_only
def test_rule_row_counts_epochs_and_losses_against_last_and_best():
    tests = [[0.5, 0.8, 0.7, 0.9], [0.5, 0.8, 0.75, 0.7], [0.6, 0.7, 0.8, 0.85]]
    runs = fake_runs(tests, [[0.0] * 4] * 3)
    stops = {0: replay.Stop(3, 2, 1, True), 1: replay.Stop(4, 0, 1, False),
             2: replay.Stop(3, 2, 1, True)}  # fmt: skip
    row = table.rule_row("rule", runs, stops)
    assert row[1] == "2/3"
    assert row[2].startswith("3.3 ± ")  # trained 3, 4, 3
    assert row[3].startswith("0.7 ± ")  # saved 1, 0, 1 of 4
    # Restored epoch 1 (0-based): 0.8, 0.8, 0.7; last 0.9, 0.7, 0.85; best 0.9, 0.8, 0.85.
    assert row[4].startswith("76.67 ± ")
    assert row[5].startswith("-5.00 ± ")  # (-10 + 10 - 15) / 3 pp
    assert row[6].startswith("-8.33 ± ")  # (-10 + 0 - 15) / 3 pp
    assert row[7] == "-" and row[8].startswith("1.3 ± ")  # |1 - 3|, |1 - 1|, |1 - 3|
    # Against another rule restoring epoch 3 (0-based): 0.9, 0.7, 0.85 as the last epoch.
    other = {s: replay.Stop(4, 0, 3, False) for s in range(3)}
    row = table.rule_row("rule", runs, stops, table.restored_accuracy(runs, other))
    assert row[7] == row[5]


@tensorflow_only
def test_measure_row_finds_the_measures_best_epoch():
    tests = [[0.5, 0.8, 0.7, 0.9]] * 3
    runs = fake_runs(tests, [[0.1, 0.3, 0.2, 0.4]] * 3)  # ranks as test accuracy's
    row = table.measure_row("val_mir", runs, "max")
    assert row[2] == "+1.00, +1.00, +1.00" and row[5] == "4, 4, 4" and row[6] == "4, 4, 4"
    assert row[4] == "n/a"  # no epoch after `table.LATE` in 4 epochs
    # Identical seeds: the intervals are 0 wide.
    assert row[7] == "0.0 ± 0.0" and row[8] == "0.00 ± 0.00"
    row = table.measure_row("val_mir", runs, "min")  # the minimum at epoch 1
    assert row[5] == "1, 1, 1" and row[7] == "3.0 ± 0.0" and row[8] == "-40.00 ± 0.00"


@tensorflow_only
def test_report_of_the_committed_records_is_the_docs_page(tmp_path):
    # Every committed record was run with the planned command, and `--report` writes, byte
    # for byte, the report docs/early_stopping.md holds and the figure it shows.
    runs, check = cli.records(cli.parse([]))
    assert sorted(runs) == [0, 1, 2] and check is not None
    assert all(reproduces_report(cli, tmp_path, "| none (", "| (", exact_figure=True))
    for seed, record in runs.items():
        assert record["backend"] == "tensorflow" and len(record["history"]["test_accuracy"]) == 30
        assert record["cell"] == {"seed": seed}


@tensorflow_only
def test_check_run_stops_where_the_replay_of_its_seed_does():
    # The replay's claim: fit with EarlyStopping trains exactly the full run's first epochs
    # (deterministic training, the same logs) and stops and restores where the replay does.
    runs, check = cli.records(cli.parse([]))
    stop = check["early_stopping"]
    full = runs[check["cell"]["seed"]]["history"]
    replayed = replay.replay(full, tiny_model(accuracy=True), stop["monitor"], stop["patience"])
    assert replayed.stopped and check["epochs_run"] == replayed.epochs_trained
    assert stop["best_epoch"] == replayed.best_epoch
    for key, values in check["history"].items():  # bit-identical: op determinism
        assert values == full[key][: check["epochs_run"]], key
    # The restored weights are those of the restored epoch: its recorded test accuracy
    # (a count of correct images over the same 2000, so exactly equal).
    assert stop["restored_test"]["accuracy"] == full["test_accuracy"][replayed.best_epoch]


@tensorflow_only
def test_plan_names_the_seeds_and_the_check(tmp_path):
    args = cli.parse(["--seeds", "0", "1", "--records", str(tmp_path), "--epochs", "4"])
    jobs = cli.plan(args)
    assert [job.name for job in jobs] == ["seed0", "seed1", "check-seed0"]
    assert jobs[-1].argv[-4:] == ("--monitor", "val_mir", "--patience", "3")
    assert jobs[0].argv[:4] == ("--seed", "0", "--epochs", "4")
    (tmp_path / "seed0.json").write_text(json.dumps({"argv": list(jobs[0].argv)}))
    assert [done for _, done in driver.pending(jobs, str(tmp_path))] == [True, False, False]


@tensorflow_only
def test_test_split_logs_the_split_after_every_epoch():
    from studies.early_stopping import cell

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), np.arange(16) % 2
    model = tiny_model(accuracy=True)
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[cell.TestSplit((x, y))])
    for key in ("test_loss", "test_accuracy", "test_mir", "test_hdr", "test_nc1"):
        assert len(history.history[key]) == 2, key
    # The last epoch's entry is the trained model's evaluation of the same split: inference
    # on the same weights and images, and accuracy a count over 16 images (exact).
    final = model.evaluate(x, y, batch_size=500, verbose=0, return_dict=True)
    assert history.history["test_accuracy"][-1] == float(final["accuracy"])
