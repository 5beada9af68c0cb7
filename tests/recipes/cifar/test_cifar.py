"""recipes.cifar: the training program, its command line and its final table."""

import csv
import importlib.util
import json
import math
import os

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import theory
from keras_nc.ops.chance import head_permutations
from recipes.cifar import cli, report, train
from tests.helpers import to_numpy
from tests.tolerances import EPS32, SAFETY, entropy_tolerance, float64_tolerance, ratio_tolerance

# A float32 value logged by Keras, written by CSVLogger as its shortest text and read
# back as float64: half a float32 unit in the last place.
CSV_RTOL = EPS32
# Two float32 evaluations of one 10-class HDR (the monitor's and the relabelled head's,
# equal in exact arithmetic): the ratio bound of 10 x 10 Grams (`information_tolerance`)
# is ~3e-5 for such spectra (1.2e-5 at 8 classes in tests/recipes/grokking), with room.
HDR_TWO_FLOAT32 = 1e-4
# The learning-rate schedule: ~4 float32 roundings (fraction, cosine, 1 + cosine,
# product) of values up to the peak rate 0.2.
SCHEDULE_ATOL = SAFETY * 4 * EPS32 * 0.2


def _run(tmp_path, *extra):
    out = str(tmp_path / "run")
    argv = [
        "--samples-per-class", "6", "--epochs", "2", "--batch-size", "20", "--width", "0.0625",
        "--monitor-per-class", "4", "--verbose", "0", "--output", out, *extra,
    ]  # fmt: skip
    return out, train.main(argv)


def _tensorboard_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir)
    events.Reload()
    return set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])


def _raise_on(name):
    raise AssertionError(f"results.json holds {name}: not strict JSON")


