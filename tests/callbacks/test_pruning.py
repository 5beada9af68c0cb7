"""`keras_nc.callbacks.KeepPruned`: pruned weights stay exactly zero while training.

Exact comparisons only: the constraint multiplies by 0 or 1 after each update.
"""

import keras
import numpy as np
import pytest

from keras_nc.callbacks import KeepPruned
from keras_nc.models import CollapseClassifier
from keras_nc.pruning import magnitude_prune
from tests.helpers import to_numpy
from tests.tolerances import EPS32, SAFETY


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 6)).astype("float32"), (np.arange(32) % 3).astype("int32")


def dense_model(constraint=None):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(10, activation="relu", name="hidden", kernel_constraint=constraint)(
        inputs
    )
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def compile_sgd(model, jit_compile="auto"):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )


def kernels(model, masks):
    by_path = {v.path: v for v in model.weights}
    return {path: to_numpy(by_path[path]) for path in masks}


def assert_kept_pruned(model, masks, before):
    for path, value in kernels(model, masks).items():
        mask = masks[path]
        assert np.all(value[~mask] == 0), path  # exactly zero
        assert np.any(value[mask] != before[path][mask]), path  # the kept weights trained


def test_pruned_weights_stay_zero_over_two_fits():
    x, y = data()
    pruned, masks = magnitude_prune(dense_model(), 0.6)
    compile_sgd(pruned)
    callback = KeepPruned(masks)
    before = kernels(pruned, masks)
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    assert_kept_pruned(pruned, masks, before)
    assert sorted(callback.active_masks) == sorted(masks)
    middle = kernels(pruned, masks)
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    assert_kept_pruned(pruned, masks, middle)
    # The constraints are the layers' own again after `fit`: here none.
    assert all(v.constraint is None for v in pruned.weights)
    # Without the callback, training moves the pruned weights off zero (a test that can fail).
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0)
    moved = kernels(pruned, masks)
    assert any(np.any(moved[path][~mask] != 0) for path, mask in masks.items())


def test_pruned_weights_stay_zero_under_jit_compile():
    # XLA on JAX and TensorFlow, torch.compile on PyTorch (one fit: its compilation is slow).
    x, y = data()
    pruned, masks = magnitude_prune(dense_model(), 0.6)
    compile_sgd(pruned, jit_compile=True)
    before = kernels(pruned, masks)
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[KeepPruned(masks)])
    assert pruned.jit_compile
    assert_kept_pruned(pruned, masks, before)


def test_masks_from_zeros_after_loading_and_a_layer_constraint(tmp_path):
    x, y = data()
    pruned, masks = magnitude_prune(dense_model(constraint=keras.constraints.MaxNorm(0.5)), 0.5)
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    compile_sgd(loaded)
    own = loaded.get_layer("hidden").kernel.constraint
    callback = KeepPruned()  # the masks are the loaded model's zeros
    before = {v.path: to_numpy(v) for v in loaded.weights}
    loaded.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    by_shape = {m.shape: m for m in masks.values()}
    for path, mask in callback.active_masks.items():
        np.testing.assert_array_equal(mask, by_shape[mask.shape])
        value = {v.path: to_numpy(v) for v in loaded.weights}[path]
        assert np.all(value[~mask] == 0) and np.any(value[mask] != before[path][mask])
    assert loaded.get_layer("hidden").kernel.constraint is own  # restored
    # The layer's own constraint still applied: MaxNorm(0.5) of each column, up to the
    # float32 rounding of MaxNorm's rescaling (a product and a quotient of float32 norms:
    # a few roundings of the norm, bounded by SAFETY * 4 EPS32 relative).
    hidden = to_numpy(loaded.get_layer("hidden").kernel).astype("float64")
    norms = np.sqrt((hidden**2).sum(axis=0))
    assert norms.max() <= 0.5 * (1 + SAFETY * 4 * EPS32)


def test_collapse_classifier_fine_tunes_with_its_masks():
    x, y = data()
    keras.utils.set_random_seed(2)
    inputs = keras.Input((6,))
    backbone = keras.Model(inputs, keras.layers.Dense(8, activation="relu")(inputs))
    pruned, masks = magnitude_prune(CollapseClassifier(backbone, num_classes=3), 0.8)
    compile_sgd(pruned)
    before = kernels(pruned, masks)
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[KeepPruned(masks)])
    assert_kept_pruned(pruned, masks, before)


def test_mismatched_masks_are_refused():
    x, y = data()
    pruned, masks = magnitude_prune(dense_model(), 0.5)
    compile_sgd(pruned)
    (path, mask), *_ = masks.items()
    with pytest.raises(ValueError, match="'nowhere/kernel' names no weight"):
        pruned.fit(x, y, epochs=1, verbose=0, callbacks=[KeepPruned({"nowhere/kernel": mask})])
    with pytest.raises(ValueError, match=f"{path!r} has shape"):
        pruned.fit(x, y, epochs=1, verbose=0, callbacks=[KeepPruned({path: mask.T})])
    with pytest.raises(ValueError, match="`masks` must be None or a dict"):
        KeepPruned([mask])
    assert "given" in str(KeepPruned(masks).get_config())
    assert "array" not in str(KeepPruned(masks).get_config())
