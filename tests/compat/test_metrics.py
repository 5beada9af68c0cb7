"""The Keras private names of `keras_nc.compat.metrics`: each fails loudly when Keras changes.

These use plain Keras models only, so a failure names the Keras behaviour that
changed; the message names the Keras version and the hook (`keras_changed`).
"""

import keras
import numpy as np
import pytest

from keras_nc import compat
from keras_nc.compat import metrics as compat_metrics
from tests.helpers import keras_changed


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
    assert compat.metric_direction(metric) == direction, keras_changed(
        "metric_direction", "the direction set is not read back"
    )
    model = _ModelWithContainer(metric)
    model.compile(optimizer="sgd", loss="mse")
    stopper = keras.callbacks.EarlyStopping(monitor="val_score", patience=0)
    stopper.set_model(model)
    stopper.on_train_begin()
    stopper.on_epoch_end(0, {"val_score": better})
    stopper.on_epoch_end(1, {"val_score": worse})
    message = keras_changed(
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
            keras_changed("MetricsList", "EarlyStopping accepted a metric of no declared direction")
        )


def test_metrics_list_tracks_its_metrics_variables():
    """Keras collects metric variables (JAX's stateless steps) through `variables`."""
    metric = _Constant(name="score")
    container = compat.MetricsList([metric])
    assert len(container.variables) == len(metric.variables) == 2, keras_changed(
        "MetricsList", "the container no longer lists its metrics' variables"
    )


def test_compile_metrics_lists_its_metrics_after_build():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    model.evaluate(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    containers = [m for m in model.metrics if isinstance(m, compat.CompileMetrics)]
    assert containers, keras_changed("CompileMetrics", "model.metrics no longer holds one")
    assert [m.name for m in containers[0].metrics] == ["mae"], keras_changed(
        "CompileMetrics", "it no longer lists the compiled metrics"
    )


def test_bad_direction():
    with pytest.raises(ValueError, match='`direction` must be "up" or "down"'):
        compat.set_metric_direction(_Constant(), "max")


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
    assert len(owner.variables) == 1 + len(inner_variables), keras_changed(
        "untrack", "a metric no longer tracks a sub-metric assigned to an attribute"
    )
    compat.untrack(owner, owner.inner)
    assert [id(v) for v in owner.variables] == [id(owner.own)], keras_changed(
        "untrack", "the sub-metric's variables are still listed"
    )
    assert owner.inner.name == "inner"  # the attribute itself stays
    compat_metrics.untrack(owner, owner.own)
    assert owner.variables == [], keras_changed("untrack", "the variable is still listed")


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
    assert in_place == (keras.backend.backend() in ("torch", "tensorflow")), keras_changed(
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
        err_msg=keras_changed("scatter_add/add_to/add_scaled", "the state's sums are wrong"),
    )
    if in_place:  # written through the backend variable, not replaced
        assert variable.value is backend_value, keras_changed(
            "in_place_update", "the backend variable was replaced"
        )


def test_rescale_under_cond_only_where_cond_skips_work():
    assert compat_metrics.rescale_under_cond() == (keras.backend.backend() == "jax")
