"""recipes.semi_supervised: FixMatch/FreeMatch mathematics, trainers, data and program.

The mathematics is compared with a float64 NumPy transcription of FixMatch's
(arXiv 2001.07685) and FreeMatch's (arXiv 2205.07246) formulas;
the trainers are checked under `fit` (compiled on TensorFlow and JAX), through
a `.keras` save/load/resume round trip and for the weight EMA used in evaluation.
"""

import csv
import json
import os
import shlex
import subprocess
import sys

import keras
import numpy as np
import pytest
from scipy import stats

from keras_nc import ops as nc_ops
from keras_nc.losses import InformationRegularizer
from keras_nc.models import CollapseClassifier
from recipes.semi_supervised import algorithms, experiment, train
from recipes.semi_supervised import data as ssl_data
from recipes.semi_supervised.models import (
    ConfidentSamplesStep,
    FixMatch,
    FreeMatch,
    SemiSupervisedModel,
)
from tests.helpers import BACKEND, to_numpy

C = 4


# --------------------------------------------------------------------------- #
# float64 NumPy references (FixMatch, FreeMatch)
# --------------------------------------------------------------------------- #


def _softmax(logits):
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _inverse(v):
    return np.where(v > 0, 1.0 / np.where(v > 0, v, 1.0), 0.0)


def _sum_norm(v):
    return v / v.sum() if v.sum() > 0 else v


def _ref_sat(p, time_p, p_model, label_hist, m):
    n, c = p.shape
    time_p = m * time_p + (1 - m) * p.max(axis=1).mean()
    p_model = m * p_model + (1 - m) * p.mean(axis=0)
    label_hist = m * label_hist + (1 - m) * np.bincount(p.argmax(axis=1), minlength=c) / n
    thresholds = time_p * p_model / p_model.max()
    mask = (p.max(axis=1) >= thresholds[p.argmax(axis=1)]).astype(np.float64)
    return time_p, p_model, label_hist, thresholds, mask


def _ref_fairness_cross_entropy(p_strong, mask, p_model, label_hist):
    """The cross-entropy `H = -sum p log q` of FreeMatch's fairness loss (its `L_f` is `-H`)."""
    selected = p_strong[mask > 0]
    if not len(selected):
        return 0.0
    hist_s = np.bincount(selected.argmax(axis=1), minlength=p_strong.shape[1]) / len(selected)
    target = _sum_norm(p_model * _inverse(label_hist))
    pred = _sum_norm(selected.mean(axis=0) * _inverse(hist_s))
    return -np.sum(target * np.log(pred + 1e-12))


def _ref_masked_ce(logits, labels, mask):
    log_p = np.log(_softmax(logits))
    return np.mean(-log_p[np.arange(len(labels)), labels] * mask)


# --------------------------------------------------------------------------- #
# Pure functions
# --------------------------------------------------------------------------- #


def test_fixmatch_mask_and_loss_match_numpy(rng):
    logits_w = (rng.normal(size=(16, C)) * np.linspace(0.5, 8, 16)[:, None]).astype("float32")
    logits_s = rng.normal(size=(16, C)).astype("float32") * 3
    p = _softmax(logits_w)
    want_mask = (p.max(axis=1) >= 0.95).astype(np.float64)
    assert 0 < want_mask.sum() < len(want_mask)  # both branches exercised
    mask, pseudo = algorithms.fixmatch_mask(keras.ops.softmax(logits_w), 0.95)
    np.testing.assert_array_equal(to_numpy(mask), want_mask)
    np.testing.assert_array_equal(to_numpy(pseudo), p.argmax(axis=1))
    loss = algorithms.masked_cross_entropy(logits_s, pseudo, mask)
    want = _ref_masked_ce(logits_s, p.argmax(axis=1), want_mask)
    np.testing.assert_allclose(float(to_numpy(loss)), want, rtol=1e-5)


