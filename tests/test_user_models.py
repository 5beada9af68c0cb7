"""Users' own models and Keras' own tools with CollapseClassifier, on the active backend.

Subclassed, nested functional, keras.applications, channels_first and Sequential
backbones; string losses, one-hot labels; EarlyStopping and ModelCheckpoint in
mode auto on every keras-nc metric; metrics_names; logged loss terms; errors.
"""

import keras
import numpy as np
import pytest

import keras_nc
import tests.reference as ref
from keras_nc import metrics as nc_metrics
from keras_nc.losses import CMALoss, InformationRegularizer
from keras_nc.models import CollapseClassifier
from tests.helpers import to_numpy
from tests.tolerances import (
    cma_tolerance,
    cross_entropy_tolerance,
    float32_tolerance,
    float64_tolerance,
    information_tolerance,
    logit_tolerance,
)

NUM_CLASSES = 4
# The nested backbone and the head: three Dense layers of fan-in at most 16.
NESTED_TERMS = 3 * 16


def ce_tolerance(logits, labels):
    """Keras' cross-entropy of its own float32 logits vs the float64 one of `predict`'s.

    `cross_entropy_tolerance`, plus the two evaluations' logits apart by twice their
    round-off (cross-entropy moves by at most twice the largest change of a logit).
    """
    return cross_entropy_tolerance(logits, labels) + 2 * 2 * logit_tolerance(logits, NESTED_TERMS)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, NUM_CLASSES, 64).astype("int32")
    centres = rng.normal(size=(NUM_CLASSES, 16))
    x = (centres[y] + 0.5 * rng.normal(size=(64, 16))).astype("float32")
    return x, y


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    y = rng.integers(0, NUM_CLASSES, 16).astype("int32")
    return rng.normal(size=(16, 32, 32, 3)).astype("float32"), y


