"""CollapseClassifier in fit/evaluate/predict, save/load and jit, on the active backend."""

import keras
import numpy as np
import pytest
import reference as ref
from conftest import BACKEND, to_numpy

import keras_nc
from keras_nc import losses, metrics
from keras_nc import ops as nc
from keras_nc.losses import CMALoss
from keras_nc.metrics import HDR, MIR, MatrixEntropy


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype("float32") / 16.0
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 0.1)
    return x[:640], data.target[:640].astype("int32")


def mlp_backbone(width=32, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,))
    x = keras.layers.Dense(64, activation="relu")(inputs)
    features = keras.layers.Dense(width, activation="relu", name="features")(x)
    return keras.Model(inputs, features, name="mlp")


def jit_setting():
    # JAX compiles with XLA; TensorFlow on CPU defaults to graph mode for
    # collapse terms (XLA's CPU eigh is slow, see test_tensorflow_xla_...);
    # torch runs eagerly (torch.compile of a train step is slow to build).
    return True if BACKEND == "jax" else "auto"


def test_spec_usage_logs_collapse_metrics_and_they_move_towards_collapse(digits):
    x, y = digits
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy", MIR(), HDR(), MatrixEntropy()],
        jit_compile=jit_setting(),
    )
    history = model.fit(x, y, epochs=6, batch_size=64, verbose=0).history
    for key in ("loss", "accuracy", "mir", "hdr", "matrix_entropy"):
        assert key in history and len(history[key]) == 6
        assert np.all(np.isfinite(history[key]))
    assert history["mir"][-1] > history["mir"][0]
    assert history["hdr"][-1] < history["hdr"][0]
    assert history["accuracy"][-1] > 0.8
    logits = model.predict(x[:5], verbose=0)
    assert logits.shape == (5, 10)
    np.testing.assert_allclose(logits, to_numpy(model(x[:5])), atol=1e-5)


def test_spec_usage_with_cma_loss_list(digits):
    x, y = digits
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    model.compile(
        optimizer="sgd",
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(weight=0.5)],
        metrics=["accuracy", MIR()],
        jit_compile=jit_setting(),
    )
    history = model.fit(x, y, epochs=1, batch_size=128, verbose=0).history
    assert set(history) == {"loss", "accuracy", "mir"}
    # The logged loss is cross-entropy plus 0.5 * CMA: check it on fixed weights.
    x, y = x[:128], y[:128]
    result = model.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    features = to_numpy(model.extract_features(x))
    head = to_numpy(model.head.kernel).T
    logits = to_numpy(model(x))
    ce = to_numpy(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits))
    expected = ce + 0.5 * ref.cma(features, head, y)
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-4)
    kz, kw = ref.gram(features, center=True), ref.gram(head[y])
    np.testing.assert_allclose(result["mir"], ref.mir(kz, kw), atol=1e-4)


def test_plain_losses_in_a_list_are_summed(digits):
    x, y = digits
    x, y = x[:96], y[:96]
    weights = np.linspace(0.5, 1.5, len(y)).astype("float32")
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(loss=[ce, "sparse_categorical_crossentropy", ce], metrics=[MIR()])
    result = model.evaluate(x, y, sample_weight=weights, batch_size=96, verbose=0)
    logits = to_numpy(model(x)).astype(np.float64)
    log_probs = logits - logits.max(1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    ce_per_sample = -log_probs[np.arange(len(y)), y]
    # The string loss reads the logits as probabilities: use Keras' own function
    # for its per-sample values, and the float64 log-softmax for the other two.
    as_probs = to_numpy(keras.losses.sparse_categorical_crossentropy(y, logits.astype("float32")))
    expected = np.mean(weights * (2 * ce_per_sample + as_probs))
    np.testing.assert_allclose(result[0], expected, rtol=1e-4)


def test_cma_lowers_within_class_entropy(digits):
    """Same seed, same data: CE + CMA ends with lower per-class group entropy than CE."""
    x, y = digits
    values = {}
    for name, loss in (
        ("ce", "auto"),
        ("cma", [keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(1.0)]),
    ):
        model = keras_nc.models.CollapseClassifier(mlp_backbone(seed=3), num_classes=10)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss, jit_compile=jit_setting())
        keras.utils.set_random_seed(3)
        model.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0)
        features = to_numpy(model.extract_features(x))
        values[name] = ref.cma(features, to_numpy(model.head.kernel).T, y)
    assert values["cma"] < values["ce"]


