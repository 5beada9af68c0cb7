"""CollapseClassifier in fit/evaluate/predict, save/load and jit, on the active backend."""

import keras
import numpy as np
import pytest

import keras_nc
import tests.reference as ref
from keras_nc import losses, metrics
from keras_nc import ops as nc
from keras_nc.losses import CMALoss
from keras_nc.metrics import HDR, MIR, MatrixEntropy
from keras_nc.ops import pairing
from tests.helpers import BACKEND, to_numpy
from tests.tolerances import (
    NC_RTOL,
    cma_tolerance,
    cross_entropy_tolerance,
    entropy_tolerance,
    float32_tolerance,
    information_tolerance,
    logit_tolerance,
)

# The MLP's logits: three Dense layers whose dot products sum at most 64 terms.
MLP_TERMS = 3 * 64


def _batch_bounds(model, x, y, batch_size, cma=0.0, mir=0.0, hdr=0.0):
    """Absolute float32 bounds of each logged value, the largest over the evaluation batches.

    `cma`, `mir`, `hdr`: the weights of those terms in the loss. A mean over batches is
    within the largest of its batches' bounds; accuracy is a count of the rows.
    """
    features = to_numpy(model.extract_features(x)).astype(np.float64)
    head = to_numpy(model.head_weights).astype(np.float64)
    logits = to_numpy(model(x)).astype(np.float64)
    classes = head.shape[0]
    rows = []
    for start in range(0, len(y), batch_size):
        part = slice(start, start + batch_size)
        z, t = features[part], y[part]
        k_z, k_w = ref.gram(z, center=True), ref.gram(head[t])
        k_m, k_h = ref.class_pairing(z, t, head, classes)
        row = {
            "accuracy": 0.5 / len(y),
            "cma_loss": cma * cma_tolerance(z, head, t) if cma else 0.0,
            "mir": information_tolerance(k_z, k_w, "mir"),
            "hdr": information_tolerance(k_z, k_w, "hdr"),
            "mir_class": information_tolerance(k_m, k_h, "mir"),
            "hdr_class": information_tolerance(k_m, k_h, "hdr"),
            "matrix_entropy": entropy_tolerance(k_z),
            "head_entropy": entropy_tolerance(ref.gram(head)),
            "nc1": NC_RTOL * ref.neural_collapse(z, t, head, classes)["nc1"],
        }
        row["information_regularizer_loss"] = mir * row["mir"] + hdr * row["hdr"]
        row["loss"] = (
            cross_entropy_tolerance(logits[part], t)
            + row["cma_loss"]
            + row["information_regularizer_loss"]
        )
        rows.append(row)
    return {key: max(row[key] for row in rows) for key in rows[0]}


def _assert_same_results(got, want, bounds):
    """Two float32 evaluations, each within its float64 bound: within twice the bound."""
    for key in want:
        # tol: rtol=0, the bound is the absolute one of the float64 analysis
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=2 * bounds[key], err_msg=key)


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
    np.testing.assert_allclose(
        logits, to_numpy(model(x[:5])), atol=2 * logit_tolerance(logits, MLP_TERMS)
    )


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
    assert set(history) == {"loss", "accuracy", "mir", "cma_loss"}
    # The logged loss is cross-entropy plus 0.5 * CMA: check it on fixed weights.
    x, y = x[:128], y[:128]
    result = model.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    features = to_numpy(model.extract_features(x))
    head = to_numpy(model.head.kernel).T
    logits = to_numpy(model(x))
    ce = to_numpy(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits))
    expected = ce + 0.5 * ref.cma(features, head, y)
    atol = cross_entropy_tolerance(logits, y) + 0.5 * cma_tolerance(features, head, y)
    np.testing.assert_allclose(result["loss"], expected, atol=atol)
    kz, kw = ref.gram(features, center=True), ref.gram(head[y])
    np.testing.assert_allclose(result["mir"], ref.mir(kz, kw), atol=information_tolerance(kz, kw))


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
    # The string loss is resolved with from_logits=True: three cross-entropies.
    expected = np.mean(weights * 3 * ce_per_sample)
    np.testing.assert_allclose(
        result[0], expected, atol=cross_entropy_tolerance(logits, y, loss=expected)
    )


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
    logits = model.predict(x, verbose=0)
    atol = 2 * logit_tolerance(logits, MLP_TERMS)  # two float32 evaluations
    np.testing.assert_allclose(restored.predict(x, verbose=0), logits, atol=atol)
    r1 = model.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    r2 = restored.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    expected_keys = {"loss", "accuracy", "mir", "hdr_class", "head_entropy", "nc1"}
    assert set(r1) == set(r2) == expected_keys | {"cma_loss"}
    _assert_same_results(r2, r1, _batch_bounds(model, x, y, 128, cma=0.25))
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
    # A 3 x 3 x 1 convolution and a mean of 64 positions, evaluated twice in float32.
    atol = 2 * float32_tolerance(terms=9 + 64, scale=np.abs(expected).max())
    np.testing.assert_allclose(features, expected, atol=atol)
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
    # Two float32 evaluations of the same values: twice the bounds of the float64 Grams.
    z = to_numpy(features).astype(np.float64)
    ref_z, ref_w = ref.gram(z, center=True), ref.gram(to_numpy(head).astype(np.float64)[y])
    atol = 2 * information_tolerance(ref_z, ref_w)
    np.testing.assert_allclose(result["mir"], to_numpy(nc.mir(k_z, k_w)), atol=atol)
    entropy = to_numpy(nc.feature_entropy(features, center=True))
    atol = 2 * entropy_tolerance(ref_z)
    np.testing.assert_allclose(result["matrix_entropy"], entropy, atol=atol)