def test_sat_and_saf_match_numpy_over_several_steps(rng):
    m = 0.7  # a fast EMA, so that the state moves visibly within a few steps
    state = (1 / C, np.full(C, 1 / C), np.full(C, 1 / C))
    ours = tuple(np.asarray(s, "float32") for s in state)
    mixed = 0
    for step in range(6):
        # Peaked and flat rows, a class never predicted (zero histogram bins).
        logits = rng.normal(size=(12, C)) * rng.uniform(0.2, 4.0, size=(12, 1))
        logits[:, C - 1] -= 6.0
        p = _softmax(logits)
        p_strong = _softmax(rng.normal(size=(12, C)) * 2)
        *state, thresholds, mask = _ref_sat(p, *state, m)
        if step == 5:
            mask = np.zeros_like(mask)  # no confident sample: L_f = 0
        mixed += 0 < mask.sum() < len(mask)

        new = algorithms.sat_update(p.astype("float32"), *ours, momentum=m)
        ours = tuple(to_numpy(v) for v in new)
        for got, want in zip(ours, state, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        got_mask, got_thresholds = algorithms.sat_mask(p.astype("float32"), ours[0], ours[1])
        np.testing.assert_allclose(to_numpy(got_thresholds), thresholds, rtol=1e-5)
        if step < 5:
            np.testing.assert_array_equal(to_numpy(got_mask), mask)
        fairness = algorithms.saf_loss(p_strong.astype("float32"), mask, ours[1], ours[2])
        # FreeMatch's paper and USB minimise L_f = -H(., .): SPEC's value with the sign flipped.
        want = -_ref_fairness_cross_entropy(p_strong, mask, state[1], state[2])
        np.testing.assert_allclose(float(to_numpy(fairness)), want, rtol=1e-5, atol=1e-7)
    assert mixed >= 2


def test_masked_information_ratios_equal_those_of_the_subset(rng):
    features = rng.normal(size=(10, 6)).astype("float32")
    labels = rng.integers(0, C, size=10).astype("int32")
    head = rng.normal(size=(C, 6)).astype("float32")
    mask = np.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 0], "float32")
    mir, hdr, valid = algorithms.masked_information_ratios(features, labels, head, mask)
    keep = mask > 0
    k_z, k_w = nc_ops.sample_head_grams(features[keep], labels[keep], head, center=True)
    want_mir, want_hdr = nc_ops.information_ratios(k_z, k_w)
    np.testing.assert_allclose(to_numpy(mir), to_numpy(want_mir), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(hdr), to_numpy(want_hdr), rtol=1e-4, atol=1e-5)
    assert float(to_numpy(valid)) == 1.0
    one = np.eye(10, dtype="float32")[0]
    *_, valid = algorithms.masked_information_ratios(features, labels, head, one)
    assert float(to_numpy(valid)) == 0.0


def test_regularizer_of_the_confident_samples_is_that_of_the_subset(rng):
    # The unlabelled MIR/HDR term: the library's InformationRegularizer, its
    # sample pairing restricted to the confident samples by ConfidentSamplesStep.
    features = rng.normal(size=(10, 6)).astype("float32")
    labels = rng.integers(0, C, size=10).astype("int32")
    head = rng.normal(size=(C, 6)).astype("float32")
    mask = np.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 0], "float32")
    regularizer = InformationRegularizer(mir_weight=0.3, hdr_weight=0.2)

    def term(selection):
        step = ConfidentSamplesStep(labels, features, head, selection)
        return float(to_numpy(regularizer(labels, features=features, head_weights=head, step=step)))

    keep = mask > 0
    mir, hdr = nc_ops.sample_head_ratios(features[keep], labels[keep], head, center=True)
    want = 0.2 * float(to_numpy(hdr)) - 0.3 * float(to_numpy(mir))
    np.testing.assert_allclose(term(mask), want, rtol=1e-4, atol=1e-5)
    assert abs(want) > 1e-3  # a value that could be wrong
    assert term(np.eye(10, dtype="float32")[0]) == 0.0  # fewer than two confident samples


# --------------------------------------------------------------------------- #
# Trainers
# --------------------------------------------------------------------------- #


