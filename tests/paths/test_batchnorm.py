"""`keras_nc.paths.recompute_batchnorm_statistics` against a float64 NumPy computation."""

import keras
import numpy as np

from keras_nc import paths
from tests.helpers import to_numpy
from tests.tolerances import float32_tolerance

DIM, UNITS, BATCH = 5, 3, 16


def _error(variable, expected):
    """The largest absolute difference between a variable and its float64 reference."""
    return float(np.max(np.abs(to_numpy(variable).astype(np.float64) - expected)))


def _nested_model():
    """A functional model whose Dense -> BatchNormalization sits in a nested Sequential."""
    keras.utils.set_random_seed(0)
    inner = keras.Sequential(
        [keras.Input((DIM,)), keras.layers.Dense(UNITS), keras.layers.BatchNormalization()]
    )
    inputs = keras.Input((DIM,))
    outputs = keras.layers.Dense(2)(keras.layers.Dropout(0.5)(inner(inputs)))
    return keras.Model(inputs, outputs), inner


def test_statistics_are_the_average_of_the_batches_statistics():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(40, DIM)) * 2.0 + 1.0).astype("float32")  # batches 16, 16, 8
    model, inner = _nested_model()
    dense, layer = inner.layers
    layer.trainable = False  # restored afterwards; its statistics are still recomputed
    layer.moving_mean.assign(np.full(UNITS, 7.0, "float32"))
    before = {id(v): to_numpy(v) for v in model.weights}
    stats = {id(layer.moving_mean), id(layer.moving_variance)}
    assert paths.recompute_batchnorm_statistics(model, (x, None), batch_size=BATCH) == 1

    kernel, bias = (to_numpy(w).astype(np.float64) for w in dense.weights)
    batches = [x[i : i + BATCH].astype(np.float64) @ kernel + bias for i in range(0, 40, BATCH)]
    mean = np.mean([h.mean(axis=0) for h in batches], axis=0)
    variance = np.mean([h.var(axis=0) for h in batches], axis=0)  # Keras' biased variance
    scale = np.max(np.abs(np.concatenate(batches)))
    # A Dense output (DIM products), a batch mean/variance (BATCH terms), then one
    # multiply-add per batch in the running average (3 batches): float32 round-off.
    terms = DIM + BATCH + 2 * len(batches)
    assert _error(layer.moving_mean, mean) <= float32_tolerance(terms, scale)
    assert _error(layer.moving_variance, variance) <= float32_tolerance(terms, scale**2)
    assert layer.momentum == 0.99 and layer.trainable is False  # restored
    for variable in model.weights:  # every other weight exactly as it was
        if id(variable) not in stats:
            np.testing.assert_array_equal(to_numpy(variable), before[id(variable)])


def test_a_dataset_of_batches_gives_the_same_statistics_and_no_layer_is_none():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, DIM)).astype("float32")
    model, inner = _nested_model()
    layer = inner.layers[1]

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return x[BATCH * index : BATCH * (index + 1)], np.zeros(BATCH)

    paths.recompute_batchnorm_statistics(model, Batches())
    from_dataset = to_numpy(layer.moving_variance)
    paths.recompute_batchnorm_statistics(model, x, batch_size=BATCH)
    # The same batches, the same float32 operations: the same values.
    np.testing.assert_array_equal(to_numpy(layer.moving_variance), from_dataset)
    plain = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(2)])
    assert paths.recompute_batchnorm_statistics(plain, x) == 0


def test_interpolate_recomputes_the_statistics_of_the_interpolated_network():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, DIM)).astype("float32")
    model_a, inner_a = _nested_model()
    model_b = keras.models.clone_model(model_a)
    model_b.set_weights([w * 2.0 for w in model_a.get_weights()])  # exact in float32
    middle = paths.interpolate(model_a, model_b, 0.5, batchnorm_data=x, batch_size=32)
    reference = paths.interpolate(model_a, model_b, 0.5)
    paths.recompute_batchnorm_statistics(reference, x, batch_size=32)
    for mine, theirs in zip(middle.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # One batch: the statistics are that batch's, the interpolated Dense's output.
    kernel = 1.5 * to_numpy(inner_a.layers[0].kernel).astype(np.float64)
    bias = 1.5 * to_numpy(inner_a.layers[0].bias).astype(np.float64)
    hidden = x.astype(np.float64) @ kernel + bias
    layer = paths.batchnorm.batchnorm_layers(middle)[0]
    scale = np.max(np.abs(hidden))
    assert _error(layer.moving_mean, hidden.mean(0)) <= float32_tolerance(DIM + 32, scale)


class Block(keras.layers.Layer):
    """A plain layer holding a BatchNormalization layer (as a residual block does)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.norm = keras.layers.BatchNormalization()

    def call(self, x, training=None):
        return x + self.norm(x, training=training)


def test_batchnormalization_inside_a_plain_layer_is_found():
    x = np.random.default_rng(3).normal(size=(16, DIM)).astype("float32")
    inputs = keras.Input((DIM,))
    block = Block()
    model = keras.Model(inputs, block(inputs))
    assert paths.recompute_batchnorm_statistics(model, x, batch_size=16) == 1
    # One batch of the inputs themselves: a mean of 16 float32 terms.
    scale = np.max(np.abs(x))
    expected = x.astype(np.float64).mean(axis=0)
    assert _error(block.norm.moving_mean, expected) <= float32_tolerance(16, scale)