@keras.saving.register_keras_serializable(package="keras_nc_tests")
class ScaledDense(keras.layers.Layer):
    """A custom layer with its own weights and no compute_output_shape."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, inputs):
        return keras.ops.relu(self.scale * keras.ops.matmul(inputs, self.kernel))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="keras_nc_tests")
class SubclassedBackbone(keras.Model):
    """A subclassed backbone, as users write them: layers in __init__, no build()."""

    def __init__(self, width=8, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.features = ScaledDense(width)

    def call(self, inputs):
        return self.features(self.hidden(inputs))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


def nested_backbone():
    inner_in = keras.Input((16,))
    inner = keras.Model(inner_in, keras.layers.Dense(12, activation="relu")(inner_in), name="inner")
    outer_in = keras.Input((16,))
    features = keras.layers.Dense(8, activation="relu")(inner(outer_in))
    return keras.Model(outer_in, features, name="outer")


def sequential_backbone():
    # No keras.Input: built from the first batch.
    return keras.Sequential([keras.layers.Dense(8, activation="relu")])


BACKBONES = {
    "subclassed": lambda: SubclassedBackbone(),
    "nested_functional": nested_backbone,
    "sequential": sequential_backbone,
}


def log_softmax_ce(logits, labels):
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels].mean()


@pytest.mark.parametrize("kind", sorted(BACKBONES))
def test_users_backbones_fit_with_collapse_metrics(kind, data):
    """Item 7: subclassed (TensorFlow failed), nested functional and Sequential backbones."""
    x, y = data
    keras.utils.set_random_seed(0)
    model = CollapseClassifier(BACKBONES[kind](), num_classes=NUM_CLASSES)
    model.compile(optimizer="adam", metrics=["accuracy", nc_metrics.MIR(), nc_metrics.NC1()])
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert model.feature_dim == 8
    assert np.all(np.isfinite(history.history["mir"]))
    # The features reach the metric: MIR of one full batch equals the reference's.
    logs = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    z = to_numpy(model.extract_features(x)).astype(np.float64)
    w = to_numpy(model.head_weights).astype(np.float64)
    k_z, k_w = ref.gram(z, center=True), ref.gram(w[y])
    assert logs["mir"] == pytest.approx(ref.mir(k_z, k_w), abs=information_tolerance(k_z, k_w))


def test_keras_applications_backbone(images):
    """A keras.applications backbone with weights=None (include_top=False, feature maps)."""
    x, y = images
    backbone = keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, include_top=False, weights=None
    )
    model = CollapseClassifier(backbone, num_classes=NUM_CLASSES)
    assert model.feature_dim == backbone.output_shape[-1]
    model.compile(metrics=["accuracy", nc_metrics.MatrixEntropy()])
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["matrix_entropy"][0])


def test_channels_first_backbone_pools_spatial_axes(images):
    """Item 2: under channels_first the channels are axis 1, the pooled axes 2 and 3."""
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        backbone = keras.Sequential(
            [keras.Input((3, 12, 10)), keras.layers.Dense(32), keras.layers.Permute((3, 1, 2))]
        )
        # (n, 3, 12, 32) -> (n, 32, 3, 12): 32 channels first, 3 x 12 spatial.
        model = CollapseClassifier(backbone, num_classes=NUM_CLASSES)
        assert model.data_format == "channels_first"
        assert model.feature_dim == 32
        x = np.random.default_rng(2).normal(size=(4, 3, 12, 10)).astype("float32")
        maps = to_numpy(backbone(x))
        # The Dense layer (fan-in 10) and a mean of 36 positions, twice in float32.
        atol = 2 * float32_tolerance(terms=10 + 36, scale=np.abs(maps).max())
        np.testing.assert_allclose(
            to_numpy(model.extract_features(x)), maps.mean(axis=(2, 3)), atol=atol
        )
        config = model.get_config()
    finally:
        keras.config.set_image_data_format(previous)
    # The setting is saved: a model rebuilt under channels_last still pools the same way.
    assert config["data_format"] == "channels_first"
    assert CollapseClassifier.from_config(config).feature_dim == 32


def test_channels_first_conv_backbone_trains():
    """A channels_first Conv2D net: feature width is its filters, not a spatial size."""
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        backbone = keras.Sequential(
            [keras.Input((3, 12, 12)), keras.layers.Conv2D(32, 3, activation="relu")]
        )
        model = CollapseClassifier(backbone, num_classes=NUM_CLASSES)
        assert model.feature_dim == 32
        try:
            rng = np.random.default_rng(3)
            x = rng.normal(size=(8, 3, 12, 12)).astype("float32")
            model.compile(metrics=[nc_metrics.MIR()])
            model.fit(x, rng.integers(0, NUM_CLASSES, 8), epochs=1, verbose=0)
        except Exception as error:
            # TensorFlow's CPU kernels implement NHWC convolutions only.
            if "NHWC" not in str(error) and "channels_first" not in str(error):
                raise
    finally:
        keras.config.set_image_data_format(previous)


@pytest.mark.parametrize(
    "loss", ["sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"]
)
def test_string_loss_reads_logits(loss, data):
    """Item 1: a string loss is resolved with from_logits=True (it read logits as probabilities)."""
    x, y = data
    keras.utils.set_random_seed(0)
    model = CollapseClassifier(nested_backbone(), num_classes=NUM_CLASSES)
    model.compile(loss=loss)
    value = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)["loss"]
    logits = to_numpy(model.predict(x, verbose=0))
    assert value == pytest.approx(log_softmax_ce(logits, y), abs=ce_tolerance(logits, y))


def test_string_loss_without_logits_form_is_refused():
    model = CollapseClassifier(nested_backbone(), num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match=r"loss='kl_divergence'.*logits"):
        model.compile(loss="kl_divergence")


def test_probability_loss_object_warns():
    model = CollapseClassifier(nested_backbone(), num_classes=NUM_CLASSES)
    with pytest.warns(UserWarning, match="from_logits=False"):
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy())


def test_one_hot_labels_with_default_metrics(data):
    """Item 9: metrics="auto" resolves accuracy from the labels' shape (one-hot here)."""
    x, y = data
    keras.utils.set_random_seed(0)
    model = CollapseClassifier(nested_backbone(), num_classes=NUM_CLASSES)
    model.compile(loss="categorical_crossentropy", metrics="auto")
    one_hot = keras.utils.to_categorical(y, NUM_CLASSES)
    model.fit(x, one_hot, batch_size=32, epochs=1, verbose=0)
    logs = model.evaluate(x, one_hot, batch_size=64, verbose=0, return_dict=True)
    logits = to_numpy(model.predict(x, verbose=0))
    # Accuracy is a count of the n rows: the same count.
    accuracy = np.mean(logits.argmax(axis=1) == y)
    assert logs["accuracy"] == pytest.approx(accuracy, abs=0.5 / len(y))
    assert logs["loss"] == pytest.approx(log_softmax_ce(logits, y), abs=ce_tolerance(logits, y))


