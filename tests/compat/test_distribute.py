"""`keras_nc.compat.distribute`: replicas and batch distribution, inside and outside a strategy.

Each failure names the Keras version and the hook (`keras_changed`).
"""

import keras
import pytest

from keras_nc.compat import distribute
from tests.helpers import keras_changed


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
    assert got is data_parallel, keras_changed(
        "distribute.batch_distribution", "DataParallel no longer names a batch axis"
    )