@pytest.mark.parametrize("sample_size", [None, 48])
@pytest.mark.parametrize("run_eagerly", [False, True])
def test_losses_and_metrics_share_the_step_entropies(digits, monkeypatch, run_eagerly, sample_size):
    """The regulariser's sample-head entropies reach MIR/HDR/MatrixEntropy through y_pred.

    Per-batch estimates (`sample_size=None`) and a batch of exactly
    `sample_size` rows (one group: the step's own value when the buffer is
    empty) share the step's computation. Compiled, a grouped metric also
    traces its buffer's path (run only when the buffer holds rows), so the
    count of calls is checked where it counts runs: eagerly, or per batch.
    """
    if run_eagerly and BACKEND == "jax":
        pytest.skip("JAX eager compiles every op: the compiled step is the JAX case")
    x, y = digits
    x, y = x[:48], y[:48]
    calls = []
    compute = pairing.sample_head_entropies_of
    monkeypatch.setattr(
        pairing, "sample_head_entropies_of", lambda *a, **k: calls.append(1) or compute(*a, **k)
    )
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    regularizer = losses.InformationRegularizer(mir_weight=0.3, hdr_weight=0.2)
    model.compile(
        optimizer="sgd",
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), regularizer],
        metrics=[MIR(sample_size=sample_size), HDR(sample_size=sample_size),
                 MatrixEntropy(sample_size=sample_size)],
        run_eagerly=run_eagerly,
        jit_compile=False if run_eagerly else jit_setting(),
    )  # fmt: skip
    features = to_numpy(model.extract_features(x))
    head = to_numpy(model.head.kernel).T
    logits = features @ head.T + to_numpy(model.head.bias)
    logs = model.train_on_batch(x, y, return_dict=True)
    traced_buffer = sample_size is not None and not run_eagerly and BACKEND != "torch"
    if not traced_buffer:
        assert len(calls) == 1  # traced (or, eagerly, run) once for loss and metrics together
    k_z, k_w = ref.gram(features, center=True), ref.gram(head[y])
    expected_mir, expected_hdr = ref.mir(k_z, k_w), ref.hdr(k_z, k_w)
    shifted = logits - logits.max(axis=1, keepdims=True)
    ce = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y])
    e_mir, e_hdr = information_tolerance(k_z, k_w), information_tolerance(k_z, k_w, "hdr")
    np.testing.assert_allclose(logs["mir"], expected_mir, atol=e_mir)
    np.testing.assert_allclose(logs["hdr"], expected_hdr, atol=e_hdr)
    np.testing.assert_allclose(
        logs["matrix_entropy"], ref.entropy(k_z), atol=entropy_tolerance(k_z)
    )
    expected_loss = ce + 0.2 * expected_hdr - 0.3 * expected_mir
    atol = cross_entropy_tolerance(logits, y, loss=ce) + 0.2 * e_hdr + 0.3 * e_mir
    np.testing.assert_allclose(logs["loss"], expected_loss, atol=atol)


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
    with pytest.raises(ValueError, match='`sample_scope` must be "global" or "device"'):
        keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=3, sample_scope="replica")


def test_device_sample_scope_without_a_distribution_is_the_global_batch(digits, tmp_path):
    # One device: "device" and "global" compute the same thing (the multi-device
    # semantics are in tests/test_distribution.py); the setting is saved.
    x, y = digits
    results = {}
    for scope in ("global", "device"):
        model = keras_nc.models.CollapseClassifier(
            mlp_backbone(seed=3), num_classes=10, sample_scope=scope
        )
        model.compile(
            loss=[
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                losses.InformationRegularizer(0.5, 0.5),
            ],
            metrics=[MIR(), HDR(), MatrixEntropy()],
        )
        results[scope] = model.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    bounds = _batch_bounds(model, x, y, 128, mir=0.5, hdr=0.5)
    _assert_same_results(results["device"], results["global"], bounds)
    path = str(tmp_path / "device.keras")
    model.save(path)
    assert keras.saving.load_model(path, safe_mode=True).sample_scope == "device"


