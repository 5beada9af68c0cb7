"""`keras_nc.pruning.magnitude_prune`: exact sparsity, the largest weights kept, a copy.

Every comparison is exact: pruning copies weights and writes zeros, so the
kept entries equal the original's bit for bit and the counts are integers.
"""

import math
import re

import keras
import numpy as np
import pytest

import keras_nc  # noqa: F401  (registers CollapseClassifier for saving)
from keras_nc.models import CollapseClassifier
from keras_nc.pruning import magnitude_prune, prunable_weights, prune_masks
from tests.helpers import to_numpy

PRUNABLE = ("conv/kernel", "hidden/kernel", "out/kernel")


def conv_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(keras.layers.ReLU()(x))
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(x))
    # Non-trivial biases and BN statistics, to check that they are copied untouched.
    for variable in model.weights:
        if variable.path.endswith(("bias", "beta", "moving_mean")):
            variable.assign(np.linspace(0.1, 0.9, int(np.prod(variable.shape))))
    return model


def values(model):
    return {v.path: to_numpy(v) for v in model.weights}


def reference_masks(arrays, sparsity):
    """Float64 NumPy reference: keep the entries above the k-th smallest magnitude.

    Random normal weights have no ties (with probability 1), so a threshold
    defines the same set as any tie-breaking rule.
    """
    magnitudes = np.sort(np.concatenate([np.abs(a).ravel() for a in arrays]).astype("float64"))
    k = round(sparsity * magnitudes.size)
    threshold = magnitudes[k - 1] if k else -np.inf
    return [np.abs(a).astype("float64") > threshold for a in arrays]


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.77, 0.95])
def test_global_scope_keeps_exactly_the_largest_weights(sparsity):
    model = conv_model()
    before = values(model)
    pruned, masks = magnitude_prune(model, sparsity)
    assert sorted(masks) == sorted(PRUNABLE)
    after = values(pruned)
    kernels = [before[p] for p in PRUNABLE]
    total = sum(k.size for k in kernels)
    zeros = sum(int(np.sum(after[p] == 0)) for p in PRUNABLE)
    assert abs(zeros - sparsity * total) <= 1
    for path, expected in zip(PRUNABLE, reference_masks(kernels, sparsity), strict=True):
        np.testing.assert_array_equal(masks[path], expected)
        np.testing.assert_array_equal(after[path], np.where(expected, before[path], 0))
    # Everything else copied exactly; the original unchanged.
    for path in before:
        if path not in masks:
            np.testing.assert_array_equal(after[path], before[path])
    for path, value in values(model).items():
        np.testing.assert_array_equal(value, before[path])
    assert pruned is not model


def test_layer_scope_prunes_each_tensor_to_the_sparsity():
    model = conv_model()
    before = values(model)
    pruned, masks = magnitude_prune(model, 0.6, scope="layer")
    after = values(pruned)
    for path in PRUNABLE:
        zeros = int(np.sum(after[path] == 0))
        assert abs(zeros - 0.6 * before[path].size) <= 1, path
        (expected,) = reference_masks([before[path]], 0.6)
        np.testing.assert_array_equal(masks[path], expected)
    # Global pruning differs: the layers lose different fractions.
    _, global_masks = magnitude_prune(model, 0.6)
    fractions = {p: float(np.mean(~global_masks[p])) for p in PRUNABLE}
    assert len({round(f, 2) for f in fractions.values()}) > 1, fractions


def test_ties_and_existing_zeros_give_exact_counts():
    # Integer-valued weights: many ties; zeros count toward the sparsity.
    arrays = [np.array([[0.0, 1.0, 1.0], [2.0, 0.0, 1.0]]), np.array([1.0, 2.0, 0.0, 3.0])]
    for sparsity in (0.1, 0.3, 0.5, 0.9):
        masks = prune_masks(arrays, sparsity)
        removed = sum(int(np.sum(~m)) for m in masks)
        assert removed == round(sparsity * 10)
        kept = np.concatenate([np.abs(a)[m] for a, m in zip(arrays, masks, strict=True)])
        gone = np.concatenate([np.abs(a)[~m] for a, m in zip(arrays, masks, strict=True)])
        assert gone.max(initial=0) <= kept.min()
    zeros_first = prune_masks(arrays, 0.3)
    assert all(not m[a == 0].any() for a, m in zip(arrays, zeros_first, strict=True))