@pytest.mark.parametrize(
    "activation",
    [keras.layers.Softmax, lambda: keras.layers.Activation("softmax", dtype="float32")],
    ids=["Softmax", "Activation_softmax_float32"],
)
def test_from_model_refuses_a_softmax_after_the_head(activation):
    """Item 3: a trailing softmax layer was dropped silently."""
    inputs = keras.Input((16,))
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(keras.layers.Dense(8)(inputs))
    model = keras.Model(inputs, activation()(logits))
    with pytest.raises(ValueError, match=r"applies \[.*\] after its head 'logits'"):
        CollapseClassifier.from_model(model)


def test_from_model_keeps_a_float32_cast_after_the_head(data):
    """Keras' mixed-precision pattern without softmax: a linear float32 Activation."""
    x, _ = data
    inputs = keras.Input((16,))
    logits = keras.layers.Dense(NUM_CLASSES)(keras.layers.Dense(8)(inputs))
    model = keras.Model(inputs, keras.layers.Activation("linear", dtype="float32")(logits))
    wrapped = CollapseClassifier.from_model(model)
    expected = to_numpy(model(x))
    atol = 2 * logit_tolerance(expected, terms=2 * 16)  # two Dense layers, twice in float32
    np.testing.assert_allclose(to_numpy(wrapped(x)), expected, atol=atol)


def test_from_model_refuses_features_of_another_width():
    """Item 11: features whose pooled width differs from the head's input (was: fails in fit)."""
    inputs = keras.Input((6, 6, 3))
    maps = keras.layers.Conv2D(5, 3, name="conv")(inputs)
    logits = keras.layers.Dense(NUM_CLASSES)(keras.layers.Flatten()(maps))
    model = keras.Model(inputs, logits)
    with pytest.raises(ValueError, match=r"width 5.*expects inputs of width 80"):
        CollapseClassifier.from_model(model, features_layer="conv")


def test_from_model_sequential_without_input_says_how_to_fix():
    """Item 14: the error says how to give a Sequential an input."""
    model = keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(NUM_CLASSES)])
    with pytest.raises(ValueError, match=r"keras\.Input\(shape\)"):
        CollapseClassifier.from_model(model)


def test_function_backbone_is_refused():
    """Item 14: a function was accepted and fit failed with an empty Keras error."""
    with pytest.raises(ValueError, match=r"`backbone` must be a Keras model or layer.*'<lambda>'"):
        CollapseClassifier(lambda t: t, num_classes=NUM_CLASSES)


def test_head_of_wrong_size_names_its_units():
    with pytest.raises(ValueError, match="with 5 units"):
        CollapseClassifier(nested_backbone(), num_classes=4, head=keras.layers.Dense(5))


