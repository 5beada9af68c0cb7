"""`keras_nc.pruning.sparsity_path` and `plot_sparsity`."""

import keras
import numpy as np
import pytest

from keras_nc.metrics import MIR
from keras_nc.models import CollapseClassifier
from keras_nc.pruning import plot_sparsity, sparsity_path
from tests.helpers import to_numpy
from tests.tolerances import float32_tolerance


def model_and_data():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,))
    backbone = keras.Model(inputs, keras.layers.Dense(6, activation="relu")(inputs))
    model = CollapseClassifier(backbone, num_classes=3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)).astype("float32")
    return model, (x, (np.arange(30) % 3).astype("int32"))


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_rows_evaluate_each_pruned_copy_and_fine_tune_runs_first():
    model, (x, y) = model_and_data()
    before = [to_numpy(v) for v in model.weights]
    calls = []

    def fine_tune(pruned, masks):
        calls.append(sum(int(np.sum(~m)) for m in masks.values()))
        pruned.get_layer("head").bias.assign(np.array([50.0, 0.0, 0.0]))  # predicts class 0

    sparsities = [0.0, 0.5, 0.9]
    rows = sparsity_path(model, (x, y), sparsities, loss=LOSS, metrics=["accuracy", MIR()],
                         batch_size=10, verbose=0)  # fmt: skip
    assert [row["sparsity"] for row in rows] == sparsities
    total = 5 * 6 + 6 * 3  # the backbone's and the head's kernels
    for row, sparsity in zip(rows, sparsities, strict=True):
        # The measured fraction of zeros: an integer count over `total`, rounded once.
        assert row["zeros"] == round(sparsity * total) / total
        assert {"loss", "accuracy", "mir"} <= set(row)
    # Unpruned: the model's own evaluation (same weights, same batches of 10: the same
    # float32 operations, so the same values; MIR is averaged over the batches).
    model.compile(loss=LOSS, metrics=["accuracy", MIR()])
    own = model.evaluate(x, y, verbose=0, return_dict=True, batch_size=10)
    assert rows[0]["accuracy"] == float(own["accuracy"])
    assert rows[0]["mir"] == float(own["mir"])
    tuned = sparsity_path(model, (x, y), sparsities, fine_tune=fine_tune, verbose=0)
    assert calls == [round(s * total) for s in sparsities]
    # After `fine_tune` every copy predicts class 0: accuracy is exactly its share, 10/30.
    assert all(row["accuracy"] == np.float32(10 / 30) for row in tuned)
    for value, saved in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(to_numpy(value), saved)


def test_bad_sparsities_are_refused_before_any_work():
    model, data = model_and_data()
    with pytest.raises(ValueError, match=r"sparsity=1\.0"):
        sparsity_path(model, data, [0.5, 1.0], loss=LOSS, verbose=0)
    with pytest.raises(ValueError, match="`scope`"):
        sparsity_path(model, data, [0.5], scope="model", loss=LOSS, verbose=0)


def test_plot_sparsity_draws_each_present_key(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"sparsity": s, "accuracy": 1 - s, "mir": s / 2} for s in (0.0, 0.5, 0.9)]
    path = tmp_path / "sparsity.png"
    figure = plot_sparsity({"direct": rows, "fine-tuned": rows}, path_png=str(path))
    assert [ax.get_title() for ax in figure.axes] == ["accuracy", "mir"]
    assert len(figure.axes[0].lines) == 2 and path.stat().st_size > 0
    np.testing.assert_array_equal(figure.axes[1].lines[0].get_ydata(), [0.0, 0.25, 0.45])
    with pytest.raises(ValueError, match="No row has any"):
        plot_sparsity(rows, keys=("nc1",))


def test_batchnorm_data_recomputes_each_pruned_copys_statistics():
    # Dense (no bias) -> BatchNormalization -> head: after pruning, the moving mean must be
    # the average over the batches of the pruned kernel's outputs' batch means.
    keras.utils.set_random_seed(5)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(4, use_bias=False, name="dense")(inputs)
    features = keras.layers.BatchNormalization(name="bn")(hidden)
    model = CollapseClassifier(keras.Model(inputs, features), num_classes=3)
    x = np.random.default_rng(1).normal(loc=2.0, size=(30, 5)).astype("float32")
    y = (np.arange(30) % 3).astype("int32")
    copies = []
    keep = lambda pruned, masks: copies.append(pruned)  # noqa: E731
    rows = sparsity_path(
        model,
        (x, y),
        [0.0, 0.5],
        loss=LOSS,
        batchnorm_data=x,
        batch_size=10,
        fine_tune=keep,
        verbose=0,
    )
    assert len(rows) == 2
    for copy in copies:
        kernel = to_numpy(copy.backbone.get_layer("dense").kernel).astype("float64")
        outputs = x.astype("float64") @ kernel
        expected = np.mean([outputs[i : i + 10].mean(axis=0) for i in range(0, 30, 10)], axis=0)
        moving = to_numpy(copy.backbone.get_layer("bn").moving_mean)
        # Dot products of length 5 and a mean of 10 rows, then of 3 batches, in float32.
        bound = float32_tolerance(terms=5 + 10 + 3, scale=np.abs(outputs).max())
        assert np.max(np.abs(moving - expected)) <= bound
    # Without `batchnorm_data` the copies keep the model's (initial) moving mean of 0.
    copies.clear()
    sparsity_path(model, (x, y), [0.5], loss=LOSS, fine_tune=keep, verbose=0)
    np.testing.assert_array_equal(to_numpy(copies[0].backbone.get_layer("bn").moving_mean), 0.0)
