"""The Keras private names of `keras_nc.compat`: each test fails loudly when Keras changes one.

These use plain Keras models only, so a failure names the Keras behaviour that
changed, not a keras-nc bug.
"""

import keras
import numpy as np
import pytest

from keras_nc import compat


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
    assert compat.metric_direction(metric) == direction
    model = _ModelWithContainer(metric)
    model.compile(optimizer="sgd", loss="mse")
    stopper = keras.callbacks.EarlyStopping(monitor="val_score", patience=0)
    stopper.set_model(model)
    stopper.on_train_begin()
    stopper.on_epoch_end(0, {"val_score": better})
    stopper.on_epoch_end(1, {"val_score": worse})
    assert model.stop_training
    assert stopper.best == better


def test_monitor_callbacks_refuse_an_undeclared_metric():
    """Without the container Keras cannot tell the direction: what the hook works around."""
    model = _ModelWithContainer(_Constant(name="score"))
    model.compile(optimizer="sgd", loss="mse")
    stopper = keras.callbacks.EarlyStopping(monitor="val_score")
    stopper.set_model(model)
    stopper.on_train_begin()
    with pytest.raises(ValueError, match="maximized or minimized"):
        stopper.on_epoch_end(0, {"val_score": 1.0})


def test_metrics_list_tracks_its_metrics_variables():
    """Keras collects metric variables (JAX's stateless steps) through `variables`."""
    metric = _Constant(name="score")
    container = compat.MetricsList([metric])
    assert len(container.variables) == len(metric.variables) == 2


def test_compile_metrics_lists_its_metrics_after_build():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    model.evaluate(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    containers = [m for m in model.metrics if isinstance(m, compat.CompileMetrics)]
    assert [m.name for m in containers[0].metrics] == ["mae"]


def test_bad_direction():
    with pytest.raises(ValueError, match='`direction` must be "up" or "down"'):
        compat.set_metric_direction(_Constant(), "max")


def test_tensorflow_xla_tracing_is_seen_only_inside_an_xla_trace():
    assert not compat.tensorflow_xla_tracing()  # eager, any backend
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    seen = {}

    def probe(x):
        seen["traced"] = compat.tensorflow_xla_tracing()
        return x

    tf.function(probe, jit_compile=True)(tf.zeros(()))
    assert seen["traced"] is True
    tf.function(probe, jit_compile=False)(tf.zeros(()))
    assert seen["traced"] is False


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
    np.testing.assert_allclose(got, want, atol=2 * 6 * np.finfo(np.float32).eps)
