"""The Keras private names of `keras_nc.compat`: each test fails loudly when Keras changes one.

These use plain Keras models only, so a failure names the Keras behaviour that
changed, not a keras-nc bug: every assertion's message names the installed
Keras version and the hook (`_changed`).
"""

import importlib

import keras
import numpy as np
import pytest

from keras_nc import compat
from keras_nc.compat import backend as compat_backend
from keras_nc.compat import distribute
from keras_nc.compat import metrics as compat_metrics


def _changed(hook, what):
    """The failure message of a hook's test: the Keras (and backend) release and the hook."""
    backend = keras.backend.backend()
    version = getattr(importlib.import_module(backend), "__version__", "?")
    return (
        f"Keras {keras.__version__} ({backend} {version}) changed `keras_nc.compat.{hook}`: {what}"
    )


class _Constant(keras.metrics.Mean):
    pass


class _ModelWithContainer(keras.Model):
    """A plain model listing a metric in a `compat.MetricsList`, as CollapseClassifier does."""

    def __init__(self, metric, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)
        object.__setattr__(self, "_container", compat.MetricsList([metric], name="container"))

    def call(self, inputs):
        return self.dense(inputs)

    @property
    def metrics(self):
        return [*super().metrics, self._container]


@pytest.mark.parametrize("direction, better, worse", [("up", 1.0, 0.0), ("down", 0.0, 1.0)])
def test_monitor_callbacks_read_the_direction_inside_a_metrics_list(direction, better, worse):
    metric = _Constant(name="score")
    compat.set_metric_direction(metric, direction)
    assert compat.metric_direction(metric) == direction, _changed(
        "metric_direction", "the direction set is not read back"
    )
    model = _ModelWithContainer(metric)
    model.compile(optimizer="sgd", loss="mse")
    stopper = keras.callbacks.EarlyStopping(monitor="val_score", patience=0)
    stopper.set_model(model)
    stopper.on_train_begin()
    stopper.on_epoch_end(0, {"val_score": better})
    stopper.on_epoch_end(1, {"val_score": worse})
    message = _changed(
        "set_metric_direction",
        f"EarlyStopping(mode='auto') no longer reads direction {direction!r} of a metric "
        "inside a MetricsList",
    )
    assert model.stop_training, message
    assert stopper.best == better, message


def test_monitor_callbacks_refuse_an_undeclared_metric():
    """Without the container Keras cannot tell the direction: what the hook works around."""
    model = _ModelWithContainer(_Constant(name="score"))
    model.compile(optimizer="sgd", loss="mse")
    stopper = keras.callbacks.EarlyStopping(monitor="val_score")
    stopper.set_model(model)
    stopper.on_train_begin()
    with pytest.raises(ValueError, match="maximized or minimized"):
        stopper.on_epoch_end(0, {"val_score": 1.0})
        pytest.fail(
            _changed("MetricsList", "EarlyStopping accepted a metric of no declared direction")
        )


def test_metrics_list_tracks_its_metrics_variables():
    """Keras collects metric variables (JAX's stateless steps) through `variables`."""
    metric = _Constant(name="score")
    container = compat.MetricsList([metric])
    assert len(container.variables) == len(metric.variables) == 2, _changed(
        "MetricsList", "the container no longer lists its metrics' variables"
    )


