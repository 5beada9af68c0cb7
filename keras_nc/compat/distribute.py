"""How the backends distribute a step: TensorFlow's replicas, Keras' distribution API on JAX.

Two models of data parallelism meet here. TensorFlow's `tf.distribute`
strategies run one replica of the step per device, each on its own slice of
the batch; losses are scaled by `1 / replicas` and gradients summed
(`scale_loss_for_replicas`, `replicas_in_sync`, `mean_over_replicas`).
Keras' distribution API (`keras.distribution`, JAX only) runs one program
over the global batch (`batch_distribution`). PyTorch has neither: every
function here is then the identity or 1.

Example:

>>> from keras_nc.compat import distribute
>>> distribute.replicas_in_sync(), distribute.scale_loss_for_replicas(2.0)
(1, 2.0)
"""

import keras

from keras_nc.compat.backend import is_backend


def replicas_in_sync():
    """Number of `tf.distribute` replicas running the current step (1 outside one)."""
    if not is_backend("tensorflow"):
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def scale_loss_for_replicas(value):
    """Divides `value` by the replicas in sync under a `tf.distribute` strategy, as Keras losses do.

    Each replica's loss is `1/num_replicas` of its batch term and the gradients
    are summed across replicas, so the step optimises the mean over replicas.
    Only TensorFlow's strategies compute losses per replica: `value` elsewhere.
    """
    if not is_backend("tensorflow"):
        return value
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return value if replicas == 1 else value / replicas


def mean_over_replicas(value):
    """The mean of `value` over the replicas of a `tf.distribute` step (else `value`)."""
    if not is_backend("tensorflow"):
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)


def batch_distribution():
    """The active `keras.distribution` that names a batch axis, on a backend that runs one.

    Only JAX runs `keras.distribution` (one program over the global batch);
    None on TensorFlow (where a `tf.distribute` replica already sees its own
    slice), on PyTorch, and without a distribution that splits the batch.
    """
    if not is_backend("jax"):
        return None
    distribution = keras.distribution.distribution()
    if getattr(distribution, "batch_dim_name", None) is None:
        return None
    return distribution
