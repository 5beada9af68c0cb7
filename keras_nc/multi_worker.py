"""A training step's logs under TensorFlow's `MultiWorkerMirroredStrategy` (several processes).

Keras 3.15 averages a step's logs over replicas with
`strategy.reduce("MEAN", value, axis=0)`; across workers that reduction needs
an axis to reduce (keras-team/keras#20585). `logs_across_workers` gives each
scalar log one of length 1 there; elsewhere the logs pass unchanged.

Example:

>>> import keras
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> logs = logs_across_workers(model, {"loss": keras.ops.zeros(())})
>>> tuple(logs["loss"].shape)
()
"""

from keras import ops

from keras_nc.compat.training import spans_workers


def logs_across_workers(model, logs):
    """`logs` of one step of `model`, shaped for Keras' reduction across workers.

    Args:
        model: the `keras.Model` whose step produced `logs`.
        logs: dict of scalar logs.

    Returns:
        `logs` unchanged, unless the replicas of `model`'s strategy span several
        workers: then each value reshaped to `(1,)`.
    """
    if not spans_workers(model):
        return logs
    return {key: ops.reshape(value, (1,)) for key, value in logs.items()}
