"""recipes.grokking: modular data, backbones, the measuring callback and the program.

The data are checked against a brute-force enumeration (division by searching
the inverse), the measures against the float64 NumPy reference (`tests.reference`)
on the same features, and the program end to end at p = 8.
"""

import csv
import json
import math
import os

import keras
import numpy as np
import pytest

from keras_nc.callbacks import EpochEndEvaluator
from recipes.grokking import data, progress, train
from recipes.grokking.measure import KEYS, SplitMeasures
from recipes.grokking.model import build_model, compile_model
from tests import reference as ref
from tests.helpers import to_numpy
from tests.tolerances import entropy_tolerance, float32_tolerance, information_tolerance

# The NC measures against float64: the policy of tests/tolerances.py allows 1%.
NC_RTOL = 0.01
# Longest float32 dot-product chains (fan-in times layers) of the two backbones, for
# saved-versus-loaded comparisons (`float32_tolerance`): the MLP's hidden layer reads
# 3 embeddings of 128 and the head 16 features; the width-8 transformer has 6 layers of
# fan-in <= 32 (its MLP).
MLP_TERMS, TRANSFORMER_TERMS = 2 * 3 * 128, 6 * 32


def _reference_label(a, b, p, op):
    if op == "+":
        return (a + b) % p
    if op == "-":
        return (a - b) % p
    if op == "*":
        return (a * b) % p
    return next(c for c in range(p) if (c * b) % p == a)  # a / b: the c with c b = a


@pytest.mark.parametrize("p, op", [(7, "+"), (7, "-"), (6, "*"), (7, "/"), (2, "/")])
def test_all_pairs_once_with_their_labels(p, op):
    pairs, labels = data.modular_pairs(p, op)
    expected = {(a, b) for a in range(p) for b in range(p) if op != "/" or b != 0}
    assert len(pairs) == len(expected) == (p * (p - 1) if op == "/" else p * p)
    assert {tuple(map(int, row)) for row in pairs} == expected  # each pair once
    for (a, b), label in zip(pairs, labels, strict=True):
        assert label == _reference_label(int(a), int(b), p, op)
    assert pairs.dtype == labels.dtype == np.int32


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.77])
def test_split_sizes_no_leakage_and_seeded(fraction):
    split = data.modular_dataset(11, "-", train_fraction=fraction, seed=3)
    total = 11 * 11
    assert len(split.y_train) == round(fraction * total)
    assert len(split.y_train) + len(split.y_test) == total
    train_pairs = {tuple(row) for row in split.x_train[:, :2].tolist()}
    test_pairs = {tuple(row) for row in split.x_test[:, :2].tolist()}
    assert not train_pairs & test_pairs
    assert len(train_pairs | test_pairs) == total
    for x, y in [(split.x_train, split.y_train), (split.x_test, split.y_test)]:
        assert np.all(x[:, 2] == 11)  # the "=" token
        np.testing.assert_array_equal(y, (x[:, 0] - x[:, 1]) % 11)
    again = data.modular_dataset(11, "-", train_fraction=fraction, seed=3)
    np.testing.assert_array_equal(again.x_train, split.x_train)
    other = data.modular_dataset(11, "-", train_fraction=fraction, seed=4)
    assert not np.array_equal(other.x_train, split.x_train)
    assert split.vocabulary_size == 12


def test_data_argument_errors():
    with pytest.raises(ValueError, match="`op='/'` needs a prime `p`"):
        data.modular_pairs(9, "/")
    with pytest.raises(ValueError, match="`op` must be one of"):
        data.modular_pairs(7, "^")
    with pytest.raises(ValueError, match="`p` must be an integer >= 2"):
        data.modular_pairs(1)
    with pytest.raises(ValueError, match=r"`train_fraction` must be in \(0, 1\)"):
        data.modular_dataset(7, train_fraction=1.0)
    with pytest.raises(ValueError, match="leaves an empty train or test set"):
        data.modular_dataset(2, "/", train_fraction=0.1)
    with pytest.raises(ValueError, match="`steps` must be a positive integer"):
        data.StepBatches(np.zeros((4, 3)), np.zeros(4), steps=0)


def test_step_batches_full_and_seeded_mini_batches():
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    full = data.StepBatches(x, y, steps=3)
    assert len(full) == 3 and full.batch_size is None
    np.testing.assert_array_equal(full[2][1], y)
    mini = data.StepBatches(x, y, steps=2, batch_size=4, seed=1)
    first = [mini[i][1] for i in range(2)]
    for labels in first:
        assert len(set(labels.tolist())) == 4  # without replacement
    np.testing.assert_array_equal(first[0], data.StepBatches(x, y, 2, 4, seed=1)[0][1])
    mini.on_epoch_end()  # the next epoch's steps draw other batches
    assert not all(np.array_equal(a, mini[i][1]) for i, a in enumerate(first))