@pytest.mark.parametrize("num_classes", [np.int64(4), np.int32(4)])
def test_numpy_integer_num_classes(num_classes):
    """Item 12: NumPy integers are integers."""
    model = CollapseClassifier(nested_backbone(), num_classes=num_classes)
    assert model.num_classes == 4 and type(model.num_classes) is int
    assert model.get_config()["num_classes"] == 4


@pytest.mark.parametrize("bad", [4.0, True, "4", 1])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="`num_classes` must be an integer >= 2"):
        CollapseClassifier(nested_backbone(), num_classes=bad)


@pytest.mark.parametrize("value", ["no", "False", 0, None])
@pytest.mark.parametrize(
    "factory",
    [
        nc_metrics.MIR,
        nc_metrics.HDR,
        nc_metrics.MatrixEntropy,
        nc_metrics.ClassMIR,
        nc_metrics.RankMe,
        InformationRegularizer,
    ],
)
def test_center_must_be_a_bool(factory, value):
    """Item 6: truthy strings centred silently."""
    with pytest.raises(ValueError, match="`center` must be True or False"):
        factory(center=value)


def test_center_numpy_bool_is_kept():
    metric = nc_metrics.MIR(center=np.bool_(False))
    assert metric.get_config()["center"] is False


def test_metrics_names_line_up_with_evaluate(data):
    """Item 5: zip(metrics_names, evaluate()) pairs each value with its name."""
    x, y = data
    model = CollapseClassifier(nested_backbone(), num_classes=NUM_CLASSES)
    model.compile(
        loss=["sparse_categorical_crossentropy", CMALoss(0.5)],
        metrics=["accuracy", nc_metrics.MIR(), nc_metrics.NC1(), nc_metrics.HDR()],
    )
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    values = model.evaluate(x, y, batch_size=32, verbose=0)
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert model.metrics_names == ["loss", "accuracy", "cma_loss", "mir", "nc1", "hdr"]
    assert len(values) == len(model.metrics_names)
    # The same compiled evaluation of the same weights and batches: the same values.
    for name, value in zip(model.metrics_names, values, strict=True):
        assert value == logs[name], name


def test_loss_terms_are_logged(data):
    """Item 13: each collapse loss term is logged as `<name>_loss`, beside the `cma` metric."""
    x, y = data
    keras.utils.set_random_seed(0)
    model = CollapseClassifier(nested_backbone(), num_classes=NUM_CLASSES)
    model.compile(
        loss=["sparse_categorical_crossentropy", CMALoss(0.5), InformationRegularizer()],
        metrics=[nc_metrics.CMA(), nc_metrics.MIR(), nc_metrics.HDR()],
    )
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert {"cma_loss", "information_regularizer_loss", "cma"} <= set(history.history)
    logs = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    z = to_numpy(model.extract_features(x)).astype(np.float64)
    w = to_numpy(model.head_weights).astype(np.float64)
    cma, e_cma = ref.cma(z, w, y), cma_tolerance(z, w, y)
    assert logs["cma"] == pytest.approx(cma, abs=e_cma)
    assert logs["cma_loss"] == pytest.approx(0.5 * cma, abs=0.5 * e_cma)
    # 0.5 HDR - 0.5 MIR of the one batch: the regulariser's and the metrics' values are
    # float32 evaluations (shared, or not in TensorFlow's graph), each within its float64
    # bound, so within twice the bound.
    regularizer = 0.5 * logs["hdr"] - 0.5 * logs["mir"]
    k_z, k_w = ref.gram(z, center=True), ref.gram(w[y])
    atol = information_tolerance(k_z, k_w) + information_tolerance(k_z, k_w, "hdr")
    assert logs["information_regularizer_loss"] == pytest.approx(regularizer, abs=atol)
    # The sum of the terms and the cross-entropy is the loss Keras logs: the
    # cross-entropy's bound and two float32 additions at the loss's scale.
    logits = to_numpy(model.predict(x, verbose=0))
    total = log_softmax_ce(logits, y) + logs["cma_loss"] + logs["information_regularizer_loss"]
    atol = ce_tolerance(logits, y) + float32_tolerance(terms=2, scale=abs(total))
    assert logs["loss"] == pytest.approx(total, abs=atol)