def test_program_writes_history_report_and_model(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    # A NaN measure (the HDR chance level, as of a diverged run): results.json stays
    # strict JSON and holds null there.
    chance = report.sample_pairing_chance
    monkeypatch.setattr(report, "sample_pairing_chance", lambda *a: (chance(*a)[0], math.nan))
    out, summary = _run(
        tmp_path, "--mir-weight", "0.1", "--hdr-weight", "0.05", "--tensorboard", "--layerwise"
    )
    for name in ("history.csv", "report.png", "collapse.png", "model.keras", "layerwise.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    # One writer per format: Keras' CSVLogger and TensorBoard, the monitor's values included.
    assert sorted(os.listdir(out)) == [
        "collapse.png", "history.csv", "layerwise.csv", "layerwise.png", "model.keras",
        "report.png", "results.json", "tensorboard",
    ]  # fmt: skip
    with open(os.path.join(out, "layerwise.csv")) as f:
        profile = list(csv.DictReader(f))
    layers = [row["layer"] for row in profile if int(row["epoch"]) == int(profile[-1]["epoch"])]
    assert layers[0] == "stem_relu" and layers[-1] == "pool" and len(layers) >= 3
    assert all(np.isfinite(float(row["nc1"])) for row in profile)
    assert sorted(os.listdir(os.path.join(out, "tensorboard"))) == ["train", "validation"]
    tags = _tensorboard_tags(os.path.join(out, "tensorboard", "train"))
    assert {"epoch_loss", "epoch_mir", "epoch_collapse_mir_class", "epoch_collapse_nc1"} <= tags
    with open(os.path.join(out, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert summary["final_train_accuracy"] == pytest.approx(float(rows[-1]["accuracy"]), CSV_RTOL)
    for column in ("accuracy", "loss", "mir", "hdr", "matrix_entropy", "val_mir"):
        assert column in rows[0], column
    for column in (
        "collapse_mir_class",
        "collapse_hdr_class",
        "collapse_nc1",
        "collapse_ncc_agreement",
    ):
        assert column in rows[0] and np.isfinite(float(rows[-1][column])), column
    with open(os.path.join(out, "report.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "results.json")) as f:
        results = json.loads(f.read(), parse_constant=_raise_on)
    assert [row["epoch"] for row in results["monitor"]] == [1, 2]
    assert results["monitor"][-1]["nc1"] == pytest.approx(float(rows[-1]["collapse_nc1"]), CSV_RTOL)
    table = {row["measure"]: row for row in results["table"]}
    assert table["HDR, sample-head (test)"]["chance"] is None  # the NaN, as null
    assert table["test accuracy"]["chance"] is None and math.isnan(summary["table"][0]["chance"])
    etf = ref.etf_gram(10)  # MIR* from the float64 spectra of a simplex ETF's Grams
    assert table["MIR, class pairing (monitor)"]["at_collapse"] == pytest.approx(
        ref.mir(etf, etf), abs=float64_tolerance(terms=10 * 10)
    )
    assert table["MIR, class pairing (monitor)"]["value"] == pytest.approx(
        float(rows[-1]["collapse_mir_class"]), CSV_RTOL
    )
    # MIR and HDR come with their chance levels; the verdict rests on NC1 and the ETF error.
    for name in ("MIR, sample-head (test)",
                 "MIR, class pairing (monitor)", "HDR, class pairing (monitor)"):  # fmt: skip
        assert 0.0 <= table[name]["chance"] <= 1.0, name
    # HDR compares spectra only: permuting the head rows leaves it unchanged.
    hdr = table["HDR, class pairing (monitor)"]
    assert hdr["chance"] == pytest.approx(hdr["value"], abs=HDR_TWO_FLOAT32)
    assert results["verdict"].startswith("Neural Collapse: not shown")  # 2 epochs
    assert results["settings"]["epochs"] == 2 and results["settings"]["lr"] == 0.05
    # The regulariser is in the loss; the saved model loads in safe mode and predicts the same.
    model = keras.saving.load_model(os.path.join(out, "model.keras"), safe_mode=True)
    losses = model.get_compile_config()["loss"]
    assert "InformationRegularizer" in [item.get("class_name") for item in losses]
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    assert model.predict(x, verbose=0).shape == (4, 10)


def test_program_argument_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--epochs must be >= 1"):
        train.main(["--epochs", "0", "--output", str(tmp_path)])
    with pytest.raises(SystemExit, match="--mir-weight and --hdr-weight must be >= 0"):
        train.main(["--mir-weight", "-1", "--output", str(tmp_path)])
    with pytest.raises(SystemExit):
        train.main(["--dataset", "mnist"])
    assert "invalid choice: 'mnist'" in capsys.readouterr().err


def test_tensorboard_without_tensorboard_fails_before_training(tmp_path, monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name):
        return None if name == "tensorboard" else real(name)

    monkeypatch.setattr(cli.importlib.util, "find_spec", find_spec)
    with pytest.raises(SystemExit, match="--tensorboard needs tensorboard"):
        train.main(["--tensorboard", "--output", str(tmp_path)])
    assert os.listdir(tmp_path) == []


def test_schedule_is_linear_warmup_then_cosine_and_decay_is_coupled():
    from recipes.data import ImageData

    args = cli.resolve(
        cli.build_parser().parse_args(
            ["--epochs", "5", "--warmup-epochs", "1", "--batch-size", "10", "--lr", "0.2",
             "--width", "0.0625", "--weight-decay", "1e-3", "--nesterov"]
        )
    )  # fmt: skip
    x = np.zeros((40, 8, 8, 1), "float32")
    images = ImageData("toy", x, np.arange(40) % 4, x[:4], np.arange(4), ("a", "b", "c", "d"))
    model = train.build_model(args, images)
    schedule = model.optimizer._learning_rate
    steps, warmup = 4 * 5, 4  # 4 steps per epoch
    expected = [
        0.2 * (s + 1) / warmup if s < warmup
        else 0.1 * (1 + np.cos(np.pi * (s - warmup) / (steps - warmup)))
        for s in range(steps + 1)
    ]  # fmt: skip
    got = [float(to_numpy(schedule(s))) for s in range(steps + 1)]
    # tol: rtol=0, the computed atol is the whole bound
    np.testing.assert_allclose(got[warmup:], expected[warmup:], rtol=0, atol=SCHEDULE_ATOL)
    assert got[0] < got[1] < got[warmup] and got[warmup] == pytest.approx(0.2)
    assert model.optimizer.nesterov and model.optimizer.momentum == 0.9
    assert model.head.kernel_regularizer.l2 == pytest.approx(5e-4)


def _ratio_and_tolerance(kz, kw, kind):
    h1, h2, h12 = ref.entropy(kz), ref.entropy(kw), ref.entropy(kz * kw)
    e1, e2, e12 = (entropy_tolerance(k) for k in (kz, kw, kz * kw))
    value = ref.mir(kz, kw) if kind == "mir" else ref.hdr(kz, kw)
    return value, ratio_tolerance(h1, h2, h12, e1, e2, e12, kind)


def test_sample_pairing_chance_matches_float64_groups():
    """Groups of `sample_size` consecutive rows, labels relabelled, mean over groups and
    permutations, against NumPy float64 on the same groups."""
    rng = np.random.default_rng(0)
    c, d, size = 4, 6, 16
    labels = rng.integers(0, c, 40)  # two groups of 16; the last 8 rows are left out
    features = (rng.normal(size=(40, d)) + 2.0 * rng.normal(size=(c, d))[labels]).astype("float32")
    head = rng.normal(size=(c, d)).astype("float32")
    perms = report.relabellings(c, permutations=3)
    got = report.sample_pairing_chance(features, labels, head, size, perms)
    for index, kind in enumerate(("mir", "hdr")):
        values, tolerances = [], []
        for perm in perms:
            for start in (0, size):
                rows = slice(start, start + size)
                kz = ref.gram(features[rows].astype("float64"), center=True)
                kw = ref.gram(head.astype("float64")[perm[labels[rows]]])
                value, tolerance = _ratio_and_tolerance(kz, kw, kind)
                values.append(value)
                tolerances.append(tolerance)
        assert got[index] == pytest.approx(np.mean(values), abs=max(tolerances)), kind


def test_class_chance_matches_float64_permutations():
    rng = np.random.default_rng(1)
    c, d = 5, 8
    labels = np.repeat(np.arange(c), 6)  # balanced: the weighted and plain means agree
    features = (rng.normal(size=(30, d)) + 3.0 * rng.normal(size=(c, d))[labels]).astype("float32")
    head = rng.normal(size=(c, d)).astype("float32")
    got = report.class_chance(features, labels, head, c)
    means = np.stack([features[labels == k].mean(axis=0) for k in range(c)]).astype("float64")
    km = ref.gram(means, center=True)
    for index, kind in enumerate(("mir", "hdr")):
        values, tolerances = [], []
        for perm in head_permutations(c, 16, seed=0):  # class_pairing_chance's defaults
            value, tolerance = _ratio_and_tolerance(
                km, ref.gram(head[perm].astype("float64")), kind
            )
            values.append(value)
            tolerances.append(tolerance)
        assert got[index] == pytest.approx(np.mean(values), abs=max(tolerances)), kind


def _rows(mir_class, nc1, etf_error):
    monitor = {"mir_class": mir_class, "hdr_class": 0.01, "matrix_entropy": 2.3,
               "head_entropy": 2.2,
               "nc1": nc1, "etf_error": etf_error, "equinorm": 0.05, "self_duality": 0.04,
               "ncc_agreement": 1.0}  # fmt: skip
    test = {"accuracy": 1.0, "mir": 0.5, "hdr": 0.1}
    return report.summary_rows(test, monitor, 10, (0.45, 0.1), (0.9, 0.01))


def test_table_flags_mir_above_star_and_chance_and_says_collapse_from_nc1_and_etf():
    mir_star = theory.mir_at_collapse(10)
    text = report.format_table(_rows(mir_star + 0.02, nc1=5.0, etf_error=0.02))
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    assert lines["MIR, class pairing (monitor)"].endswith("above MIR*: not a maximum")
    assert lines["HDR, class pairing (monitor)"].endswith("at chance")
    assert lines["HDR, sample-head (test)"].endswith("at chance")
    assert lines["MIR, sample-head (test)"].endswith("0.9524")  # 0.05 above chance: no flag
    assert "Neural Collapse: not shown (NC1 5" in text  # MIR and HDR near: not enough
    assert "not shown" in report.verdict(_rows(mir_star, nc1=0.05, etf_error=0.5))
    collapsed = report.verdict(_rows(mir_star, nc1=0.05, etf_error=0.05))
    assert collapsed.startswith("Neural Collapse: shown")