def _measured_fit(model, split, steps=3, epochs=2):
    measures = SplitMeasures((split.x_train, split.y_train), (split.x_test, split.y_test), 64)
    history = model.fit(
        data.StepBatches(split.x_train, split.y_train, steps), epochs=epochs,
        callbacks=[measures], verbose=0,
    )  # fmt: skip
    assert np.all(np.isfinite(history.history["loss"]))
    row = measures.history[-1]
    assert set(row) == {"epoch", *(f"{s}_{k}" for s in ("train", "val") for k in KEYS)}
    assert all(np.isfinite(v) for v in row.values()), row
    return row


# p = 8 at half the pairs: train and test sets of 32, one evaluation shape (one compilation).
def test_mlp_trains_with_collapse_losses_and_measures_match_the_exact_report():
    split = data.modular_dataset(8, "+", train_fraction=0.5, seed=0)
    keras.utils.set_random_seed(0)
    model = build_model(8, split.vocabulary_size, "mlp", width=16)
    compile_model(model, mir_weight=0.5, hdr_weight=0.5, cma_weight=0.5, warmup_steps=1)
    row = _measured_fit(model, split)
    # The measures are those of the trained weights, against float64 on the same features.
    z = to_numpy(model.extract_features(split.x_train)).astype("float64")
    head = to_numpy(model.head_weights).astype("float64")
    y = split.y_train
    assert row["train_nc1"] == pytest.approx(ref.neural_collapse(z, y, head, 8)["nc1"], NC_RTOL)
    km, kw = ref.class_pairing(z, y, head, 8)
    tolerance = information_tolerance(km, kw, "mir")
    assert row["train_mir_class"] == pytest.approx(ref.mir(km, kw), abs=tolerance)
    kh = ref.gram(head)
    assert row["train_head_entropy"] == pytest.approx(ref.entropy(kh), abs=entropy_tolerance(kh))
    # 32 samples: the accuracy is a multiple of 1/32, exact in float32.
    logits = to_numpy(model(split.x_train))
    assert row["train_accuracy"] == np.mean(np.argmax(logits, axis=1) == y)


def test_transformer_trains_and_survives_safe_mode_loading(tmp_path):
    split = data.modular_dataset(8, "*", train_fraction=0.5, seed=1)
    keras.utils.set_random_seed(0)
    model = build_model(8, split.vocabulary_size, "transformer", width=8)
    compile_model(model, warmup_steps=1)
    _measured_fit(model, split, steps=2, epochs=1)
    path = tmp_path / "t.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = split.x_test
    expected = to_numpy(model(x))
    tolerance = float32_tolerance(TRANSFORMER_TERMS, np.abs(expected).max())
    # tol: rtol=0, the computed atol is the whole bound
    np.testing.assert_allclose(to_numpy(loaded(x)), expected, rtol=0, atol=tolerance)
    assert loaded.count_params() == model.count_params()
    assert "position_embedding" in [layer.name for layer in loaded.backbone.layers]


def test_progress_steps():
    assert progress.first_step([10, 20, 30], [0.1, 0.6, 0.97], 0.5) == 20
    assert progress.first_step([10, 20], [0.1, 0.2], 0.5) is None
    assert progress.change_step([1, 2, 3, 4], [1.0, 0.5, 0.08, 0.0]) == 3
    assert progress.change_step([1, 2, 3], [100.0, 10.0, 0.1], log=True) == 3
    assert progress.change_step([1, 2], [0.3, 0.3]) is None


def _raise_on(name):
    raise AssertionError(f"results.json holds {name}: not strict JSON")


def test_measures_is_an_epoch_end_evaluator_without_data():
    measures = SplitMeasures((np.zeros((2, 3)), np.zeros(2)), (np.zeros((2, 3)), np.zeros(2)), 8)
    assert isinstance(measures, EpochEndEvaluator)
    assert measures.x is None and measures.every == 1 and measures.batch_size == 8
    with pytest.raises(ValueError, match="batch_size"):
        SplitMeasures((None, None), (None, None), 0)


def test_program_end_to_end_and_safe_mode_loading(tmp_path, capsys, monkeypatch):
    # A measure that is NaN at the last evaluation (as of a diverged run): results.json
    # stays strict JSON and holds null there.
    measure = SplitMeasures.measure

    def nan_hdr(self):
        values = measure(self)
        return {**values, "val_hdr": math.nan} if len(self.history) == 1 else values

    monkeypatch.setattr(SplitMeasures, "measure", nan_hdr)
    out = tmp_path / "run"
    argv = ["--p", "8", "--train-fraction", "0.5", "--steps", "4", "--log-every", "2",
            "--width", "16", "--seed", "1", "--eval-batch-size", "32", "--output", str(out),
            "--verbose", "0"]  # fmt: skip
    results = train.main(argv)
    for name in ("history.csv", "results.json", "model.keras", "report.png"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"loss", "accuracy", "train_nc1", "val_accuracy", "val_mir"} <= set(rows[0])
    assert not any(key.startswith("val_train") for key in rows[0])
    saved = json.loads((out / "results.json").read_text(), parse_constant=_raise_on)
    assert saved["final"]["val_hdr"] is None and math.isnan(results["final"]["val_hdr"])
    assert saved["final"]["val_mir"] == pytest.approx(float(rows[-1]["val_mir"]))
    assert saved["train_size"] == saved["test_size"] == 32
    assert set(saved["steps_to"]) >= {"val_accuracy_50", "val_accuracy_95", "train_nc1_90"}
    assert saved["final"]["step"] == 4 == results["final"]["step"]
    printed = capsys.readouterr().out
    assert "wrote history.csv" in printed
    # The summary table says what its columns and `never` mean, before its rows.
    legend = printed.index("Steps at which each curve moves")
    assert legend < printed.index("<measure>_90 ") < printed.index("\ntrain_nc1_90 ")
    assert printed.index("\ncolumn ") < printed.index("\ntrain_nc1_90 ")

    loaded = keras.saving.load_model(out / "model.keras", safe_mode=True)
    split = data.modular_dataset(8, "+", train_fraction=0.5, seed=1)
    expected = saved_logits(out, split.x_test)
    tolerance = float32_tolerance(MLP_TERMS, np.abs(expected).max())
    # tol: rtol=0, the computed atol is the whole bound
    np.testing.assert_allclose(to_numpy(loaded(split.x_test)), expected, rtol=0, atol=tolerance)
    # 32 test pairs: the accuracy is a multiple of 1/32, exact in float32 and in the CSV.
    evaluated = loaded.evaluate(split.x_test, split.y_test, verbose=0, return_dict=True)
    assert evaluated["accuracy"] == float(rows[-1]["val_accuracy"])


def saved_logits(folder, x):
    """Logits of the saved model loaded again (the two loads must agree)."""
    model = keras.saving.load_model(os.path.join(folder, "model.keras"), safe_mode=True)
    return to_numpy(model.predict(x, verbose=0))


def test_program_argument_errors():
    with pytest.raises(SystemExit, match="multiple of --log-every"):
        train.main(["--steps", "10", "--log-every", "3"])
    with pytest.raises(SystemExit, match="needs a prime"):
        train.main(["--op", "/", "--p", "9", "--output", "unused"])


def test_extremum_steps():
    assert progress.extremum_step([10, 20, 30, 40], [5.0, 1.0, 1.0, 3.0], "min") == 20
    assert progress.extremum_step([10, 20, 30], [0.1, 0.9, 0.5], "max") == 20
    history = {"step": [1, 2, 3], "train_nc1": [4.0, 1.0, 8.0], "val_accuracy": [0, 0.6, 1]}
    summary = progress.summarize(history)
    assert summary["train_nc1_min"] == 2 and summary["val_accuracy_50"] == 2
    assert summary["train_nc1_90"] == 3  # log10: 0.6 -> 0.9, 90% of the change at step 3


def test_summary_table_explains_its_columns_and_never():
    summary = {"val_accuracy_50": 300, "val_accuracy_95": None, "train_nc1_90": 150,
               "train_mir_max": 350}  # fmt: skip
    lines = progress.format_summary(summary).splitlines()
    header = lines.index(next(line for line in lines if line.startswith("column")))
    legend = "\n".join(lines[:header])
    assert "train_: training set, val_: test set" in legend
    assert "<split>_accuracy_<P>  first step with accuracy >= P%" in legend
    assert "<measure>_90" in legend and "90% of the change from the first to the last" in legend
    assert "<measure>_min/_max" in legend and "\n  never" in legend
    rows = dict(line.split() for line in lines[header + 2 :])
    assert rows == {"val_accuracy_50": "300", "val_accuracy_95": "never",
                    "train_nc1_90": "150", "train_mir_max": "350"}  # fmt: skip
    # Only the kinds present are explained.
    short = progress.format_summary({"train_nc1_90": 10})
    assert "never" not in short and "accuracy" not in short and "_min" not in short