@pytest.mark.parametrize("kind", ["sequential", "layer"])
def test_unbuilt_backbone_builds_at_the_first_batch_and_round_trips(digits, kind, tmp_path):
    """A `Sequential` without `Input` or a bare layer: compile first, build in `fit`."""
    x, y = digits
    x, y = x[:96], y[:96]
    keras.utils.set_random_seed(0)
    if kind == "sequential":
        backbone = keras.Sequential([keras.layers.Dense(16, activation="relu")])
    else:
        backbone = keras.layers.Dense(16, activation="tanh")
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=10)
    assert not model.built and model.feature_dim is None
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=[ce, CMALoss(0.5)],
        metrics=[MIR(), HDR(), metrics.NC1(), MIR(pairing="class", name="mir_class")],
    )
    history = model.fit(x, y, epochs=1, batch_size=48, verbose=0).history
    assert model.built and model.feature_dim == 16
    for key in ("loss", "mir", "hdr", "nc1", "mir_class"):
        assert np.all(np.isfinite(history[key])), key
    # One evaluation batch: the logged values are the references' on the model's features.
    result = model.evaluate(x, y, batch_size=96, verbose=0, return_dict=True)
    features = to_numpy(model.extract_features(x))
    head = to_numpy(model.head.kernel).T
    logits = to_numpy(model(x))
    expected_loss = to_numpy(ce(y, logits)) + 0.5 * ref.cma(features, head, y)
    bounds = _batch_bounds(model, x, y, 96, cma=0.5)
    np.testing.assert_allclose(result["loss"], expected_loss, atol=bounds["loss"])
    k_z, k_w = ref.gram(features, center=True), ref.gram(head[y])
    np.testing.assert_allclose(result["mir"], ref.mir(k_z, k_w), atol=bounds["mir"])
    k_means, k_head = ref.class_pairing(features, y, head, 10)
    mir_class = ref.mir(k_means, k_head)
    np.testing.assert_allclose(result["mir_class"], mir_class, atol=bounds["mir_class"])

    path = str(tmp_path / "unbuilt.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert restored.feature_dim == 16
    # One Dense layer of fan-in 64 and the head's of 16, evaluated twice in float32.
    atol = 2 * logit_tolerance(logits, terms=64 + 16)
    np.testing.assert_allclose(to_numpy(restored(x)), logits, atol=atol)
    again = restored.evaluate(x, y, batch_size=96, verbose=0, return_dict=True)
    _assert_same_results(again, result, bounds)
    if kind == "sequential":  # training goes on (the optimiser is built at loading)
        assert np.isfinite(restored.fit(x, y, batch_size=48, verbose=0).history["loss"][0])


def test_jit_compile_is_stored_as_passed():
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    for argument in ("auto", True, False):
        model.compile(metrics=[MIR()], jit_compile=argument)
        assert model.get_compile_config()["jit_compile"] == argument
    model.compile(metrics=[MIR()])
    assert model.get_compile_config()["jit_compile"] == "auto"


# Saved on the key's backend, loaded on the value's: the two cases (a JAX model
# on PyTorch, a TensorFlow model on JAX) and PyTorch to JAX.
LOADING_BACKEND = {"jax": "torch", "tensorflow": "jax", "torch": "jax"}

LOAD_AND_FIT = """
import json, sys
import keras, numpy as np
import keras_nc
from keras_nc.metrics import MIR
x = np.random.default_rng(0).normal(size=(32, 64)).astype("float32")
y = np.arange(32) % 10
out = {}
for name in ("auto", "explicit_false"):
    model = keras.saving.load_model(sys.argv[1] + f"/{name}.keras", safe_mode=True)
    loss = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history["loss"][0]
    out[name] = {"jit_compile": bool(model.jit_compile), "loss": float(loss)}
fresh = keras_nc.models.CollapseClassifier(keras.Sequential([keras.layers.Dense(8)]), 10)
ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
fresh.compile(loss=[ce, keras_nc.losses.CMALoss(0.5)], metrics=[MIR()])
out["fresh_auto"] = bool(fresh.jit_compile)
print("RESULT " + json.dumps(out))
"""


def test_loading_on_another_backend_resolves_auto_jit_there(digits, tmp_path):
    """`jit_compile="auto"` is saved as "auto": the loading backend resolves it."""
    import json
    import os
    import subprocess
    import sys

    other = LOADING_BACKEND[BACKEND]
    for name, argument in (("auto", "auto"), ("explicit_false", False)):
        model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
        model.compile(
            loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(0.5)],
            metrics=[MIR()],
            jit_compile=argument,
        )
        model.save(str(tmp_path / f"{name}.keras"))
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_FIT, str(tmp_path)],
        env={**os.environ, "KERAS_BACKEND": other},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    # "auto" on the loading backend: XLA on JAX, eager on PyTorch (no torch.compile).
    assert result["auto"]["jit_compile"] == result["fresh_auto"] == (other == "jax")
    assert result["explicit_false"]["jit_compile"] is False
    # The fits ran: a PyTorch-saved optimizer (Keras saves its torch subclass) runs on JAX.
    assert np.isfinite(result["auto"]["loss"]) and np.isfinite(result["explicit_false"]["loss"])