def _backbone(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def _batch(seed=0, n_lb=4, n_u=8):
    rng = np.random.default_rng(seed)
    x = {
        "labeled": rng.normal(size=(n_lb, 6, 6, 1)).astype("float32"),
        "unlabeled_weak": rng.normal(size=(n_u, 6, 6, 1)).astype("float32") * 3,
        "unlabeled_strong": rng.normal(size=(n_u, 6, 6, 1)).astype("float32"),
        "unlabeled_labels": rng.integers(-1, C, size=n_u).astype("int32"),
    }
    return x, (np.arange(n_lb) % C).astype("int32")


def _fit_step(model, batch):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(batch)
    return model.fit(dataset, epochs=1, verbose=0).history


def _state(model):
    return [to_numpy(v) for v in model.variables + model.optimizer.variables]


def test_freematch_fit_updates_sat_state_and_logs_like_numpy():
    model = FreeMatch(_backbone(), C, sat_momentum=0.9, lambda_f=0.5, mir_weight=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    state = (1 / C, np.full(C, 1 / C), np.full(C, 1 / C))
    for step in range(2):
        x, y = _batch(step)
        # The forward pass of the step: same weights, batch statistics of the joint batch.
        out = model(x, training=True)
        p = _softmax(to_numpy(out["weak_logits"]))
        p_strong = _softmax(to_numpy(out["strong_logits"]))
        *state, _, mask = _ref_sat(p, *state, 0.9)
        logs = _fit_step(model, (x, y))
        for variable, want in zip(
            (model.time_p, model.p_model, model.label_hist), state, strict=True
        ):
            np.testing.assert_allclose(to_numpy(variable), want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(logs["mask_ratio"][0], mask.mean(), atol=1e-6)
        np.testing.assert_allclose(logs["threshold"][0], state[0], rtol=1e-5)
        want_fair = -_ref_fairness_cross_entropy(p_strong, mask, state[1], state[2])
        np.testing.assert_allclose(logs["fairness_loss"][0], want_fair, rtol=1e-4, atol=1e-5)
        truth = x["unlabeled_labels"]
        weight = mask * (truth >= 0)
        if weight.sum():
            want_acc = np.sum((p.argmax(1) == truth) * weight) / weight.sum()
            np.testing.assert_allclose(logs["pseudo_accuracy"][0], want_acc, atol=1e-6)
    for key in ("loss", "sup_loss", "unsup_loss", "mir", "hdr", "accuracy"):
        assert np.isfinite(logs[key][0]), key
    # Evaluation on plain images: logits in, loss and accuracy out, no training
    # trackers; the MIR/HDR term of the loss is logged as CollapseClassifier logs
    # every collapse loss term.
    results = model.evaluate(x["labeled"], y, verbose=0, return_dict=True)
    assert set(results) == {"loss", "accuracy", "information_regularizer_loss"}


def test_fixmatch_fit_step_loss_matches_numpy():
    model = FixMatch(_backbone(), C, threshold=0.6, log_information=False)
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # frozen weights: the logs are exact
    x, y = _batch(3)
    out = model(x, training=True)
    p = _softmax(to_numpy(out["weak_logits"]))
    mask = (p.max(axis=1) >= 0.6).astype(np.float64)
    unsup = _ref_masked_ce(to_numpy(out["strong_logits"]), p.argmax(axis=1), mask)
    sup = _ref_masked_ce(to_numpy(out["logits"]), y, np.ones(len(y)))
    logs = _fit_step(model, (x, y))
    np.testing.assert_allclose(logs["unsup_loss"][0], unsup, rtol=1e-5)
    np.testing.assert_allclose(logs["sup_loss"][0], sup, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"][0], sup + unsup, rtol=1e-5)
    np.testing.assert_allclose(logs["mask_ratio"][0], mask.mean(), atol=1e-6)
    assert "mir" not in logs


def test_fairness_sign_negated_minimises_the_cross_entropy():
    # Frozen weights: the logged fairness term and the total loss are exact.
    model = FreeMatch(_backbone(), C, lambda_f=0.5, fairness_sign="negated", log_information=False)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x, y = _batch(4)
    out = model(x, training=True)
    p = _softmax(to_numpy(out["weak_logits"]))
    state = (1 / C, np.full(C, 1 / C), np.full(C, 1 / C))
    *state, _, mask = _ref_sat(p, *state, 0.999)
    p_strong = _softmax(to_numpy(out["strong_logits"]))
    cross_entropy = _ref_fairness_cross_entropy(p_strong, mask, state[1], state[2])
    assert mask.sum() > 0 and abs(cross_entropy) > 1e-3  # a term that could have the wrong sign
    sup = _ref_masked_ce(to_numpy(out["logits"]), y, np.ones(len(y)))
    unsup = _ref_masked_ce(to_numpy(out["strong_logits"]), p.argmax(axis=1), mask)
    logs = _fit_step(model, (x, y))
    np.testing.assert_allclose(logs["fairness_loss"][0], cross_entropy, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logs["loss"][0], sup + unsup + 0.5 * cross_entropy, rtol=1e-4)
    assert model.get_config()["fairness_sign"] == "negated"
    with pytest.raises(ValueError, match="`fairness_sign` must be one of"):
        FreeMatch(_backbone(), C, fairness_sign="+")


def test_former_fairness_sign_spelling_warns_and_means_negated():
    with pytest.warns(DeprecationWarning, match='use `fairness_sign="negated"`'):
        model = FreeMatch(_backbone(), C, fairness_sign="spec")
    assert model.fairness_sign == "negated"
    assert model.get_config()["fairness_sign"] == "negated"
    parser = train.build_parser()
    with pytest.warns(DeprecationWarning, match="use `--fairness-sign negated`"):
        assert parser.parse_args(["--fairness-sign", "spec"]).fairness_sign == "negated"
    assert parser.parse_args(["--fairness-sign", "negated"]).fairness_sign == "negated"
    assert "{paper,negated}" in parser.format_help()


def test_save_load_resume_round_trip_restores_the_ema_state(tmp_path):
    # With the regulariser on the confident samples too: a reloaded model that
    # recompiled it twice into its loss would step differently below.
    model = FreeMatch(
        _backbone(), C, sat_momentum=0.9, mir_weight=0.2, hdr_weight=0.1,
        unlabeled_information=True,
    )  # fmt: skip
    assert isinstance(model, CollapseClassifier)
    model.compile()  # SGD with use_ema=True, ema_momentum=0.999
    _fit_step(model, _batch(0))
    path = str(tmp_path / "freematch.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, FreeMatch) and loaded.sat_momentum == 0.9
    assert (loaded.mir_weight, loaded.hdr_weight) == (0.2, 0.1) and loaded.unlabeled_information
    assert loaded.optimizer.use_ema and loaded.optimizer.ema_momentum == 0.999
    before = _state(model)
    assert not np.allclose(to_numpy(model.time_p), 1 / C)  # the state has moved
    for got, want in zip(_state(loaded), before, strict=True):
        np.testing.assert_array_equal(got, want)
    # Resuming: one more step on each gives the same state.
    _fit_step(model, _batch(1))
    _fit_step(loaded, _batch(1))
    for got, want in zip(_state(loaded), _state(model), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


class _Recorder(keras.callbacks.Callback):
    """Raw weights and their averages at every epoch end (after the EMA evaluation)."""

    def __init__(self):
        super().__init__()
        self.raw, self.averages = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.raw.append([to_numpy(v) for v in self.model.trainable_variables])
        averages = self.model.optimizer._model_variables_moving_average
        self.averages.append([to_numpy(v) for v in averages])


def test_evaluation_uses_the_ema_weights():
    import tensorflow as tf

    model = SemiSupervisedModel(_backbone(), C, log_information=False)
    model.compile(optimizer=keras.optimizers.SGD(0.5, use_ema=True, ema_momentum=0.9))
    x, y = _batch(0)
    images, labels = _batch(5)[0]["labeled"], _batch(5)[1]
    recorder = _Recorder()
    history = model.fit(
        tf.data.Dataset.from_tensors(({"labeled": x["labeled"]}, y)).repeat(),
        steps_per_epoch=1,
        epochs=3,
        validation_data=(images, labels),
        callbacks=[keras.callbacks.SwapEMAWeights(), recorder],
        verbose=0,
    ).history
    # Keras' EMA: the first step copies the weights, then m * average + (1 - m) * weights.
    for i, got in enumerate(recorder.averages[-1]):
        w1, w2, w3 = (raw[i] for raw in recorder.raw)
        want = 0.9 * (0.9 * w1 + 0.1 * w2) + 0.1 * w3
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The last validation used the averaged weights (BatchNorm statistics are the model's).
    for variable, average in zip(model.trainable_variables, recorder.averages[-1], strict=True):
        np.testing.assert_allclose(to_numpy(variable), average)  # fit ends on the average
    with_average = model.evaluate(images, labels, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(history["val_loss"][-1], with_average, rtol=1e-5)
    for variable, raw in zip(model.trainable_variables, recorder.raw[-1], strict=True):
        variable.assign(raw)
    with_raw = model.evaluate(images, labels, verbose=0, return_dict=True)["loss"]
    assert abs(with_raw - with_average) > 1e-4


def test_bad_arguments_raise_clear_errors():
    backbone = _backbone()
    with pytest.raises(ValueError, match=r"`threshold` must be > 0.0 and <= 1.0"):
        FixMatch(backbone, C, threshold=1.5)
    with pytest.raises(ValueError, match="`sat_momentum` must be < 1"):
        FreeMatch(backbone, C, sat_momentum=1.0)
    with pytest.raises(ValueError, match="`lambda_f` must be >= 0"):
        FreeMatch(backbone, C, lambda_f=-1)
    with pytest.raises(ValueError, match="`mir_weight` must be a number"):
        FixMatch(backbone, C, mir_weight="high")
    with pytest.raises(ValueError, match="`num_classes` must be an integer >= 2"):
        FixMatch(backbone, 1)
    with pytest.raises(ValueError, match="`labels_per_class` must be smaller than"):
        ssl_data.split_labeled(np.arange(20) % 4, 5)
    with pytest.raises(ValueError, match="`labels_per_class` must be a positive integer"):
        ssl_data.split_labeled(np.arange(20) % 4, 0)
    with pytest.raises(ValueError, match="`uratio` must be a positive integer"):
        ssl_data.semi_supervised_dataset(np.zeros((4, 6, 6, 1)), np.arange(4), uratio=0)
    model = FixMatch(backbone, C)
    with pytest.raises(ValueError, match="needs 'unlabeled_weak' and 'unlabeled_strong'"):
        model({"labeled": np.zeros((2, 6, 6, 1), "float32")})


# --------------------------------------------------------------------------- #
# Data and program
# --------------------------------------------------------------------------- #


# The pipeline is tf.data whatever the backend; under JAX, Keras takes about 25 s to
# trace RandAugment into it (test_program_runs_and_writes_outputs still covers JAX).
@pytest.mark.skipif(BACKEND == "jax", reason="slow RandAugment tracing under JAX")
def test_split_and_views():
    labels = np.repeat(np.arange(C), 10)
    labeled, unlabeled = ssl_data.split_labeled(labels, 3, seed=1)
    assert np.array_equal(np.bincount(labels[labeled]), [3] * C)
    assert np.array_equal(np.sort(np.concatenate([labeled, unlabeled])), np.arange(len(labels)))
    assert np.array_equal(ssl_data.split_labeled(labels, 3, seed=1)[0], labeled)
    assert not np.array_equal(ssl_data.split_labeled(labels, 3, seed=2)[0], labeled)

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(len(labels), 8, 8, 1)).astype("float32") * 2 - 0.5  # range [-0.5, 1.5]
    dataset = ssl_data.semi_supervised_dataset(
        x[labeled], labels[labeled], x[unlabeled], batch_size=4, uratio=2,
        unlabeled_labels=labels[unlabeled], num_ops=1, seed=0,
    )  # fmt: skip
    batch, y = next(iter(dataset))
    assert batch["labeled"].shape == (4, 8, 8, 1) and y.shape == (4,)
    for key in ("unlabeled_weak", "unlabeled_strong"):
        assert batch[key].shape == (8, 8, 8, 1)
        values = batch[key].numpy()
        assert values.min() >= x.min() - 1e-5 and values.max() <= x.max() + 1e-5
    assert set(batch["unlabeled_labels"].numpy()) <= set(labels)
    assert not np.allclose(batch["unlabeled_weak"].numpy(), batch["unlabeled_strong"].numpy())
    supervised = ssl_data.semi_supervised_dataset(x[labeled], labels[labeled], batch_size=4)
    only, _ = next(iter(supervised))
    assert set(only) == {"labeled"}


def test_hold_out_validation_is_a_fixed_disjoint_draw():
    validation, rest = train.hold_out_validation(50, 8)
    assert len(validation) == 8 and len(rest) == 42
    assert np.array_equal(np.sort(np.concatenate([validation, rest])), np.arange(50))
    again, _ = train.hold_out_validation(50, 8)
    assert np.array_equal(again, validation)  # independent of any run seed
    assert not np.array_equal(train.hold_out_validation(50, 8, seed=1)[0], validation)
    with pytest.raises(ValueError, match="`validation_samples` must be smaller than"):
        train.hold_out_validation(50, 50)


def test_program_runs_and_writes_outputs(tmp_path):
    out = tmp_path / "run"
    summary = train.main(
        [
            "--dataset", "digits", "--algorithm", "freematch", "--labels-per-class", "2",
            "--model", "wrn10_1", "--width", "0.25", "--batch-size", "4", "--uratio", "2",
            "--steps", "4", "--eval-every", "2", "--randaugment-ops", "1", "--test-samples", "40",
            "--validation-samples", "30", "--mir-weight", "0.1",
            "--output", str(out), "--verbose", "0",
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
    np.testing.assert_allclose(history["test_loss"][-1], results["test_loss"], rtol=1e-5)
    best = results["best_validation"]
    epoch = int(np.argmax(history["val_accuracy"]))
    assert best["epoch"] == epoch + 1 and best["step"] == 2 * (epoch + 1)
    assert best["test_accuracy"] == history["test_accuracy"][epoch]
    loaded = keras.saving.load_model(os.fspath(out / "model.keras"), safe_mode=True)
    assert isinstance(loaded, FreeMatch)


def test_steps_not_a_multiple_of_eval_every_runs_exactly_steps(tmp_path):
    out = tmp_path / "run"
    train.main(
        [
            "--dataset", "digits", "--algorithm", "supervised", "--labels-per-class", "2",
            "--model", "wrn10_1", "--width", "0.25", "--batch-size", "4",
            "--steps", "5", "--eval-every", "3", "--test-samples", "20",
            "--output", str(out), "--verbose", "0",
        ]
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["steps"] == 5
    # Two evaluation periods: 3 steps, then the last, shorter one of 2.
    assert len(results["history"]["val_accuracy"]) == 2
    loaded = keras.saving.load_model(os.fspath(out / "model.keras"), safe_mode=True)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 5


def test_deterministic_reruns_are_bit_identical(tmp_path):
    # Two processes: op determinism is process-wide and cannot be switched off again.
    # Without --deterministic TensorFlow's threads reorder sums and the random crops'
    # draws of the parallel tf.data map, and the same command gives another history.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = []
    for name in ("first", "second"):
        subprocess.run(
            [
                sys.executable, "-m", "recipes.semi_supervised", "--dataset", "digits",
                "--algorithm", "supervised", "--labels-per-class", "2", "--model", "wrn10_1",
                "--width", "0.25", "--batch-size", "4", "--steps", "6", "--eval-every", "3",
                "--test-samples", "20", "--validation-samples", "20", "--deterministic",
                "--output", str(tmp_path / name), "--verbose", "0",
            ],
            check=True, cwd=root, capture_output=True,
        )  # fmt: skip
        runs.append(json.loads((tmp_path / name / "results.json").read_text()))
    assert runs[0]["settings"]["deterministic"] is True
    assert runs[0]["history"] == runs[1]["history"]  # every logged number, bit for bit
    assert runs[0]["test_accuracy"] == runs[1]["test_accuracy"]


def _tiny_run(tmp_path, verbose):
    return [
        "--dataset", "digits", "--algorithm", "supervised", "--labels-per-class", "2",
        "--model", "wrn10_1", "--width", "0.25", "--batch-size", "4",
        "--steps", "4", "--eval-every", "2", "--test-samples", "20",
        "--output", str(tmp_path / f"verbose{verbose}"), "--verbose", str(verbose),
    ]  # fmt: skip


def test_a_first_run_says_what_it_builds_and_compiles_before_the_first_step(tmp_path, capsys):
    # The default (WRN-28-2) spends a minute or more in its first step on a CPU:
    # lines before it say what is happening, and the first step's time comes with the bar.
    train.main(_tiny_run(tmp_path, 1))
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
    # --verbose 0 stays quiet.
    train.main(_tiny_run(tmp_path, 0))
    quiet = capsys.readouterr().out
    assert "Compiling the training step" not in quiet and "Loading digits" not in quiet


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
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as f:
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


# --------------------------------------------------------------------------- #
# Study driver
# --------------------------------------------------------------------------- #


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
        "--study-dir", str(tmp_path / "study"), "--output", str(tmp_path / "runs"),
        "--doc", str(doc), "--figure", str(tmp_path / "study.png"), *more,
    ]  # fmt: skip


def test_committed_study_records_regenerate_the_docs_tables(tmp_path):
    # Every planned cell of the committed study has its record, run with the planned
    # command (else `stage_cells` stops), and the report written from the records
    # is, byte for byte, the one in docs/semi_supervised.md.
    with open(experiment.DOC) as f:
        committed = f.read()
    doc = tmp_path / "semi_supervised.md"
    head, tables = committed.split("<!-- experiment:start -->")
    doc.write_text(f"{head}<!-- experiment:start -->{tables.replace('| 40 | FreeMatch |', '|', 1)}")
    args = experiment.build_parser().parse_args(["--doc", str(doc), "--figure", ""])
    for stage in ("select", "grid"):
        cells = experiment.stage_cells(args, stage)
        assert cells and all(finished for _, _, finished in cells), stage
    experiment.write_report(args)
    assert doc.read_text() == committed


# The driver's bookkeeping (plan, skip, records, report) is backend-independent and
# its runs are `train.main`, which test_program_runs_and_writes_outputs covers on
# every backend; here it runs on TensorFlow only (RandAugment tracing takes ~25 s
# per run under JAX).
@pytest.mark.skipif(BACKEND != "tensorflow", reason="backend-independent driver logic")
def test_study_driver_resumes_and_skips_finished_cells(tmp_path, capsys):
    study = tmp_path / "study"
    first = experiment.main(_study(tmp_path, "--max-runs", "2"), in_process=True)
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
    args = experiment.build_parser().parse_args(_study(tmp_path, "--max-runs", "1"))
    assert experiment.run(args, in_process=True) == ["grid-20-supervised-s1"]
    for name, content in stamps.items():
        assert (study / name).read_bytes() == content, name  # not rerun
    capsys.readouterr()
    assert experiment.run(experiment.build_parser().parse_args(_study(tmp_path, "--dry-run"))) == [
        "grid-20-freematch-s1"
    ]
    # The dry run prints every cell's command, the finished ones marked with their file.
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and printed[0].startswith(command)
    assert [line.split("# finished: ")[-1] for line in printed if "# finished" in line] == [
        "grid-20-supervised-s0.json",
        "grid-20-freematch-s0.json",
        "grid-20-supervised-s1.json",
    ]
    assert "--seed 1 --algorithm freematch" in printed[3] and "#" not in printed[3]
    text = experiment.write_report(args)
    assert "| 20 | supervised | 2/2 |" in text and "| 20 | FreeMatch | 1/2 |" in text
    assert "FreeMatch − supervised | 1 | s0:" in text
    doc = (tmp_path / "doc.md").read_text()
    assert "old" not in doc and doc.endswith("<!-- experiment:end -->\nend\n")
    assert (tmp_path / "study.png").stat().st_size > 0

    # Other settings: the recorded cells are not silently reused.
    with pytest.raises(SystemExit, match="was run with other settings"):
        experiment.main(_study(tmp_path, "--steps", "3", "--dry-run"))


def test_study_paired_differences_and_t_test_match_numpy(tmp_path):
    # Records with known accuracies: FreeMatch = supervised + (3, 1, 5) points at the last
    # step, + (2, 2, 2.6) at the best-validation epoch; the tail is the last 4 evaluations.
    args = experiment.build_parser().parse_args(_study(tmp_path, "--seeds", "0", "1", "2"))
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
    _, a, b = experiment.paired(records, "FreeMatch", "supervised", 2)
    np.testing.assert_allclose(a - b, [3.0, 1.0, 5.0], atol=1e-9)
    _, a, b = experiment.paired(records, "FreeMatch", "supervised", 2, key="tail")
    tail = [
        100 * np.mean(records[2, m][s]["history"]["test_accuracy"][-4:])
        for m in ("FreeMatch", "supervised")
        for s in range(3)
    ]
    np.testing.assert_allclose(np.concatenate([a, b]), tail, atol=1e-9)

    def t_test(diffs):  # two-sided one-sample t-test of the differences, by hand
        t = np.mean(diffs) / (np.std(diffs, ddof=1) / np.sqrt(len(diffs)))
        return 2 * stats.t.sf(abs(t), len(diffs) - 1)

    row = [r for r in experiment.paired_table(records, args).splitlines() if "FreeMatch −" in r]
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert cells[2:5] == ["3", "s0: +3.0, s1: +1.0, s2: +5.0", "3.0 ± 2.0"]
    # t = 3 / (2 / sqrt(3)) = 2.60 with 2 degrees of freedom
    assert cells[5] == f"{t_test([3.0, 1.0, 5.0]):.2f}" == "0.12"
    assert cells[6] == "2.2 ± 0.3" and cells[7] == f"{t_test([2.0, 2.0, 2.6]):.2f}"
    diffs = np.subtract(tail[:3], tail[3:])
    assert cells[8] == f"{diffs.mean():.1f} ± {diffs.std(ddof=1):.1f}"


@pytest.mark.skipif(BACKEND != "tensorflow", reason="backend-independent driver logic")
def test_study_driver_runs_cells_concurrently_with_limited_threads(tmp_path):
    # Two real cells as two processes at once (`--jobs 2`), each with its own log.
    experiment.main(_study(tmp_path, "--seeds", "0", "--jobs", "2"))
    study, runs = tmp_path / "study", tmp_path / "runs"
    threads = max(1, (os.cpu_count() or 1) // 2)
    for name in ("grid-20-supervised-s0", "grid-20-freematch-s0"):
        record = json.loads((study / f"{name}.json").read_text())
        assert (record["concurrent_runs"], record["threads_per_run"]) == (2, threads)
        assert (runs / name / "results.json").exists()
        assert "Epoch 2/2" in (runs / f"{name}.log").read_text()  # the run's progress
    text = experiment.write_report(experiment.build_parser().parse_args(_study(tmp_path)))
    assert f"2 of them ran 2 at a time with {threads} thread(s) each" in text

    env = experiment.thread_environment(1)
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert env[name] == "1"
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert experiment.threads_per_run(1) is None  # one run: no limit
    with pytest.raises(SystemExit, match="--jobs must be a positive integer, got 0"):
        experiment.main(_study(tmp_path, "--jobs", "0"))


def test_study_selects_the_weight_on_validation_accuracy(tmp_path, capsys):
    # Selection records (as run_cell writes them) with known validation accuracies.
    args = experiment.build_parser().parse_args(
        _study(tmp_path, "--methods", "FreeMatch", experiment.MIRHDR, "--weights", "0.1", "0.5",
               "1", "--dry-run")
    )  # fmt: skip
    cells = [c for c in experiment.plan(args) if c.stage == "select"]
    assert [c.weight for c in cells] == [0.1, 0.5, 1.0]
    assert all(c.seed not in args.seeds for c in cells)
    assert experiment.selected_weight(args)[0] is None  # nothing finished
    study = tmp_path / "study"
    study.mkdir()
    for cell, val in zip(cells, (0.60, 0.70, 0.70), strict=True):
        argv = experiment.command(cell, args)
        record = {"argv": argv, "final": {"val_accuracy": val}}
        (study / f"{cell.name}.json").write_text(json.dumps(record))
    weight, table = experiment.selected_weight(args)
    assert weight == 0.5  # the best; the earliest candidate of a tie
    assert table == [(0.1, 0.60), (0.5, 0.70), (1.0, 0.70)]
    planned = experiment.run(args)
    assert planned[0] == "grid-20-freematch-s0"
    out = capsys.readouterr().out
    assert "--mir-weight 0.5 --hdr-weight 0.5" in out

    # One driver per study: a second one stops before running anything.
    held = experiment.lock(args)
    try:
        with pytest.raises(SystemExit, match="another driver is running this study"):
            experiment.main(_study(tmp_path, "--max-runs", "1"))
    finally:
        held.close()
    assert sorted(p.name for p in study.glob("grid-*.json")) == []