def test_compile_metrics_lists_its_metrics_after_build():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    model.evaluate(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    containers = [m for m in model.metrics if isinstance(m, compat.CompileMetrics)]
    assert containers, _changed("CompileMetrics", "model.metrics no longer holds one")
    assert [m.name for m in containers[0].metrics] == ["mae"], _changed(
        "CompileMetrics", "it no longer lists the compiled metrics"
    )


def test_bad_direction():
    with pytest.raises(ValueError, match='`direction` must be "up" or "down"'):
        compat.set_metric_direction(_Constant(), "max")


def test_tensorflow_xla_tracing_is_seen_only_inside_an_xla_trace():
    message = _changed("tensorflow_xla_tracing", "XLA tracing is not told apart")
    assert not compat.tensorflow_xla_tracing(), message  # eager, any backend
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    seen = {}

    def probe(x):
        seen["traced"] = compat.tensorflow_xla_tracing()
        return x

    tf.function(probe, jit_compile=True)(tf.zeros(()))
    assert seen["traced"] is True, message
    tf.function(probe, jit_compile=False)(tf.zeros(()))
    assert seen["traced"] is False, message


def test_tensorflow_xla_eigenvalues_reach_machine_precision():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's XLA op")
    import tensorflow as tf

    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    spectrum = np.array([1e-7, 1e-5, 1e-3, 0.1, 0.5, 1.0], dtype=np.float32)
    k = (basis * spectrum) @ basis.T
    k = ((k + k.T) / 2).astype(np.float32)
    got = tf.function(
        lambda a: compat.tensorflow_xla_eigenvalues(a, float(np.finfo(np.float32).eps)),
        jit_compile=True,
    )(tf.constant(k)).numpy()
    want = np.linalg.eigvalsh(k.astype(np.float64))
    # A backward-stable symmetric eigensolver: |error| <= c m eps ||k||_2 (c = 2 here).
    np.testing.assert_allclose(
        got,
        want,
        atol=2 * 6 * np.finfo(np.float32).eps,
        err_msg=_changed("tensorflow_xla_eigenvalues", "XLA's eigh misses machine precision"),
    )


# --------------------------------------------------------------------------- #
# eigvalsh: eigenvalues without eigenvectors, on every backend
# --------------------------------------------------------------------------- #


def _symmetric(m, seed=0, rank=None):
    """A float64 PSD matrix of the given rank (repeated zero eigenvalues) and its spectrum."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, rank or m))
    k = x @ x.T / (rank or m)
    return (k + k.T) / 2


def _eig_atol(k, dtype):
    # A backward-stable symmetric eigensolver: |error| <= c m eps ||k||_2 (c = 2).
    eps = np.finfo(dtype).eps
    return 2 * k.shape[-1] * eps * np.linalg.norm(k, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("host", [False, True], ids=["backend", "host"])
def test_eigvalsh_matches_float64_numpy(dtype, host, monkeypatch):
    if dtype == "float64" and keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            pytest.skip("float64 is not enabled on jax")
    # host=True: NumPy's LAPACK at every size (where the backend takes that path).
    sizes = {"tensorflow": 0, "jax": 0} if host else {"tensorflow": 10**9, "jax": 10**9}
    monkeypatch.setattr(compat.linalg, "HOST_EIGVALSH_MIN_SIZE", sizes)
    k = np.stack([_symmetric(9, seed=1), _symmetric(9, seed=2, rank=3)])
    x = keras.ops.convert_to_tensor(k.astype(dtype))
    expected_host = host and keras.backend.backend() in ("tensorflow", "jax")
    message = _changed("eigvalsh", f"{dtype} eigenvalues (host path: {expected_host})")
    assert compat.host_eigenvalues_apply(x) == expected_host, message
    got = compat.eigvalsh(x)
    assert keras.backend.standardize_dtype(got.dtype) == dtype, message
    assert tuple(got.shape) == (2, 9), message
    want = np.linalg.eigvalsh(k)
    atol = max(_eig_atol(m, dtype) for m in k)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, atol=atol, err_msg=message)


def test_eigvalsh_under_compilation_takes_the_backends_kernel(monkeypatch):
    """Traced input never takes the host path; the compiled values are the eigenvalues."""
    monkeypatch.setattr(compat.linalg, "HOST_EIGVALSH_MIN_SIZE", {"tensorflow": 0, "jax": 0})
    seen = {}

    def probe(a):
        seen["host"] = compat.host_eigenvalues_apply(a)
        return compat.eigvalsh(a)

    k = _symmetric(7, seed=3)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        got = jax.jit(probe)(k.astype("float32"))
    elif backend == "tensorflow":
        import tensorflow as tf

        got = tf.function(probe, jit_compile=True)(tf.constant(k.astype("float32")))
    else:
        import torch

        got = probe(torch.tensor(k.astype("float32")))
    message = _changed("eigvalsh", "compiled input (host path never taken)")
    assert seen["host"] is False, message
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(got),
        np.linalg.eigvalsh(k),
        atol=_eig_atol(k, "float32"),
        err_msg=message,
    )


def test_eigvalsh_gradient_is_v_diag_v(monkeypatch):
    """`d sum_i c_i l_i / dk = V diag(c) V^T` on every backend (host path never differentiated)."""
    monkeypatch.setattr(compat.linalg, "HOST_EIGVALSH_MIN_SIZE", {"tensorflow": 0, "jax": 0})
    k = _symmetric(5, seed=4)
    weights = np.arange(1.0, 6.0)
    values, vectors = np.linalg.eigh(k)
    want = (vectors * weights) @ vectors.T
    backend = keras.backend.backend()
    k32 = k.astype("float32")
    if backend == "jax":
        import jax

        got = jax.grad(lambda a: (compat.eigvalsh(a) * weights).sum())(k32)
    elif backend == "tensorflow":
        import tensorflow as tf

        a = tf.constant(k32)
        with tf.GradientTape() as tape:
            tape.watch(a)
            assert compat.tape_is_recording(), _changed("tape_is_recording", "tape unseen")
            assert not compat.host_eigenvalues_apply(a), _changed(
                "host_eigenvalues_apply", "the host path under a GradientTape"
            )
            y = tf.reduce_sum(compat.eigvalsh(a) * weights.astype("float32"))
        got = tape.gradient(y, a)
    else:
        import torch

        a = torch.tensor(k32, requires_grad=True)
        (compat.eigvalsh(a) * torch.tensor(weights, dtype=torch.float32)).sum().backward()
        got = a.grad
    got = np.asarray(keras.ops.convert_to_numpy(got), dtype="float64")
    # JAX symmetrises its input (the gradient is symmetric); the others read one
    # triangle (the gradient may sit in it): compare the symmetric parts.
    got = (got + got.T) / 2
    gap = np.diff(values).min()  # distinct eigenvalues: V is well conditioned
    np.testing.assert_allclose(
        got,
        want,
        atol=20 * 5 * np.finfo("float32").eps / gap,
        err_msg=_changed("eigvalsh", "the gradient is not V diag(c) V^T"),
    )


def test_tape_is_recording_sees_gradient_tapes():
    """TensorFlow's private `could_possibly_record`: the host path must not run under a tape."""
    message = _changed("tape_is_recording", "GradientTape recording is not told apart")
    assert not compat.tape_is_recording(), message
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    with tf.GradientTape():
        assert compat.tape_is_recording(), message
    with tf.GradientTape() as tape, tape.stop_recording():
        assert not compat.tape_is_recording(), message  # nothing recorded here
    assert not compat.tape_is_recording(), message


def test_performance_constants_cover_every_backend():
    """The path choice reads a cost per eigendecomposition call and the gather rule per backend."""
    message = _changed("eigh_call_cost", "a backend's cost is missing")
    for backend in ("tensorflow", "jax", "torch"):
        assert compat.EIGH_CALL_COST[backend] >= 0, message
        assert isinstance(compat.GATHERS_CLASS_GRAMS[backend], bool), _changed(
            "gathers_class_grams", f"no rule for {backend}"
        )
    assert compat.eigh_call_cost() == compat.EIGH_CALL_COST[keras.backend.backend()], message
    # Eager PyTorch dispatches every op from Python: its calls cost the most.
    assert compat.EIGH_CALL_COST["torch"] > compat.EIGH_CALL_COST["jax"], message


def test_eager_version_changes_with_every_in_place_write():
    variable = keras.Variable(np.zeros(3, "float32"))
    message = _changed("eager_version", "PyTorch's in-place writes are not counted")
    before = compat.eager_version(variable.value)
    if keras.backend.backend() != "torch":
        assert before is None, message  # only PyTorch's eager values are written in place
        return
    assert before is not None, message
    variable.assign(np.ones(3, "float32"))
    after = compat.eager_version(variable.value)
    assert after != before, message  # Keras' assign writes in place: the counter moved
    assert compat.eager_version(variable.value) == after, message  # reading does not


# --------------------------------------------------------------------------- #
# keras_nc.compat.metrics: tracking and in-place updates of metric state
# --------------------------------------------------------------------------- #


class _Owner(keras.metrics.Metric):
    """A metric owning a variable and a sub-metric, as `StatisticsReader` owns its accumulator."""

    def __init__(self):
        super().__init__(name="owner")
        self.own = self.add_variable(shape=(), initializer="zeros", name="own")
        self.inner = keras.metrics.Mean(name="inner")

    def update_state(self, *args, **kwargs):
        pass

    def result(self):
        return self.own.value


def test_untrack_removes_a_sub_metric_and_a_variable():
    owner = _Owner()
    inner_variables = {id(v) for v in owner.inner.variables}
    assert len(owner.variables) == 1 + len(inner_variables), _changed(
        "untrack", "a metric no longer tracks a sub-metric assigned to an attribute"
    )
    compat.untrack(owner, owner.inner)
    assert [id(v) for v in owner.variables] == [id(owner.own)], _changed(
        "untrack", "the sub-metric's variables are still listed"
    )
    assert owner.inner.name == "inner"  # the attribute itself stays
    compat_metrics.untrack(owner, owner.own)
    assert owner.variables == [], _changed("untrack", "the variable is still listed")


def _float64_state(shape):
    """A float64 metric variable (float32 on JAX without x64), as `ClassStatistics` holds."""
    dtype = "float64"
    if keras.backend.backend() == "jax":
        import jax

        dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    owner = _Owner()
    return owner.add_variable(shape=shape, initializer="zeros", dtype=dtype, name="state")


def test_in_place_updates_add_what_they_say():
    variable = _float64_state((4, 3))
    backend_value = variable.value
    in_place = compat_metrics.in_place_update(variable) is not None
    assert in_place == (keras.backend.backend() in ("torch", "tensorflow")), _changed(
        "in_place_update", f"{type(backend_value).__name__} behind a metric variable"
    )
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5, 3)).astype("float32")
    indices = np.array([0, 2, 0, 3, 2], "int32")
    want = np.zeros((4, 3))
    np.add.at(want, indices, rows.astype("float64"))
    compat_metrics.scatter_add(variable, keras.ops.convert_to_tensor(indices), rows)
    compat_metrics.add_to(variable, np.ones((4, 3), "float32"))
    factor = keras.ops.convert_to_tensor(0.5, variable.dtype)
    compat_metrics.add_scaled(variable, keras.ops.convert_to_tensor(rows[:4]), factor)
    want = want + 1.0 + 0.5 * rows[:4].astype("float64")
    eps = np.finfo(variable.dtype).eps
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(variable.value),
        want,
        atol=8 * eps * np.abs(want).max(),
        err_msg=_changed("scatter_add/add_to/add_scaled", "the state's sums are wrong"),
    )
    if in_place:  # written through the backend variable, not replaced
        assert variable.value is backend_value, _changed(
            "in_place_update", "the backend variable was replaced"
        )