class FixedRowsClassifier(keras_nc.models.CollapseClassifier):
    """Head weights from elsewhere (here fixed): `head_weights` and `classify` overridden."""

    def __init__(self, backbone, rows, **kwargs):
        super().__init__(backbone, num_classes=len(rows), **kwargs)
        object.__setattr__(self, "fixed_rows", np.asarray(rows, "float32"))

    @property
    def head_weights(self):
        return keras.ops.convert_to_tensor(self.fixed_rows)

    def classify(self, features):
        rows = self.head_weights
        return 2.0 * keras.ops.matmul(features, keras.ops.transpose(rows)), rows


class LegacyRowsClassifier(keras_nc.models.CollapseClassifier):
    """keras-nc 0.1's subclass: `head_rows()` and `classify` overridden (deprecated)."""

    def __init__(self, backbone, rows, **kwargs):
        object.__setattr__(self, "fixed_rows", np.asarray(rows, "float32"))
        super().__init__(backbone, num_classes=len(rows), **kwargs)

    def head_rows(self):
        return keras.ops.convert_to_tensor(self.fixed_rows)

    def classify(self, features):
        rows = self.head_rows()
        return 2.0 * keras.ops.matmul(features, keras.ops.transpose(rows)), rows


def test_head_weights_is_the_transposed_kernel_and_head_rows_a_deprecated_alias():
    model = keras_nc.models.CollapseClassifier(mlp_backbone(), num_classes=10)
    kernel = to_numpy(model.head.kernel)
    np.testing.assert_array_equal(to_numpy(model.head_weights), kernel.T)
    assert tuple(model.head_weights.shape) == (10, 32)
    with pytest.warns(DeprecationWarning, match="head_weights"):
        rows = model.head_rows()
    np.testing.assert_array_equal(to_numpy(rows), kernel.T)


def test_a_subclass_overriding_head_rows_is_warned():
    with pytest.warns(DeprecationWarning, match="head_rows.*head_weights"):
        LegacyRowsClassifier(mlp_backbone(), np.eye(10, 32))


@pytest.mark.parametrize("classifier", [FixedRowsClassifier, LegacyRowsClassifier])
def test_classify_hook_feeds_its_rows_to_the_collapse_terms(digits, classifier):
    x, y = digits
    x, y = x[:100], y[:100]
    rows = np.random.default_rng(4).normal(size=(10, 32)).astype("float32")
    model = classifier(mlp_backbone(), rows)
    model.compile(
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(0.5)],
        metrics=[MIR(), HDR(pairing="class", name="hdr_class")],
        jit_compile=jit_setting(),
    )
    result = model.evaluate(x, y, batch_size=100, verbose=0, return_dict=True)
    features = to_numpy(model.extract_features(x))
    logits = 2.0 * features.astype(np.float64) @ rows.T
    # The head's dot products of 32 terms, in float32 by the model and by NumPy.
    atol = 2 * logit_tolerance(logits, terms=32)
    np.testing.assert_allclose(model.predict(x, verbose=0), 2.0 * features @ rows.T, atol=atol)
    ce = to_numpy(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits))
    atol = cross_entropy_tolerance(logits, y, loss=ce) + 0.5 * cma_tolerance(features, rows, y)
    np.testing.assert_allclose(result["loss"], ce + 0.5 * ref.cma(features, rows, y), atol=atol)
    k_z, k_w = ref.gram(features, center=True), ref.gram(rows[y])
    np.testing.assert_allclose(
        result["mir"], ref.mir(k_z, k_w), atol=information_tolerance(k_z, k_w)
    )
    k_means, k_head = ref.class_pairing(features, y, rows, 10)
    atol = information_tolerance(k_means, k_head, "hdr")
    np.testing.assert_allclose(result["hdr_class"], ref.hdr(k_means, k_head), atol=atol)