def test_regularizer_gradients_reach_backbone_and_head(digits):
    x, y = digits
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    # The regulariser alone: any change of the weights comes from its gradients.
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=[losses.InformationRegularizer(mir_weight=1.0, hdr_weight=1.0)],
        jit_compile=jit_setting(),
    )
    head_before = to_numpy(model.head.kernel).copy()
    backbone_before = [to_numpy(v).copy() for v in model.backbone.trainable_variables]
    history = model.fit(x[:64], y[:64], epochs=1, batch_size=64, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert not np.allclose(to_numpy(model.head.kernel), head_before)
    assert all(
        not np.allclose(to_numpy(v), b)
        for v, b in zip(model.backbone.trainable_variables, backbone_before, strict=True)
    )


def test_save_load_round_trip_in_safe_mode(digits, tmp_path):
    x, y = digits
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(0.25)],
        metrics=[
            "accuracy",
            MIR(),
            HDR(pairing="class", name="hdr_class"),
            MatrixEntropy(of="head", name="head_entropy"),
            metrics.NC1(),
        ],
        jit_compile=jit_setting(),
    )
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, keras_nc.models.CollapseClassifier)
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )
    r1 = model.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    r2 = restored.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    assert set(r1) == set(r2) == {"loss", "accuracy", "mir", "hdr_class", "head_entropy", "nc1"}
    for key in r1:
        np.testing.assert_allclose(r2[key], r1[key], rtol=1e-4, atol=1e-5, err_msg=key)
    history = restored.fit(x, y, epochs=1, batch_size=64, verbose=0).history
    assert np.isfinite(history["loss"][0]) and history["loss"][0] < r1["loss"] + 0.5


def test_from_model_shares_layers_and_predictions(digits):
    x, _ = digits
    inputs = keras.Input((64,))
    h = keras.layers.Dense(16, activation="relu", name="features")(inputs)
    logits = keras.layers.Dense(10, name="logits")(h)
    plain = keras.Model(inputs, logits)
    model = keras_nc.models.CollapseClassifier.from_model(plain)
    assert model.head is plain.get_layer("logits")
    assert model.feature_dim == 16
    np.testing.assert_allclose(model.predict(x[:8], verbose=0), plain.predict(x[:8], verbose=0))
    softmax = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    with pytest.raises(ValueError, match="must output logits"):
        keras_nc.models.CollapseClassifier.from_model(softmax)


def test_feature_maps_are_pooled():
    inputs = keras.Input((8, 8, 1))
    maps = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    model = keras_nc.models.CollapseClassifier(keras.Model(inputs, maps), num_classes=3)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    features = to_numpy(model.extract_features(x))
    expected = to_numpy(model.backbone(x)).mean(axis=(1, 2))
    np.testing.assert_allclose(features, expected, atol=1e-6)
    assert model.predict(x, verbose=0).shape == (2, 3)


