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
from tests.tolerances import (
    EPS32,
    NC_RTOL,
    SAFETY,
    entropy_tolerance,
    float32_tolerance,
    information_tolerance,
)

C = 3
NC_KEYS = ("nc1", "cdnv")


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


def _moment_spectrum(z, batch, center):
    """Eigenvalues of the float64 second moment (or covariance) and their float32 errors.

    The callback sums each batch's `(d, d)` second moment in float32 (`batch` terms per
    entry, at most `eps * ||Z||_F**2` each), then accumulates batches in float64 and
    decomposes (at most `d * eps * lambda_max` in float32). Centring happens after the
    float32 sums: its error keeps the uncentred scale (the cancellation).
    """
    second = z.T @ z
    centred = z - z.mean(axis=0) if center else z
    lam = np.clip(np.linalg.eigvalsh(centred.T @ centred), 0.0, None)[::-1]
    error = EPS32 * (batch * np.trace(second) + z.shape[1] * lam.max())
    return lam, error


def _rank_me_error(z, batch):
    """Absolute float32 bound of RankMe of the second moment (singular values `sqrt(lam)`)."""
    lam, dl = _moment_spectrum(z, batch, center=False)
    s = np.sqrt(lam)
    ds = np.minimum(np.sqrt(dl), dl / (2 * np.where(s > 0, s, np.inf)))
    p = s / s.sum()
    keep = p > 0
    h = -np.sum(p[keep] * np.log(p[keep]))
    error = np.sum(np.abs(np.log(p[keep]) + h) * ds[keep]) / s.sum()
    return np.exp(h) * (SAFETY * error + EPS32)


def _alpha_error(z, batch):
    """Absolute float32 bound of alpha-ReQ of the covariance: a least-squares slope of log lam."""
    lam, dl = _moment_spectrum(z, batch, center=True)
    lam = lam[lam > 0]  # a unit a ReLU keeps at zero: exactly zero in float32 too
    assert np.all(lam > 10 * dl), "an eigenvalue near its error: no first-order bound"
    x = np.log(np.arange(1, lam.size + 1))
    sxx = np.sum((x - x.mean()) ** 2)
    alpha = -np.sum((x - x.mean()) * np.log(lam)) / sxx
    error = np.sum(np.abs(x - x.mean()) * dl / lam) / sxx
    return SAFETY * float(error) + EPS32 * abs(alpha)  # + the float32 result's rounding


def _reference(z, y, head, batch=24):
    """Every measure of `LAYER_MEASURES` from the layer's float64 features."""
    z = np.asarray(z, np.float64)
    nc = ref.neural_collapse(z, y, head, C)
    k_m, k_w = ref.class_pairing(z, y, head, C)
    means = np.stack([z[y == c].mean(0) for c in range(C)])
    nearest = np.argmin(((z[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    k_z = ref.gram(z, center=True)
    entropy = ref.entropy(k_z)
    e_entropy = entropy_tolerance(k_z)
    # Absolute float32 bounds of the other measures, from the float64 reference.
    tol = {
        "ncc_accuracy": 0.5 / len(z),  # a count of the n rows: the same count, or not
        "mir_class": information_tolerance(k_m, k_w, "mir"),
        "hdr_class": information_tolerance(k_m, k_w, "hdr"),
        "matrix_entropy": e_entropy,
        "effective_rank": np.exp(entropy) * np.expm1(e_entropy),
        "rank_me": _rank_me_error(z, batch),
        "alpha_req": _alpha_error(z, batch),
    }
    return {
        "tol": tol,
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


def _assert_close(got, want, tol, factor=1):
    """`got` within `factor` times the float32 bounds `tol` of the float64 values `want`."""
    for key in LAYER_MEASURES:
        if key in NC_KEYS:
            assert got[key] == pytest.approx(want[key], rel=factor * NC_RTOL), key
        else:
            assert got[key] == pytest.approx(want[key], abs=factor * tol[key]), key


def _batched_features(profile, x, batch_size):
    """Each layer's features from the batches the callback measures (the same float32 values).

    A forward pass of another batch size may round differently (oneDNN's kernels
    depend on the batch): the bounds are of the measures of the callback's own features.
    """
    parts = [profile.layer_features(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return [np.concatenate(layer) for layer in zip(*parts, strict=True)]


def _output_tolerance(z, fan_in):
    """Float32 round-off of features of a network whose dot products sum `fan_in` terms."""
    return float32_tolerance(terms=fan_in, scale=np.max(np.abs(z)))


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
    features = _batched_features(profile, x, 24)  # the sub-model's pooled features
    assert [f.shape[1] for f in features] == [4, 4, 4] == profile.widths
    # The last layer is the model's own features.
    # Three 3 x 3 x 4 convolutions and a mean of 36 positions.
    atol = _output_tolerance(features[-1], 3 * 36 + 36)
    np.testing.assert_allclose(features[-1], to_numpy(model.extract_features(x)), atol=atol)
    for row, z in zip(profile.history[-3:], features, strict=True):
        expected = _reference(z, y, head)
        _assert_close(row, expected, expected["tol"])
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
    atol = _output_tolerance(z, 6 * 6 * 2)  # one Dense layer on the 72 flattened inputs
    np.testing.assert_allclose(z, to_numpy(backbone.get_layer("hidden")(
        backbone.get_layer("flat")(x))), atol=atol)  # fmt: skip


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
    assert logged == pytest.approx(expected["mir_class"], abs=expected["tol"]["mir_class"])


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
    head = to_numpy(model.head.kernel).T
    # Each equals the float64 reference of the features of its own batches (which
    # differ from the other's by the network's round-off only).
    for profile, size in ((arrays, 24), (batches, 9)):
        features = _batched_features(profile, x, size)
        for row, z in zip(profile.history, features, strict=True):
            expected = _reference(z, y, head, batch=size)
            _assert_close(row, expected, expected["tol"])
    for row, other in zip(arrays.history, batches.history, strict=True):
        assert row["layer"] == other["layer"]
