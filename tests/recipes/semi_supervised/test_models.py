"""recipes.semi_supervised trainers under `fit`: logs against float64 NumPy, resume, EMA."""

import keras
import numpy as np
import pytest

from keras_nc.models import CollapseClassifier
from recipes.semi_supervised import data as ssl_data
from recipes.semi_supervised.models import FixMatch, FreeMatch, SemiSupervisedModel
from tests.helpers import to_numpy
from tests.recipes.semi_supervised.support import (
    COUNT_ATOL,
    FORWARD_RTOL,
    STATE_ATOL,
    C,
    backbone,
    batch,
    fairness_cross_entropy,
    fit_step,
    masked_ce,
    sat,
    softmax,
    state,
)
from tests.tolerances import float32_tolerance

# One SGD step from the same weights on two copies of a model: the same float32
# operations in another order (the loaded model's new compiled step); a few ulps of
# each weight and optimizer slot of the tiny network (fan-in at most 36 * 20 rows).
RESUME_TOL = float32_tolerance(terms=20 * 36)
# Keras' EMA of 3 steps (two products and a sum per step) of weights of order 1.
EMA_TOL = float32_tolerance(terms=8)


def test_freematch_fit_updates_sat_state_and_logs_like_numpy():
    model = FreeMatch(backbone(), C, sat_momentum=0.9, lambda_f=0.5, mir_weight=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    sat_state = (1 / C, np.full(C, 1 / C), np.full(C, 1 / C))
    for step in range(2):
        x, y = batch(step)
        # The forward pass of the step: same weights, batch statistics of the joint batch.
        out = model(x, training=True)
        p = softmax(to_numpy(out["weak_logits"]))
        p_strong = softmax(to_numpy(out["strong_logits"]))
        *sat_state, _, mask = sat(p, *sat_state, 0.9)
        logs = fit_step(model, (x, y))
        for variable, want in zip(
            (model.time_p, model.p_model, model.label_hist), sat_state, strict=True
        ):
            np.testing.assert_allclose(to_numpy(variable), want, rtol=FORWARD_RTOL, atol=STATE_ATOL)
        np.testing.assert_allclose(logs["mask_ratio"][0], mask.mean(), atol=COUNT_ATOL)
        np.testing.assert_allclose(logs["threshold"][0], sat_state[0], rtol=FORWARD_RTOL)
        want_fair = -fairness_cross_entropy(p_strong, mask, sat_state[1], sat_state[2])
        np.testing.assert_allclose(
            logs["fairness_loss"][0], want_fair, rtol=FORWARD_RTOL, atol=STATE_ATOL
        )
        truth = x["unlabeled_labels"]
        weight = mask * (truth >= 0)
        if weight.sum():
            want_acc = np.sum((p.argmax(1) == truth) * weight) / weight.sum()
            np.testing.assert_allclose(logs["pseudo_accuracy"][0], want_acc, atol=COUNT_ATOL)
    for key in ("loss", "sup_loss", "unsup_loss", "mir", "hdr", "accuracy"):
        assert np.isfinite(logs[key][0]), key
    # Evaluation on plain images: logits in, loss and accuracy out, no training
    # trackers; the MIR/HDR term of the loss is logged as CollapseClassifier logs
    # every collapse loss term.
    results = model.evaluate(x["labeled"], y, verbose=0, return_dict=True)
    assert set(results) == {"loss", "accuracy", "information_regularizer_loss"}


def test_fixmatch_fit_step_loss_matches_numpy():
    model = FixMatch(backbone(), C, threshold=0.6, log_information=False)
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # frozen weights: the logs are exact
    x, y = batch(3)
    out = model(x, training=True)
    p = softmax(to_numpy(out["weak_logits"]))
    mask = (p.max(axis=1) >= 0.6).astype(np.float64)
    unsup = masked_ce(to_numpy(out["strong_logits"]), p.argmax(axis=1), mask)
    sup = masked_ce(to_numpy(out["logits"]), y, np.ones(len(y)))
    logs = fit_step(model, (x, y))
    np.testing.assert_allclose(logs["unsup_loss"][0], unsup, rtol=FORWARD_RTOL)
    np.testing.assert_allclose(logs["sup_loss"][0], sup, rtol=FORWARD_RTOL)
    np.testing.assert_allclose(logs["loss"][0], sup + unsup, rtol=FORWARD_RTOL)
    np.testing.assert_allclose(logs["mask_ratio"][0], mask.mean(), atol=COUNT_ATOL)
    assert "mir" not in logs


def test_fairness_sign_negated_minimises_the_cross_entropy():
    # Frozen weights: the logged fairness term and the total loss are exact.
    model = FreeMatch(backbone(), C, lambda_f=0.5, fairness_sign="negated", log_information=False)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x, y = batch(4)
    out = model(x, training=True)
    p = softmax(to_numpy(out["weak_logits"]))
    sat_state = (1 / C, np.full(C, 1 / C), np.full(C, 1 / C))
    *sat_state, _, mask = sat(p, *sat_state, 0.999)
    p_strong = softmax(to_numpy(out["strong_logits"]))
    cross_entropy = fairness_cross_entropy(p_strong, mask, sat_state[1], sat_state[2])
    assert mask.sum() > 0 and abs(cross_entropy) > 1e-3  # a term that could have the wrong sign
    sup = masked_ce(to_numpy(out["logits"]), y, np.ones(len(y)))
    unsup = masked_ce(to_numpy(out["strong_logits"]), p.argmax(axis=1), mask)
    logs = fit_step(model, (x, y))
    np.testing.assert_allclose(
        logs["fairness_loss"][0], cross_entropy, rtol=FORWARD_RTOL, atol=STATE_ATOL
    )
    np.testing.assert_allclose(
        logs["loss"][0], sup + unsup + 0.5 * cross_entropy, rtol=FORWARD_RTOL
    )
    assert model.get_config()["fairness_sign"] == "negated"
    with pytest.raises(ValueError, match="`fairness_sign` must be one of"):
        FreeMatch(backbone(), C, fairness_sign="+")


def test_former_fairness_sign_spelling_warns_and_means_negated():
    with pytest.warns(DeprecationWarning, match='use `fairness_sign="negated"`'):
        model = FreeMatch(backbone(), C, fairness_sign="spec")
    assert model.fairness_sign == "negated"
    assert model.get_config()["fairness_sign"] == "negated"


def test_save_load_resume_round_trip_restores_the_ema_state(tmp_path):
    # With the regulariser on the confident samples too: a reloaded model that
    # recompiled it twice into its loss would step differently below.
    model = FreeMatch(
        backbone(), C, sat_momentum=0.9, mir_weight=0.2, hdr_weight=0.1,
        unlabeled_information=True,
    )  # fmt: skip
    assert isinstance(model, CollapseClassifier)
    model.compile()  # SGD with use_ema=True, ema_momentum=0.999
    fit_step(model, batch(0))
    path = str(tmp_path / "freematch.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, FreeMatch) and loaded.sat_momentum == 0.9
    assert (loaded.mir_weight, loaded.hdr_weight) == (0.2, 0.1) and loaded.unlabeled_information
    assert loaded.optimizer.use_ema and loaded.optimizer.ema_momentum == 0.999
    before = state(model)
    assert not np.allclose(to_numpy(model.time_p), 1 / C)  # the state has moved
    for got, want in zip(state(loaded), before, strict=True):
        np.testing.assert_array_equal(got, want)
    # Resuming: one more step on each gives the same state.
    fit_step(model, batch(1))
    fit_step(loaded, batch(1))
    for got, want in zip(state(loaded), state(model), strict=True):
        np.testing.assert_allclose(got, want, rtol=RESUME_TOL, atol=RESUME_TOL)


class _Recorder(keras.callbacks.Callback):
    """Raw weights and their averages at every epoch end (after the EMA evaluation)."""

    def __init__(self):
        super().__init__()
        self.raw, self.averages = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.raw.append([to_numpy(v) for v in self.model.trainable_variables])
        # Keras names the optimizer's weight averages `<variable path>_average`.
        variables = self.model.optimizer.variables
        averages = [v for v in variables if v.name.endswith("_average")]
        assert len(averages) == len(self.model.trainable_variables)
        self.averages.append([to_numpy(v) for v in averages])


def test_evaluation_uses_the_ema_weights():
    import tensorflow as tf

    model = SemiSupervisedModel(backbone(), C, log_information=False)
    model.compile(optimizer=keras.optimizers.SGD(0.5, use_ema=True, ema_momentum=0.9))
    x, y = batch(0)
    images, labels = batch(5)[0]["labeled"], batch(5)[1]
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
        np.testing.assert_allclose(got, want, rtol=EMA_TOL, atol=EMA_TOL)
    # The last validation used the averaged weights (BatchNorm statistics are the model's).
    for variable, average in zip(model.trainable_variables, recorder.averages[-1], strict=True):
        np.testing.assert_array_equal(to_numpy(variable), average)  # fit ends on the average
    with_average = model.evaluate(images, labels, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(history["val_loss"][-1], with_average, rtol=FORWARD_RTOL)
    for variable, raw in zip(model.trainable_variables, recorder.raw[-1], strict=True):
        variable.assign(raw)
    with_raw = model.evaluate(images, labels, verbose=0, return_dict=True)["loss"]
    assert abs(with_raw - with_average) > 10 * FORWARD_RTOL * with_average


def test_bad_arguments_raise_clear_errors():
    net = backbone()
    with pytest.raises(ValueError, match=r"`threshold` must be > 0.0 and <= 1.0"):
        FixMatch(net, C, threshold=1.5)
    with pytest.raises(ValueError, match="`sat_momentum` must be < 1"):
        FreeMatch(net, C, sat_momentum=1.0)
    with pytest.raises(ValueError, match="`lambda_f` must be >= 0"):
        FreeMatch(net, C, lambda_f=-1)
    with pytest.raises(ValueError, match="`mir_weight` must be a number"):
        FixMatch(net, C, mir_weight="high")
    with pytest.raises(ValueError, match="`num_classes` must be an integer >= 2"):
        FixMatch(net, 1)
    with pytest.raises(ValueError, match="`labels_per_class` must be smaller than"):
        ssl_data.split_labeled(np.arange(20) % 4, 5)
    with pytest.raises(ValueError, match="`labels_per_class` must be a positive integer"):
        ssl_data.split_labeled(np.arange(20) % 4, 0)
    with pytest.raises(ValueError, match="`uratio` must be a positive integer"):
        ssl_data.semi_supervised_dataset(np.zeros((4, 6, 6, 1)), np.arange(4), uratio=0)
    model = FixMatch(net, C)
    with pytest.raises(ValueError, match="needs 'unlabeled_weak' and 'unlabeled_strong'"):
        model({"labeled": np.zeros((2, 6, 6, 1), "float32")})