def test_rescale_under_cond_only_where_cond_skips_work():
    assert compat_metrics.rescale_under_cond() == (keras.backend.backend() == "jax")


# --------------------------------------------------------------------------- #
# keras_nc.compat.distribute: identities outside a distributed step
# --------------------------------------------------------------------------- #


def test_distribute_is_the_identity_outside_a_strategy():
    value = keras.ops.convert_to_tensor(3.0)
    assert distribute.replicas_in_sync() == 1
    assert distribute.scale_loss_for_replicas(value) is value
    assert distribute.mean_over_replicas(value) is value
    assert distribute.batch_distribution() is None


def test_tensorflow_one_replica_strategy_keeps_values():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute")
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])

    def step():
        value = tf.constant(6.0)
        return (
            distribute.replicas_in_sync(),
            distribute.scale_loss_for_replicas(value),
            distribute.mean_over_replicas(value),
        )

    with strategy.scope():
        replicas, scaled, mean = strategy.run(step)
    assert replicas == 1
    assert float(scaled) == float(mean) == 6.0


def test_jax_batch_distribution_is_keras_data_parallel():
    if keras.backend.backend() != "jax":
        pytest.skip("keras.distribution runs on JAX only")
    import jax

    data_parallel = keras.distribution.DataParallel(devices=jax.devices()[:1])
    keras.distribution.set_distribution(data_parallel)
    try:
        got = distribute.batch_distribution()
    finally:
        keras.distribution.set_distribution(None)
    assert got is data_parallel, _changed(
        "distribute.batch_distribution", "DataParallel no longer names a batch axis"
    )


