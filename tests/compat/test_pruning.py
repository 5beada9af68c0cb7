"""The Keras hooks that `keras_nc.pruning` relies on; each failure names Keras' version and hook.

Plain Keras models only, so that a failure names the Keras behaviour that changed.
"""

import keras
import numpy as np

from keras_nc.compat import pruning as compat_pruning
from tests.helpers import keras_changed


class _Block(keras.layers.Layer):
    """A plain layer holding a sublayer: no public list of its layers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(3, name="inner")

    def call(self, x):
        return self.inner(x)


def test_flatten_layers_finds_layers_nested_in_plain_layers():
    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Dense(2, name="out")(_Block(name="block")(inputs))
    model = keras.Model(inputs, outputs, name="m")
    names = [layer.name for layer in compat_pruning.flatten_layers(model)]
    assert names[0] == "m", keras_changed("pruning.flatten_layers", f"the model first: {names}")
    assert {"block", "inner", "out"} <= set(names), keras_changed(
        "pruning.flatten_layers", f"a layer nested in a plain layer is missing: {names}"
    )
    assert "inner" not in [layer.name for layer in model.layers], keras_changed(
        "pruning.flatten_layers", "Model.layers now lists nested layers (the hook may go)"
    )


def test_optimizers_apply_variable_constraints_after_each_update():
    # Public Keras, but what KeepPruned builds on: a constraint set on a built variable
    # is applied by the optimizer inside a train step traced after it was set.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    kernel = model.get_layer("d").kernel
    kernel.constraint = lambda w: keras.ops.multiply(w, 0.0)
    model.make_train_function(force=True)
    model.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=1, verbose=0)
    assert not np.any(keras.ops.convert_to_numpy(kernel)), keras_changed(
        "pruning (KeepPruned)", "optimizers no longer apply `variable.constraint` after updates"
    )