def test_metric_in_fit_equals_ops_on_one_batch(digits):
    """One evaluation batch: the logged MIR equals keras_nc.ops on the same features."""
    x, y = digits
    x, y = x[:100], y[:100]
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    model.compile(metrics=[MIR(), MatrixEntropy()], jit_compile=jit_setting())
    result = model.evaluate(x, y, batch_size=100, verbose=0, return_dict=True)
    features = model.extract_features(x)
    head = keras.ops.transpose(model.head.kernel)
    k_z, k_w = nc.sample_head_grams(features, y, head)
    np.testing.assert_allclose(result["mir"], to_numpy(nc.mir(k_z, k_w)), atol=1e-5)
    np.testing.assert_allclose(
        result["matrix_entropy"], to_numpy(nc.feature_entropy(features, center=True)), atol=1e-5
    )


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_losses_and_metrics_share_the_step_entropies(digits, monkeypatch, run_eagerly):
    if run_eagerly and BACKEND == "jax":
        pytest.skip("JAX eager compiles every op: the compiled step is the JAX case")
    """The regulariser's sample-head entropies reach MIR/HDR/MatrixEntropy through y_pred."""
    x, y = digits
    x, y = x[:48], y[:48]
    calls = []
    compute = nc._sample_head_entropies
    monkeypatch.setattr(
        nc, "_sample_head_entropies", lambda *a, **k: calls.append(1) or compute(*a, **k)
    )
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    regularizer = losses.InformationRegularizer(mir_weight=0.3, hdr_weight=0.2)
    model.compile(
        optimizer="sgd",
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), regularizer],
        metrics=[MIR(), HDR(), MatrixEntropy()],
        run_eagerly=run_eagerly,
        jit_compile=False if run_eagerly else jit_setting(),
    )
    features = to_numpy(model.extract_features(x))
    head = to_numpy(model.head.kernel).T
    logits = features @ head.T + to_numpy(model.head.bias)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert len(calls) == 1  # traced (or, eagerly, run) once for loss and metrics together
    k_z, k_w = ref.gram(features, center=True), ref.gram(head[y])
    expected_mir, expected_hdr = ref.mir(k_z, k_w), ref.hdr(k_z, k_w)
    shifted = logits - logits.max(axis=1, keepdims=True)
    ce = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y])
    np.testing.assert_allclose(logs["mir"], expected_mir, atol=1e-4)
    np.testing.assert_allclose(logs["hdr"], expected_hdr, atol=1e-4)
    np.testing.assert_allclose(logs["matrix_entropy"], ref.entropy(k_z), atol=1e-4)
    np.testing.assert_allclose(
        logs["loss"], ce + 0.2 * expected_hdr - 0.3 * expected_mir, rtol=1e-4, atol=1e-4
    )


@pytest.mark.skipif(BACKEND == "torch", reason="XLA compilation: TensorFlow and JAX")
def test_jit_compile_true_works(digits):
    x, y = digits
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    model.compile(
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(0.5)],
        metrics=[MIR(), metrics.NC1()],
        jit_compile=True,
    )
    assert model.jit_compile
    history = model.fit(x[:64], y[:64], epochs=2, batch_size=32, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and np.all(np.isfinite(history["mir"]))


def test_blas_threads_are_limited_during_fit_on_jax_cpu(digits):
    """JAX's CPU eigh runs on OpenBLAS: one thread inside fit, restored after."""
    import threadpoolctl

    def blas_threads():
        return {
            i["filepath"]: i["num_threads"]
            for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas"
        }

    x, y = digits
    before, during = blas_threads(), []
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    model.compile(metrics=[MIR()], jit_compile=jit_setting())
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: during.append(blas_threads()))
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0, callbacks=[record])
    expected = {path: 1 for path in before} if BACKEND == "jax" else before
    assert during == [expected]
    assert blas_threads() == before


def test_tensorflow_on_cpu_defaults_to_graph_mode_for_collapse_terms():
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    model.compile(metrics=[MIR()])
    assert model.jit_compile is (BACKEND == "jax")


def test_constructor_errors():
    with pytest.raises(ValueError, match="`num_classes` must be an integer >= 2"):
        keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=1)
    with pytest.raises(ValueError, match=r"`head` must be a keras\.layers\.Dense"):
        keras_nc.models.CollapseClassifier(
            mlp_backbone(), num_classes=3, head=keras.layers.Dense(4)
        )