# --------------------------------------------------------------------------- #
# keras_nc.compat.backend and the backend decisions of keras_nc.compat.linalg
# --------------------------------------------------------------------------- #


def test_values_known_eagerly_not_under_tracing():
    message = _changed("backend.values_known", "traced tensors are not told apart")
    x = keras.ops.ones((2,))
    assert compat_backend.values_known(x), message
    seen = {}

    def probe(a):
        seen["known"] = compat_backend.values_known(a)
        return a

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jax.jit(probe)(x)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.function(probe)(x)
    else:
        pytest.skip("torch.compile tracing is too slow for this file")
    assert seen["known"] is False, message


def test_widest_float_is_a_dtype_the_backend_keeps():
    dtype = compat_backend.widest_float()
    x = keras.ops.convert_to_tensor(np.ones(2), dtype=dtype)
    assert keras.backend.standardize_dtype(x.dtype) == dtype, _changed(
        "backend.widest_float", f"{dtype} is not kept"
    )


def test_gradient_may_be_taken_only_rules_out_eager_torch_without_grad():
    x = keras.ops.ones((2,))
    if keras.backend.backend() != "torch":
        assert compat.gradient_may_be_taken(x)
        return
    import torch

    message = _changed("gradient_may_be_taken", "PyTorch's requires_grad is not read")
    assert not compat.gradient_may_be_taken(torch.ones(2)), message
    assert compat.gradient_may_be_taken(torch.ones(2, requires_grad=True)), message
    with torch.no_grad():
        assert not compat.gradient_may_be_taken(torch.ones(2, requires_grad=True)), message


def test_backend_decisions_of_linalg():
    backend = keras.backend.backend()
    assert compat.decomposes_one_matrix_per_call() == (backend == "jax")
    assert compat.eager_ops_compile_per_shape() == (backend == "jax")
    assert compat.compiled_branches_on_data() == (backend != "torch")