def test_include_selects_weights():
    model = conv_model()
    assert [model.weights[i].path for i in prunable_weights(model, ["hidden"])] == ["hidden/kernel"]
    _, masks = magnitude_prune(model, 0.5, include=lambda layer, v: v.name == "bias")
    assert sorted(masks) == ["conv/bias", "hidden/bias", "out/bias"]
    with pytest.raises(ValueError, match="selects no weight"):
        magnitude_prune(model, 0.5, include=lambda layer, v: False)
    with pytest.raises(ValueError, match=r"does not have.*'nope'"):
        magnitude_prune(model, 0.5, include=["nope"])
    with pytest.raises(ValueError, match="sequence of layer names"):
        magnitude_prune(model, 0.5, include="hidden")


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, math.nan, "0.5", True, None])
def test_sparsity_outside_the_unit_interval_is_refused(sparsity):
    # The message names the argument, the interval and the received value.
    message = r"`sparsity` must be a real number in \[0, 1\).*" + re.escape(f"={sparsity!r}")
    with pytest.raises(ValueError, match=message):
        magnitude_prune(conv_model(), sparsity)


def test_unknown_scope_is_refused():
    with pytest.raises(ValueError, match=r"`scope` must be one of.*'tensor'"):
        magnitude_prune(conv_model(), 0.5, scope="tensor")


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(6, activation="relu")
        self.norm = keras.layers.BatchNormalization()
        self.out = keras.layers.Dense(3)

    def call(self, x, training=False):
        return self.out(self.norm(self.hidden(x), training=training))


def test_subclassed_and_collapse_classifier_models():
    keras.utils.set_random_seed(1)
    sub = Subclassed()
    sub(np.zeros((2, 5), "float32"))
    inputs = keras.Input((5,))
    backbone = keras.Model(inputs, keras.layers.Dense(6, activation="relu")(inputs))
    collapse = CollapseClassifier(backbone, num_classes=3)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    for model in (sub, collapse):
        before = values(model)
        pruned, masks = magnitude_prune(model, 0.5)
        assert type(pruned) is type(model) and len(masks) == 2
        kept = sum(int(m.sum()) for m in masks.values())
        assert kept == sum(m.size for m in masks.values()) // 2
        pruned_values = list(values(pruned).values())
        for (path, value), copied in zip(before.items(), pruned_values, strict=True):
            if path.endswith("kernel"):
                assert np.sum(copied == 0) > 0 and np.all((copied == 0) | (copied == value))
            else:
                np.testing.assert_array_equal(copied, value)
        assert to_numpy(pruned(x)).shape == (4, 3)
        for path, value in values(model).items():
            np.testing.assert_array_equal(value, before[path])


def test_keras_file_keeps_the_zeros(tmp_path):
    inputs = keras.Input((5,))
    backbone = keras.Model(inputs, keras.layers.Dense(6, activation="relu")(inputs))
    for model in (conv_model(), CollapseClassifier(backbone, num_classes=3)):
        pruned, masks = magnitude_prune(model, 0.7)
        path = str(tmp_path / f"{model.name}.keras")
        pruned.save(path)
        loaded = keras.saving.load_model(path)
        for saved, restored in zip(pruned.weights, loaded.weights, strict=True):
            np.testing.assert_array_equal(to_numpy(restored), to_numpy(saved))
        zeros = sum(int(np.sum(to_numpy(loaded.weights[i]) == 0)) for i in prunable_weights(loaded))
        assert zeros == sum(int(np.sum(~m)) for m in masks.values())


class Block(keras.layers.Layer):
    """A plain layer holding a `Dense`: its kernel is found although `Model.layers` misses it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(4, name="inner")
        self.scale = self.add_weight(shape=(4, 4), initializer="ones", name="scale")

    def call(self, x):
        return keras.ops.matmul(self.inner(x), self.scale)


def test_kernels_nested_in_plain_layers_and_the_owner_given_to_include():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(Block(name="block")(inputs)))
    paths = [model.weights[i].path for i in prunable_weights(model)]
    assert paths == ["block/inner/kernel", "out/kernel"]
    # The block's own 2-axis weight belongs to the block, the inner kernel to `inner`.
    owned = [model.weights[i].path for i in prunable_weights(model, include=["block"])]
    assert owned == ["block/scale"]
    seen = []
    prunable_weights(model, include=lambda layer, v: seen.append((layer.name, v.name)) or True)
    assert ("block", "scale") in seen and ("inner", "kernel") in seen and ("inner", "bias") in seen
