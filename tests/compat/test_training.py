"""The Keras hooks of `keras_nc.compat.training`; each failure names Keras' version and the hook.

Plain Keras models only, so that a failure names the Keras behaviour that
changed, not a keras-nc bug.
"""

import contextlib

import keras
import numpy as np
import pytest

from keras_nc import compat
from keras_nc.compat import training as compat_training
from keras_nc.compat.backend import backend_name

BACKEND = backend_name()


def changed(hook, what):
    """The failure message: which Keras release broke which hook, and how."""
    return f"Keras {keras.__version__} changed what compat.training.{hook} relies on: {what}"


class _Plain(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


def test_untracked_setattr_escapes_keras_tracking():
    layer = _Plain()
    metric = keras.metrics.Mean(name="extra")
    compat_training.untracked_setattr(layer, "plain", [metric])
    assert type(layer.plain) is list, changed("untracked_setattr", "the list was wrapped")
    assert metric not in layer.metrics, changed("untracked_setattr", "the metric was collected")
    layer.tracked = [keras.metrics.Mean(name="tracked")]  # what the hook avoids
    assert type(layer.tracked) is not list, changed(
        "untracked_setattr", "Keras no longer wraps assigned lists (the hook may go)"
    )


class _KeepsArguments(_Plain):
    """Overrides the public `get_compile_config`, as `CollapseTrainer` does."""

    def get_compile_config(self):
        config = super().get_compile_config()
        config["loss"] = "mean_absolute_error"
        return config


def test_keras_saves_and_reloads_the_overridden_compile_config():
    """`CollapseTrainer` keeps `compile`'s arguments by overriding `get_compile_config`."""
    model = _KeepsArguments(name="keeps_arguments")
    model.build((None, 3))
    model.compile(optimizer="sgd", loss="mse")
    config = keras.saving.serialize_keras_object(model)
    saved = config.get("compile_config", {}).get("loss")
    assert saved == "mean_absolute_error", changed(
        "get_compile_config (CollapseTrainer)", f"Keras saved the loss {saved!r}"
    )
    restored = keras.saving.deserialize_keras_object(
        config, custom_objects={"_KeepsArguments": _KeepsArguments}, safe_mode=True
    )
    loss = restored.get_compile_config().get("loss")
    assert restored.compiled and loss == "mean_absolute_error", changed(
        "get_compile_config (CollapseTrainer)",
        f"the loaded model was recompiled with loss {loss!r}, not the saved compile config",
    )


def test_the_compiled_metrics_are_one_container_in_model_metrics():
    """`CollapseTrainer.compute_metrics` updates the container it finds in `model.metrics`."""
    model = _Plain()
    model.build((None, 3))
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    containers = [m for m in model.metrics if isinstance(m, compat.CompileMetrics)]
    assert len(containers) == 1, changed("CompileMetrics in model.metrics", f"{model.metrics}")
    y, y_pred = np.zeros((4, 2), "float32"), np.full((4, 2), 0.5, "float32")
    containers[0].update_state(y, y_pred)
    result = keras.ops.convert_to_numpy(containers[0].result()["mae"])
    assert result == pytest.approx(0.5), changed("CompileMetrics", f"mae {result}, not 0.5")


def test_portable_optimizer_config_names_the_public_class():
    config = {"optimizer": keras.saving.serialize_keras_object(keras.optimizers.SGD(0.1))}
    module = config["optimizer"]["module"]
    prefix = compat_training.BACKEND_OPTIMIZER_MODULE
    if BACKEND == "torch":
        assert module.startswith(prefix), changed(
            "portable_optimizer_config", f"PyTorch's SGD is saved under {module!r}"
        )
    else:
        assert module == "keras.optimizers", changed("portable_optimizer_config", module)
    portable = compat_training.portable_optimizer_config(config)
    assert portable["optimizer"]["module"] == "keras.optimizers"
    optimizer = keras.saving.deserialize_keras_object(portable["optimizer"])
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.1)


class _LocalBatchModel(compat_training.LocalBatchSymbolicBuild, _Plain):
    pass


def test_local_batch_symbolic_build_builds_from_keras_epoch_iterator(monkeypatch):
    """TensorFlow: the mixin reads Keras' epoch iterator; elsewhere Keras never calls the hook."""
    if BACKEND != "tensorflow":
        assert not hasattr(keras.Model, "_maybe_symbolic_build"), changed(
            "LocalBatchSymbolicBuild", f"the {BACKEND} trainer now has _maybe_symbolic_build"
        )
        return
    import tensorflow as tf

    asked = []
    monkeypatch.setattr(compat_training, "spans_workers", lambda model: asked.append(model) or True)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = _LocalBatchModel(name="local_batch_model")
        model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    try:
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    except Exception as error:
        pytest.fail(changed("LocalBatchSymbolicBuild", f"{type(error).__name__}: {error}"))
    assert asked, changed("LocalBatchSymbolicBuild", "fit no longer calls _maybe_symbolic_build")
    assert model.built and tuple(model.dense.kernel.shape) == (3, 2)


def test_spans_workers_is_false_in_one_process():
    model = _Plain()
    assert compat_training.spans_workers(model) is False
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
            mirrored = _Plain()
        assert compat_training.spans_workers(mirrored) is False


def test_where_the_backend_computes():
    if BACKEND == "jax":
        import jax

        assert compat_training.jax_on_cpu() == (jax.default_backend() == "cpu")
    else:
        assert compat_training.jax_on_cpu() is False
    if BACKEND == "tensorflow":
        import tensorflow as tf

        assert compat_training.tensorflow_on_cpu() == (not tf.config.list_physical_devices("GPU"))
    else:
        assert compat_training.tensorflow_on_cpu() is False


def test_one_blas_thread_on_jax_cpu_only():
    context = compat_training.one_blas_thread()
    if not compat_training.jax_on_cpu():
        assert isinstance(context, contextlib.nullcontext)
        return
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with context:
        inside = [
            i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
        ]
    assert all(count == 1 for count in inside), inside
