"""BatchNormalization statistics recomputed on data (`recompute_batchnorm_statistics`).

After weights are interpolated (or averaged, or pruned), BatchNormalization's
moving statistics no longer describe the network's features. Recomputing them
on training data, as PyTorch's `torch.optim.swa_utils.update_bn` does for
weight averaging, removes the loss barriers that stale statistics create
(docs/mode_connectivity.md).
"""

import keras
import numpy as np

from keras_nc import compat

DEFAULT_BATCH_SIZE = 32


def recompute_batchnorm_statistics(model, data, *, batch_size=None):
    """Sets every BatchNormalization layer's moving statistics to the mean over batches.

    Each `keras.layers.BatchNormalization` layer of `model` (nested models
    and layers included) has its moving mean reset to 0 and
    moving variance to 1; then one forward pass per batch of `data` runs in
    training mode with the layer's `momentum` set to `(i - 1) / i` at the
    `i`-th batch, so that the moving statistics end as the exact average of
    the batches' statistics (their mean and Keras' biased variance), as
    `torch.optim.swa_utils.update_bn` computes them. The layers' `momentum`
    and `trainable` flags are restored afterwards, and every other weight
    (trainable weights, random seed states that dropout advances during the
    training-mode passes) is set back to its value before the call.

    Args:
        model: a built `keras.Model`.
        data: inputs `x`, `(x, y)` or `(x, y, sample_weight)` arrays (cut
            into batches of `batch_size`), or an iterable of batches (a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, a PyTorch
            `DataLoader`) yielding `x` or tuples whose first item is `x`.
        batch_size: batch size of array `data` (default 32).

    Returns:
        The number of BatchNormalization layers updated.

    Example:

    >>> import keras, numpy as np
    >>> from keras_nc.paths import recompute_batchnorm_statistics
    >>> layer = keras.layers.BatchNormalization()
    >>> model = keras.Sequential([keras.Input((1,)), layer])
    >>> x = np.array([[0.0], [2.0], [4.0], [6.0]])
    >>> recompute_batchnorm_statistics(model, x, batch_size=2)
    1
    >>> float(keras.ops.convert_to_numpy(layer.moving_mean)[0])
    3.0
    >>> float(keras.ops.convert_to_numpy(layer.moving_variance)[0])
    1.0
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    statistics = {id(v) for layer in layers for v in (layer.moving_mean, layer.moving_variance)}
    kept = [(v, keras.ops.convert_to_numpy(v)) for v in model.weights if id(v) not in statistics]
    settings = [(layer, layer.momentum, layer.trainable) for layer in layers]
    try:
        for layer in layers:
            mean, variance = layer.moving_mean, layer.moving_variance
            mean.assign(keras.ops.zeros(mean.shape, dtype=mean.dtype))
            variance.assign(keras.ops.ones(variance.shape, dtype=variance.dtype))
            # A non-trainable BatchNormalization layer runs in inference mode.
            layer.trainable = True
        count = 0
        for x in batches(data, batch_size):
            count += 1
            for layer in layers:
                layer.momentum = (count - 1) / count
            model(x, training=True)
        if count == 0:
            raise ValueError("`data` holds no batch: the statistics cannot be recomputed.")
    finally:
        for layer, momentum, trainable in settings:
            layer.momentum, layer.trainable = momentum, trainable
        for variable, value in kept:
            variable.assign(value)
    return len(layers)


def batchnorm_layers(model):
    """The `keras.layers.BatchNormalization` layers of `model`, nested ones included.

    Nested models and plain layers holding sublayers (a residual block) are
    searched (`keras_nc.compat.flatten_layers`).
    """
    return [
        layer
        for layer in compat.flatten_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def batches(data, batch_size=None):
    """The inputs `x` of each batch of `data` (arrays cut into `batch_size` rows)."""
    if isinstance(data, (tuple, list)):
        data = data[0]
    if isinstance(data, np.ndarray) or keras.ops.is_tensor(data):
        size = batch_size or DEFAULT_BATCH_SIZE
        for start in range(0, int(data.shape[0]), size):
            yield data[start : start + size]
        return
    if isinstance(data, keras.utils.PyDataset):
        dataset = data
        data = (dataset[index] for index in range(len(dataset)))
    for batch in data:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch
