"""`python -m recipes.semi_supervised`: tiny runs on the offline digits, outputs, command line."""

import csv
import json
import math
import os
import shlex
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_nc.callbacks import EpochEndEvaluator
from recipes.semi_supervised import train
from recipes.semi_supervised.models import FreeMatch
from recipes.semi_supervised.schedule import USBCosineDecay
from tests.tolerances import float32_tolerance

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TEST_SAMPLES = 40
# The same network and weights evaluated twice on the same test images: only the
# mean of the TEST_SAMPLES per-image losses may be summed in another order.
EVALUATION_RTOL = float32_tolerance(terms=TEST_SAMPLES)


def _tiny(tmp_path, name, *more, algorithm="supervised", steps=4, eval_every=2, verbose=0):
    return [
        "--dataset", "digits", "--algorithm", algorithm, "--labels-per-class", "2",
        "--model", "wrn10_1", "--width", "0.25", "--batch-size", "4",
        "--steps", str(steps), "--eval-every", str(eval_every), "--test-samples", "20",
        "--output", str(tmp_path / name), "--verbose", str(verbose), *more,
    ]  # fmt: skip


def test_program_runs_and_writes_outputs(tmp_path):
    out = tmp_path / "run"
    summary = train.main(
        [
            "--dataset", "digits", "--algorithm", "freematch", "--labels-per-class", "2",
            "--model", "wrn10_1", "--width", "0.25", "--batch-size", "4", "--uratio", "2",
            "--steps", "4", "--eval-every", "2", "--randaugment-ops", "1",
            "--test-samples", str(TEST_SAMPLES), "--validation-samples", "30",
            "--mir-weight", "0.1", "--output", str(out), "--verbose", "0",
        ]
    )  # fmt: skip
    for name in ("history.csv", "results.json", "model.keras"):
        assert (out / name).exists(), name
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for key in ("sup_loss", "unsup_loss", "mask_ratio", "pseudo_accuracy", "threshold", "mir"):
        assert key in rows[0], key
    for key in ("val_accuracy", "test_accuracy", "test_loss"):
        assert key in rows[0], key
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["test_accuracy"] <= 1
    assert results["test_accuracy"] == summary["test_accuracy"]
    assert results["labels"] == 20 and results["validation_samples"] == 30
    # The last epoch's test evaluation used the averaged weights: those fit ends on.
    history = results["history"]
    np.testing.assert_allclose(history["test_loss"][-1], results["test_loss"], rtol=EVALUATION_RTOL)
    best = results["best_validation"]
    epoch = int(np.argmax(history["val_accuracy"]))
    assert best["epoch"] == epoch + 1 and best["step"] == 2 * (epoch + 1)
    assert best["test_accuracy"] == history["test_accuracy"][epoch]
    loaded = keras.saving.load_model(os.fspath(out / "model.keras"), safe_mode=True)
    assert isinstance(loaded, FreeMatch)


def test_ema_test_evaluation_is_an_epoch_end_evaluator():
    callback = train.EMATestEvaluation(dataset=None)
    assert isinstance(callback, EpochEndEvaluator) and callback.prefix == "test_"


def test_steps_not_a_multiple_of_eval_every_runs_exactly_steps(tmp_path):
    train.main(_tiny(tmp_path, "run", steps=5, eval_every=3))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["settings"]["steps"] == 5
    # Two evaluation periods: 3 steps, then the last, shorter one of 2.
    assert len(results["history"]["val_accuracy"]) == 2
    loaded = keras.saving.load_model(os.fspath(tmp_path / "run" / "model.keras"), safe_mode=True)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 5


def _reject(name):
    raise ValueError(f"results.json holds {name}, which is not JSON")


def test_a_diverged_run_writes_strict_json_and_a_quiet_run_prints_no_notice(
    tmp_path, monkeypatch, capsys
):
    # A NaN learning rate makes every weight NaN after the first step: NaN losses.
    monkeypatch.setattr(USBCosineDecay, "__call__", lambda self, step: float("nan"))
    summary = train.main(_tiny(tmp_path, "nan", steps=2, eval_every=2))
    assert math.isnan(summary["test_loss"])  # the run did diverge
    text = (tmp_path / "nan" / "results.json").read_text()
    results = json.loads(text, parse_constant=_reject)
    assert results["test_loss"] is None and results["history"]["val_loss"] == [None]
    assert results["settings"]["steps"] == 2  # the rest is written as before
    # --verbose 0 says nothing about loading or compiling.
    quiet = capsys.readouterr().out
    assert "Compiling the training step" not in quiet and "Loading digits" not in quiet


def test_deterministic_reruns_are_bit_identical(tmp_path):
    # Two processes: op determinism is process-wide and cannot be switched off again.
    # Without --deterministic TensorFlow's threads reorder sums and the random crops'
    # draws of the parallel tf.data map, and the same command gives another history.
    runs = []
    for name in ("first", "second"):
        argv = _tiny(tmp_path, name, "--validation-samples", "20", "--deterministic", steps=6,
                     eval_every=3)  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "recipes.semi_supervised", *argv],
            check=True, cwd=ROOT, capture_output=True,
        )  # fmt: skip
        runs.append(json.loads((tmp_path / name / "results.json").read_text()))
    assert runs[0]["settings"]["deterministic"] is True
    assert runs[0]["history"] == runs[1]["history"]  # every logged number, bit for bit
    assert runs[0]["test_accuracy"] == runs[1]["test_accuracy"]


def test_a_first_run_says_what_it_builds_and_compiles_before_the_first_step(tmp_path, capsys):
    # The default (WRN-28-2) spends a minute or more in its first step on a CPU:
    # lines before it say what is happening, and the first step's time comes with the bar.
    train.main(_tiny(tmp_path, "verbose1", verbose=1))
    printed = capsys.readouterr().out
    order = [
        "Loading digits and building supervised on wrn10_1 x0.25",
        "parameters), 4 steps of batch 4",  # the data and model line
        "Compiling the training step of supervised on wrn10_1 x0.25",
        "Epoch 1/2",
        "First step (tracing and compilation included) done in",
        "\x1b[1m1/2",  # Keras' progress bar, updated from the first step
        "\x1b[1m2/2",
        "Epoch 2/2",
    ]
    position = 0
    for text in order:  # each after the one before
        found = printed.find(text, position)
        assert found >= 0, (text, printed[position : position + 400])
        position = found + len(text)
    assert printed.count("First step (tracing") == 1


def test_first_step_notice_times_only_the_first_step(capsys):
    notice = train.FirstStepNotice("a model")
    notice.on_train_begin()
    notice.on_train_batch_end(0)
    first = notice.first_step_seconds
    notice.on_train_batch_end(1)
    assert notice.first_step_seconds == first >= 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Compiling the training step of a model")
    assert lines[1].startswith("First step (tracing and compilation included) done in")
    assert len(lines) == 2


def test_readme_quick_command_is_a_small_run_of_existing_flags():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read().replace("\\\n", " ")  # continued lines as one
    commands = [
        line.split("python -m recipes.semi_supervised", 1)[1].split("#")[0]
        for line in readme.splitlines()
        if "python -m recipes.semi_supervised " in line and "--steps" in line
    ]
    assert len(commands) == 1, commands
    args = train.resolve(train.build_parser().parse_args(shlex.split(commands[0])))
    assert args.dataset == "fashion_mnist"  # the default data set, at a CPU size
    assert args.model == "wrn10_2" and args.width <= 0.5
    assert args.steps <= 200 and args.steps % args.eval_every == 0
    assert args.test_samples is not None and args.test_samples <= 2000


def test_model_help_lists_the_accepted_names(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "wrn<depth>_<k>" in text and "resnet18" in text


def test_former_fairness_sign_spelling_on_the_command_line_warns():
    parser = train.build_parser()
    with pytest.warns(DeprecationWarning, match="use `--fairness-sign negated`"):
        assert parser.parse_args(["--fairness-sign", "spec"]).fairness_sign == "negated"
    assert parser.parse_args(["--fairness-sign", "negated"]).fairness_sign == "negated"
    assert "{paper,negated}" in parser.format_help()