# Every keras-nc metric, with the direction the issue asks for.
DIRECTIONS = {
    "mir": ("up", nc_metrics.MIR),
    "mir_class": ("up", nc_metrics.ClassMIR),
    "ncc_agreement": ("up", nc_metrics.NCCAgreement),
    "rank_me": ("up", nc_metrics.RankMe),
    "hdr": ("down", nc_metrics.HDR),
    "hdr_class": ("down", nc_metrics.ClassHDR),
    "matrix_entropy": ("down", nc_metrics.MatrixEntropy),
    "nc1": ("down", nc_metrics.NC1),
    "cdnv": ("down", nc_metrics.CDNV),
    "etf_error": ("down", nc_metrics.ETFError),
    "equinorm": ("down", nc_metrics.Equinorm),
    "self_duality": ("down", nc_metrics.SelfDuality),
    "cma": ("down", nc_metrics.CMA),
    "cma_loss": ("down", None),
}


@pytest.fixture(scope="module")
def fitted_with_every_metric(data):
    x, y = data
    keras.utils.set_random_seed(0)
    model = CollapseClassifier(nested_backbone(), num_classes=NUM_CLASSES)
    model.compile(
        loss=["sparse_categorical_crossentropy", CMALoss(0.1)],
        metrics=[factory() for _, factory in DIRECTIONS.values() if factory is not None],
    )
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, validation_data=(x, y)).history
    return model, history


def test_every_metric_is_logged_under_its_name(fitted_with_every_metric):
    _, history = fitted_with_every_metric
    for name in DIRECTIONS:
        assert f"val_{name}" in history, name


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
@pytest.mark.parametrize("callback", ["EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau"])
def test_monitoring_callbacks_in_mode_auto_compare_the_right_way(
    name, callback, fitted_with_every_metric, tmp_path
):
    """Item 8: mode auto reads each metric's direction; a worsening epoch counts as one."""
    model, _ = fitted_with_every_metric
    direction = DIRECTIONS[name][0]
    better, worse = (0.5, 0.4) if direction == "up" else (0.4, 0.5)
    monitor = f"val_{name}"
    if callback == "EarlyStopping":
        stopper = keras.callbacks.EarlyStopping(monitor=monitor, patience=1)
        stopper.set_model(model)
        model.stop_training = False
        stopper.on_train_begin()
        stopper.on_epoch_end(0, {monitor: worse})
        stopper.on_epoch_end(1, {monitor: better})  # an improvement resets the patience
        assert not model.stop_training
        stopper.on_epoch_end(2, {monitor: worse})  # worse than the best: training stops
        assert model.stop_training
        assert stopper.best == better
        model.stop_training = False
    elif callback == "ModelCheckpoint":
        path = tmp_path / "best.weights.h5"
        checkpoint = keras.callbacks.ModelCheckpoint(
            str(path), monitor=monitor, save_best_only=True, save_weights_only=True
        )
        checkpoint.set_model(model)
        checkpoint.on_train_begin()
        checkpoint.on_epoch_end(0, {monitor: better})
        assert path.exists()
        path.unlink()
        checkpoint.on_epoch_end(1, {monitor: worse})  # not better: nothing saved
        assert not path.exists()
        assert checkpoint.best == better
    else:
        reducer = keras.callbacks.ReduceLROnPlateau(monitor=monitor, patience=0)
        reducer.set_model(model)
        reducer.on_train_begin()
        reducer.on_epoch_end(0, {monitor: better})
        assert reducer.best == better


