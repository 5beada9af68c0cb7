"""LayerwiseCollapse: per-layer values against float64 references of the sub-model's features.

Also: the models it accepts (functional, Sequential and subclassed backbones in
a CollapseClassifier; a plain functional keras.Model), the errors it raises when
`fit` starts, its logs, CSV and figure.
"""

import csv

import keras
import numpy as np
import pytest

import keras_nc
import tests.reference as ref
from keras_nc.callbacks import LayerwiseCollapse
from keras_nc.layerwise import LAYER_MEASURES
from tests.helpers import residual_backbone, to_numpy

C = 3


def _data(n_per_class=12, shape=(6, 6, 2)):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(C), n_per_class).astype("int32")
    centres = rng.normal(size=(C, *shape))
    x = (centres[y] + 0.8 * rng.normal(size=(len(y), *shape))).astype("float32")
    return x, y


def _classifier(backbone):
    keras.utils.set_random_seed(0)
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=C)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model


def _reference(z, y, head):
    """Every measure of `LAYER_MEASURES` from the layer's float64 features."""
    z = np.asarray(z, np.float64)
    nc = ref.neural_collapse(z, y, head, C)
    k_m, k_w = ref.class_pairing(z, y, head, C)
    means = np.stack([z[y == c].mean(0) for c in range(C)])
    nearest = np.argmin(((z[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    entropy = ref.entropy(ref.gram(z, center=True))
    return {
        "nc1": nc["nc1"],
        "cdnv": nc["cdnv"],
        "ncc_accuracy": float(np.mean(nearest == y)),
        "mir_class": ref.mir(k_m, k_w),
        "hdr_class": ref.hdr(k_m, k_w),
        "matrix_entropy": entropy,
        "effective_rank": float(np.exp(entropy)),
        "rank_me": ref.rank_me(z),
        "alpha_req": ref.alpha_req(z),
    }


TOLERANCES = {"nc1": 2e-3, "cdnv": 1e-4, "alpha_req": 1e-3}


def test_values_equal_float64_references_of_the_sub_model_features(tmp_path):
    model = _classifier(residual_backbone())
    x, y = _data()
    profile = LayerwiseCollapse(
        x, y, epochs=[2], batch_size=24, csv_path=str(tmp_path / "layers.csv")
    )
    history = model.fit(x, y, epochs=2, batch_size=12, callbacks=[profile], verbose=0).history
    assert profile.layer_names == ["stem_relu", "b1_out", "pool"]
    assert [(r["epoch"], r["layer"]) for r in profile.history] == [
        (2, "stem_relu"), (2, "b1_out"), (2, "pool"),
    ]  # fmt: skip
    head = to_numpy(model.head.kernel).T.astype("float64")
    features = profile.layer_features(x)  # the sub-model's pooled features of the whole set
    assert [f.shape[1] for f in features] == [4, 4, 4] == profile.widths
    # The last layer is the model's own features.
    np.testing.assert_allclose(features[-1], to_numpy(model.extract_features(x)), atol=1e-5)
    for row, z in zip(profile.history[-3:], features, strict=True):
        expected = _reference(z, y, head)
        for key in LAYER_MEASURES:
            tolerance = TOLERANCES.get(key, 2e-4)
            assert row[key] == pytest.approx(expected[key], rel=tolerance, abs=1e-5), key
        assert history[f"layerwise_{row['layer']}_nc1"] == [row["nc1"]]
    with open(tmp_path / "layers.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and float(rows[-1]["rank_me"]) == pytest.approx(row["rank_me"])


def test_sequential_backbone_and_chosen_epochs(tmp_path):
    pytest.importorskip("matplotlib")
    backbone = keras.Sequential(
        [keras.Input((6, 6, 2)), keras.layers.Flatten(name="flat"),
         keras.layers.Dense(6, activation="relu", name="hidden"),
         keras.layers.Dense(4, activation="relu", name="features")]
    )  # fmt: skip
    model = _classifier(backbone)
    x, y = _data()
    plot = tmp_path / "layers.png"
    profile = LayerwiseCollapse(x, y, layers=["hidden", "features"], epochs=[2],
                                batch_size=36, plot_path=str(plot))  # fmt: skip
    model.fit(x, y, epochs=2, batch_size=12, callbacks=[profile], verbose=0)
    assert sorted({r["epoch"] for r in profile.history}) == [2]
    assert plot.stat().st_size > 0
    z = profile.layer_features(x)[0]
    np.testing.assert_allclose(z, to_numpy(backbone.get_layer("hidden")(
        backbone.get_layer("flat")(x))), atol=1e-5)  # fmt: skip


def test_unbuilt_sequential_backbone_is_resolved_when_fit_starts():
    backbone = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(4, name="features")])
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=C)
    model.compile(optimizer="sgd")
    x, y = _data()
    profile = LayerwiseCollapse(x, y, layers=["features"])
    model.fit(x, y, epochs=1, batch_size=12, callbacks=[profile], verbose=0)
    assert [r["layer"] for r in profile.history] == ["features"]


def test_plain_functional_model():
    inputs = keras.Input((6, 6, 2))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    logits = keras.layers.Dense(C, name="logits")(hidden)
    model = keras.Model(inputs, logits)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = _data()
    profile = LayerwiseCollapse(x, y, layers=["hidden"], batch_size=36)
    history = model.fit(x, y, epochs=1, batch_size=12, callbacks=[profile], verbose=0).history
    head = to_numpy(model.get_layer("logits").kernel).T
    expected = _reference(profile.layer_features(x)[0], y, head)
    logged = history["layerwise_hidden_mir_class"][0]
    assert logged == pytest.approx(expected["mir_class"], abs=2e-4)


def test_errors_name_the_layer_or_the_backbone_when_fit_starts():
    model = _classifier(residual_backbone())
    x, y = _data()
    with pytest.raises(ValueError, match="no layer 'stage9'"):
        LayerwiseCollapse(x, y, layers=["stem_relu", "stage9"]).set_model(model)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.dense = keras.layers.Dense(4)

        def call(self, inputs):
            return self.dense(keras.ops.reshape(inputs, (keras.ops.shape(inputs)[0], -1)))

    backbone = Subclassed()
    backbone(x[:2])
    with pytest.raises(ValueError, match="subclassed"):
        LayerwiseCollapse(x, y).set_model(_classifier(backbone))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        LayerwiseCollapse(x, y + 1).set_model(model)
    with pytest.raises(ValueError, match="`layers`"):
        LayerwiseCollapse(x, y, layers="stem_relu")


def test_no_batch_hooks_nothing_added_to_steps():
    # Keras skips batch hooks a callback does not override: the steps run as without it.
    for hook in ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"):
        assert getattr(LayerwiseCollapse, hook) is getattr(keras.callbacks.Callback, hook), hook


def test_a_dataset_of_batches_gives_the_values_of_the_arrays():
    model = _classifier(residual_backbone())
    x, y = _data()
    arrays = LayerwiseCollapse(x, y, batch_size=24)
    batches = LayerwiseCollapse([(x[i : i + 9], np.eye(C)[y[i : i + 9]]) for i in range(0, 36, 9)])
    for profile in (arrays, batches):
        profile.set_model(model)
        profile.on_train_begin()
        profile.evaluate(0)
    for row, other in zip(arrays.history, batches.history, strict=True):
        assert row["layer"] == other["layer"]
        for key in LAYER_MEASURES:
            assert other[key] == pytest.approx(row[key], rel=1e-4, abs=1e-6), key
