"""`keras_nc.paths.interpolation_path`: convex and two-basin cases, a model with itself."""

import keras
import numpy as np
import pytest

import keras_nc
from keras_nc import paths
from tests import reference
from tests.helpers import to_numpy
from tests.paths import models
from tests.tolerances import cross_entropy_tolerance, logit_tolerance

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _forward64(weights, x):
    """The float64 forward pass of `models.sequential`/`functional` (or one Dense layer)."""
    h = x.astype(np.float64)
    for index in range(0, len(weights), 2):
        h = h @ weights[index].astype(np.float64) + weights[index + 1].astype(np.float64)
        if index + 2 < len(weights):
            h = np.maximum(h, 0.0)
    return h


def _reference_path(model_a, model_b, x, y, alphas):
    """Float64 losses at the float32 weights the library sets, and their float32 bounds."""
    losses, bounds = [], []
    for alpha in alphas:
        weights = [
            ((1 - alpha) * a.astype(np.float64) + alpha * b.astype(np.float64)).astype(np.float32)
            for a, b in zip(model_a.get_weights(), model_b.get_weights(), strict=True)
        ]
        logits = _forward64(weights, x)
        losses.append(reference.cross_entropy(logits, y))
        # The loss's own round-off, plus the float32 logits' (fan-in x layers terms): the
        # cross-entropy moves by at most twice the largest logit error.
        fan_in = sum(w.shape[0] for w in weights[::2]) + len(weights) // 2
        bounds.append(
            cross_entropy_tolerance(logits, y, losses[-1]) + 2 * logit_tolerance(logits, fan_in)
        )
    rows = [{"alpha": a, "loss": value} for a, value in zip(alphas, losses, strict=True)]
    # A barrier combines three values (a point and the two end points).
    return paths.loss_barrier(rows), 3 * max(bounds)


def test_convex_case_linear_softmax_regression_has_no_barrier():
    # The cross-entropy of a linear model is convex in its weights: below its chord.
    x, y = models.data(n=32)
    model_a = keras.Sequential([keras.Input((models.INPUT_DIM,)), keras.layers.Dense(3)])
    model_b = keras.models.clone_model(model_a)
    rng = np.random.default_rng(3)
    model_b.set_weights([3 * rng.normal(size=w.shape).astype("float32") for w in model_a.weights])
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    path = paths.interpolation_path(
        model_a, model_b, (x, y), alphas, loss=LOSS, batch_size=len(x), verbose=0
    )
    expected, bound = _reference_path(model_a, model_b, x, y, alphas)
    assert expected == 0.0
    assert 0.0 <= paths.loss_barrier(path) <= bound
    ends = (path[0]["loss"], path[-1]["loss"])
    assert abs(ends[0] - ends[1]) > bound  # the models differ: the line is not flat


def _permuted(model):
    """The same MLP with its hidden units permuted (a cyclic shift): the same function."""
    kernel, bias, head, head_bias = model.get_weights()
    order = np.roll(np.arange(kernel.shape[1]), 1)
    permuted = keras.models.clone_model(model)
    permuted.set_weights([kernel[:, order], bias[order], head[order], head_bias])
    return permuted


def test_two_basins_a_permuted_copy_gives_a_clearly_positive_barrier():
    x, _ = models.data(n=48)
    model_a = models.functional(4)
    kernel, bias, head, head_bias = model_a.get_weights()
    model_a.set_weights([kernel, bias, 4 * head, head_bias])  # confident predictions
    y = np.argmax(to_numpy(model_a(x)), axis=1).astype("int32")
    model_b = _permuted(model_a)
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    path = paths.interpolation_path(
        model_a, model_b, (x, y), alphas, loss=LOSS, batch_size=len(x), verbose=0
    )
    expected, bound = _reference_path(model_a, model_b, x, y, alphas)
    assert expected > 10 * bound  # clearly positive, far above round-off
    assert abs(paths.loss_barrier(path) - expected) <= bound
    assert paths.barrier(path, "loss") == paths.loss_barrier(path)


def test_a_model_with_itself_has_the_same_values_everywhere_and_no_barrier():
    # Its weights are exact at every alpha (tests/paths/test_interpolation.py), so the
    # same float32 evaluation runs at every point: equal values, barriers exactly 0.
    x, y = models.data()
    model = models.collapse_classifier(0)
    model.compile(metrics=["accuracy", keras_nc.metrics.MIR(), keras_nc.metrics.NC1()])
    path = paths.interpolation_path(
        model, model, (x, y), alphas=3, batchnorm_data=x, batch_size=8, verbose=0
    )
    assert [row["alpha"] for row in path] == [0.0, 0.5, 1.0]
    assert sorted(path[0]) == ["accuracy", "alpha", "loss", "mir", "nc1"]
    for row in path[1:]:
        assert {k: v for k, v in row.items() if k != "alpha"} == {
            k: v for k, v in path[0].items() if k != "alpha"
        }
    assert paths.loss_barrier(path) == 0.0 and paths.accuracy_barrier(path) == 0.0


def test_the_end_models_are_unchanged_and_the_progress_bar_counts_points(capsys):
    x, y = models.data()
    model_a, model_b = models.subclassed(0), models.subclassed(1)
    before = [w.copy() for w in model_a.get_weights() + model_b.get_weights()]
    path = paths.interpolation_path(
        model_a, model_b, (x, y), [0.0, 1.0, 1.5], loss=LOSS, metrics=["accuracy"], verbose=1
    )
    assert [row["alpha"] for row in path] == [0.0, 1.0, 1.5]
    assert "3/3" in capsys.readouterr().out
    for now, then in zip(model_a.get_weights() + model_b.get_weights(), before, strict=True):
        np.testing.assert_array_equal(now, then)


@pytest.mark.parametrize(
    "alphas, message",
    [
        (1, "at least 2"),
        (True, "int >= 2 or a sequence"),
        ([0.5, 1.0], "must include 0 and 1"),
        ([0.0, float("nan"), 1.0], "sequence of finite numbers"),
        ("abc", "sequence of finite numbers"),
    ],
)
def test_bad_alphas_are_refused(alphas, message):
    model = models.sequential(0)
    with pytest.raises(ValueError, match=message):
        paths.interpolation_path(model, model, models.data(), alphas, loss=LOSS, verbose=0)


def test_uncompiled_models_need_a_loss_or_metrics():
    model = models.sequential(0)
    with pytest.raises(ValueError, match="Neither model is compiled"):
        paths.interpolation_path(model, model, models.data(), verbose=0)


def test_plot_returns_a_figure_and_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = [
        {"alpha": a, "loss": 1.0 + a * (1 - a), "accuracy": 0.75 - a * (1 - a), "mir": 0.5}
        for a in (0.0, 0.5, 1.0)
    ]
    target = tmp_path / "path.png"
    figure = paths.plot_interpolation(path, path_png=target, title="two models")
    assert len(figure.axes) == 3  # loss, accuracy, mir; no hdr in the path
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    texts = [text.get_text() for ax in figure.axes for text in ax.texts]
    assert "loss barrier 0.25" in texts and "accuracy barrier 0.25" in texts
    with pytest.raises(ValueError, match="None of"):
        paths.plot_interpolation(path, keys=("nc1",))
