"""Per-device evaluation of batch-level terms under Keras' distribution API.

Under `keras.distribution.DataParallel` (JAX) the train step is one program
over the global batch: a function of the batch sees all of it. The sample-head
collapse terms (`MIR`, `HDR`, `MatrixEntropy`, `InformationRegularizer`) are not
means over samples, so computing them on the global batch (the default) means
one `n x n` eigendecomposition of the global `n`, replicated on every device.
`per_shard_mean` computes a function on each device's own rows instead and
averages the results over the devices (`jax.shard_map` and `jax.lax.pmean`),
which is what each replica of a TensorFlow `tf.distribute` strategy computes
anyway. Elsewhere (no distribution, TensorFlow, PyTorch) the function runs
on the batch it is given; `keras_nc.compat.distribute` says which case holds.
"""

from keras_nc.compat import distribute


def _shards_of(distribution):
    mesh = distribution.device_mesh
    return int(mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)])


def _batch_distribution():
    """The active distribution when it splits the batch over several JAX devices, else None."""
    distribution = distribute.batch_distribution()
    if distribution is None:
        return None
    return distribution if _shards_of(distribution) > 1 else None


def batch_shards():
    """Number of devices the active `keras.distribution` splits the batch over (1 if none).

    Only JAX has `keras.distribution`: 1 on TensorFlow (where a
    `tf.distribute` replica already sees its own slice) and on PyTorch.

    Example:

    >>> from keras_nc import sharding
    >>> sharding.batch_shards()
    1
    """
    distribution = _batch_distribution()
    return 1 if distribution is None else _shards_of(distribution)


def replicas_in_sync():
    """Number of `tf.distribute` replicas running the current step (1 outside one).

    Example:

    >>> from keras_nc import sharding
    >>> sharding.replicas_in_sync()
    1
    """
    return distribute.replicas_in_sync()


def per_shard_mean(fn, sharded, replicated=()):
    """`fn` on each device's rows of `sharded`, averaged over the devices.

    With a JAX `keras.distribution` that splits the batch over `S` devices,
    each device calls `fn(*local_rows, *replicated)` on its own contiguous
    `n / S` rows of every array in `sharded` (axis 0, as `DataParallel` lays
    them out) and the results (a tensor, or a tuple or dict of tensors, of any
    shape) are averaged over the devices. Otherwise `fn(*sharded, *replicated)`
    runs on the whole batch.

    Args:
        fn: a function of tensors, traceable by the backend.
        sharded: a tuple of tensors whose axis 0 is the batch axis.
        replicated: a tuple of tensors every device sees whole (e.g. head rows).

    Returns:
        What `fn` returns, averaged over the devices.

    Raises:
        ValueError: the batch size is not a multiple of the number of devices.

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> from keras_nc import sharding
    >>> x = np.arange(8.0).reshape(4, 2)
    >>> float(sharding.per_shard_mean(lambda rows: ops.mean(rows), (x,)))
    3.5
    """
    sharded, replicated = tuple(sharded), tuple(replicated)
    distribution = _batch_distribution()
    if distribution is None:
        return fn(*sharded, *replicated)
    shards = _shards_of(distribution)
    for tensor in sharded:
        n = tensor.shape[0]
        if n is not None and n % shards:
            raise ValueError(
                f"Computing per device needs a batch size divisible by the {shards} devices "
                f"of the distribution; received a batch of {n}. Use a global batch size that "
                "is a multiple of the device count (and drop the remainder of the data)."
            )
    return _jax_shard_map_mean(fn, distribution, sharded, replicated)


def _jax_shard_map_mean(fn, distribution, sharded, replicated):
    import jax
    from jax.sharding import PartitionSpec

    axis = distribution.batch_dim_name

    def local(*arrays):
        return jax.tree.map(lambda value: jax.lax.pmean(value, axis), fn(*arrays))

    in_specs = (PartitionSpec(axis),) * len(sharded) + (PartitionSpec(),) * len(replicated)
    mapped = jax.shard_map(
        local,
        mesh=distribution.device_mesh.backend_mesh,
        in_specs=in_specs,
        out_specs=PartitionSpec(),
    )
    return mapped(*sharded, *replicated)