def test_early_stopping_and_checkpoint_in_fit(data, tmp_path):
    """EarlyStopping and ModelCheckpoint(save_best_only=True) in a real fit, default mode."""
    x, y = data
    keras.utils.set_random_seed(0)
    model = CollapseClassifier(nested_backbone(), num_classes=NUM_CLASSES)
    model.compile(optimizer="adam", metrics=[nc_metrics.MIR(), nc_metrics.NC1()])
    path = tmp_path / "best.keras"
    stopper = keras.callbacks.EarlyStopping(monitor="val_mir", patience=1)
    checkpoint = keras.callbacks.ModelCheckpoint(str(path), monitor="val_nc1", save_best_only=True)
    history = model.fit(
        x,
        y,
        batch_size=32,
        epochs=3,
        verbose=0,
        validation_data=(x, y),
        callbacks=[stopper, checkpoint],
    ).history
    assert path.exists()
    assert checkpoint.best == pytest.approx(min(history["val_nc1"]))
    assert stopper.best == pytest.approx(max(history["val_mir"]))
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, CollapseClassifier)


def test_cma_metric_saved_and_loaded(data, tmp_path):
    x, y = data
    model = CollapseClassifier(nested_backbone(), num_classes=NUM_CLASSES)
    model.compile(metrics=[nc_metrics.CMA(name="alignment")])
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    logs = restored.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    assert "alignment" in logs
    assert isinstance(
        keras_nc.metrics.CMA.from_config(nc_metrics.CMA().get_config()), type(nc_metrics.CMA())
    )


def test_layerwise_collapse_pools_channels_first_maps():
    """LayerwiseCollapse pools a layer's maps with the model's data_format (channels kept)."""
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        inputs = keras.Input((3, 5, 4))
        maps = keras.layers.Permute((3, 1, 2), name="maps")(keras.layers.Dense(7)(inputs))
        features = keras.layers.GlobalAveragePooling2D()(maps)  # (n, 7): channels first
        backbone = keras.Model(inputs, features)
        model = CollapseClassifier(backbone, num_classes=NUM_CLASSES)
        rng = np.random.default_rng(4)
        x = rng.normal(size=(8, 3, 5, 4)).astype("float32")
        y = np.arange(8) % NUM_CLASSES
        profile = keras_nc.layerwise.LayerwiseCollapse(x, y, layers=["maps"])
        profile.set_model(model)
        profile.on_train_begin()
        pooled = profile.layer_features(x)[0]
    finally:
        keras.config.set_image_data_format(previous)
    raw = to_numpy(keras.Model(inputs, maps)(x))  # (8, 7, 3, 5)
    assert pooled.shape == (8, 7)
    # The Dense layer (fan-in 4) and a mean of 15 positions, twice in float32.
    atol = 2 * float32_tolerance(terms=4 + 15, scale=np.abs(raw).max())
    np.testing.assert_allclose(pooled, raw.mean(axis=(2, 3)), atol=atol)


def test_centring_keeps_float64_precision():
    """Centring float64 features with a large common offset stays exact on every backend."""
    if not keras.backend.is_float_dtype("float64"):
        pytest.skip("no float64")
    rng = np.random.default_rng(5)
    z = rng.normal(size=(6, 3)) + 1e8
    expected = ref.gram(z - z.mean(axis=0))
    got = to_numpy(keras_nc.ops.gram(keras.ops.convert_to_tensor(z, "float64"), center=True))
    if got.dtype != np.float64:
        pytest.skip("this backend runs without float64")
    # The float64 mean of 6 values ~1e8 (6 roundings at that scale) moves each centred
    # entry; normalising by a row's norm, each of the Gram's two factors by that over it.
    centred = np.linalg.norm(z - z.mean(axis=0), axis=1).min()
    atol = 2 * float64_tolerance(terms=len(z), scale=np.abs(z).max()) / centred
    np.testing.assert_allclose(got, expected, atol=atol)
