"""How `CollapseClassifier` hooks into Keras' training loop where Keras has no public way.

Each function or class here is named for what it does, and
`tests/compat/test_training.py` fails, naming `keras.__version__` and the hook,
when a Keras release changes what it relies on. Where a public Keras API could
do the job it is used instead (the compile config is kept by overriding
`get_compile_config`; the compiled metrics are found in `model.metrics`; a
compile without an ordinary loss is told apart by the model itself).

- `untracked_setattr`: sets an attribute without Keras' automatic tracking
  (`Layer.__setattr__` wraps lists and collects the layers, metrics and
  variables it is given; the model keeps its own lists of collapse terms).
- `portable_optimizer_config`: a compile config whose optimizer is named by
  its public Keras class (PyTorch saves Keras' optimizers under their private
  backend module, `keras.src.backend.torch.optimizers...`).
- `LocalBatchSymbolicBuild`: a mixin overriding Keras' private
  `_maybe_symbolic_build` of the TensorFlow trainer, which builds a distributed
  model from the first batch reduced over replicas (refused by
  `MultiWorkerMirroredStrategy`), to build it from a local replica's batch
  when the replicas span several workers (`spans_workers`).
- `jax_on_cpu`, `tensorflow_on_cpu`: where the backend computes.
- `one_blas_thread`: one OpenBLAS thread while JAX on the CPU computes
  collapse terms (its `eigh` calls LAPACK, whose thread pool then competes with
  XLA's; docs/performance.md).
"""

import contextlib

import keras

from keras_nc.compat.backend import is_backend


def untracked_setattr(layer, name, value):
    """Sets `layer.<name> = value` without Keras' automatic tracking.

    `keras.layers.Layer.__setattr__` wraps lists and dicts in tracked
    containers and collects the layers, metrics and variables it is given (so
    that they appear in `layer.metrics`, `layer.weights`, ...). Plain
    attributes set here are none of these: the object decides itself where its
    metrics are listed.

    Example:

    >>> layer = keras.layers.Dense(2)
    >>> untracked_setattr(layer, "extra_metrics", [keras.metrics.Mean()])
    >>> type(layer.extra_metrics).__name__, len(layer.metrics)
    ('list', 0)
    """
    object.__setattr__(layer, name, value)


# The module prefix under which Keras serialises the backend subclasses of its
# optimizers (`keras.src.backend.torch.optimizers.torch_sgd` on PyTorch).
BACKEND_OPTIMIZER_MODULE = "keras.src.backend."


def portable_optimizer_config(config):
    """A compile config whose optimizer is named by its public Keras class.

    On PyTorch, Keras' optimizers are backend subclasses saved under their
    private module (`keras.src.backend.torch.optimizers.torch_sgd`): loaded as
    such on another backend they would run torch code on its tensors. Naming
    them by `keras.optimizers.<class>` gives the loading backend's own
    optimizer.

    Example:

    >>> config = {"optimizer": {"module": BACKEND_OPTIMIZER_MODULE + "torch.optimizers.torch_sgd",
    ...                         "class_name": "SGD", "config": {}}}
    >>> portable_optimizer_config(config)["optimizer"]["module"]
    'keras.optimizers'
    """
    optimizer = config.get("optimizer")
    module = optimizer.get("module") if isinstance(optimizer, dict) else None
    if isinstance(module, str) and module.startswith(BACKEND_OPTIMIZER_MODULE):
        config = {**config, "optimizer": {**optimizer, "module": "keras.optimizers"}}
    return config


def spans_workers(model):
    """Whether `model` runs under a `tf.distribute` strategy whose replicas span several workers.

    False on JAX and PyTorch, and on TensorFlow without a
    `MultiWorkerMirroredStrategy` or with all its replicas in this process.
    """
    if not is_backend("tensorflow"):
        return False
    import tensorflow as tf

    strategy = model.distribute_strategy
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)


class LocalBatchSymbolicBuild:
    """Mixin for a `keras.Model`: across workers, builds from a local replica's first batch.

    Keras 3.15 (TensorFlow) builds a distributed model from the first batch,
    reduced over replicas with one `strategy.reduce` of the whole `(x, y)`
    structure, which `MultiWorkerMirroredStrategy` refuses. Only the shapes are
    used: when the replicas span several workers (`spans_workers`), this mixin
    hands Keras a local replica's batch instead. Elsewhere it changes nothing
    (the JAX and PyTorch trainers never call the hook).
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and data_batch is None and spans_workers(self):
            data_batch = first_local_batch(self.distribute_strategy, iterator)
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def first_local_batch(strategy, iterator):
    """The first batch of Keras' TensorFlow epoch iterator, as a local replica holds it.

    Keras' `TFEpochIterator` yields `(begin_step, end_step, iterator)`; the
    batch's values are `tf.distribute` values, of which the first local
    replica's is taken.
    """
    local = strategy.experimental_local_results
    for _, _, batches in iterator:
        return keras.tree.map_structure(lambda value: local(value)[0], next(batches))
    return None


def jax_on_cpu():
    """Whether Keras runs on JAX and JAX computes on the CPU."""
    if not is_backend("jax"):
        return False
    import jax

    return jax.default_backend() == "cpu"


def tensorflow_on_cpu():
    """Whether Keras runs on TensorFlow and TensorFlow sees no GPU."""
    if not is_backend("tensorflow"):
        return False
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU")


def one_blas_thread():
    """A context in which OpenBLAS (and other BLAS libraries) run one thread, on JAX's CPU.

    JAX's CPU `eigh` calls LAPACK from scipy's OpenBLAS, whose own thread pool
    then competes with XLA's for the cores: measured on 2 cores, the collapse
    terms cost 1.27x the plain step with it and about 1.0x with one thread
    (docs/performance.md). Elsewhere, or without `threadpoolctl` (which the
    `jax` extra installs), a context that changes nothing.
    """
    if not jax_on_cpu():
        return contextlib.nullcontext()
    try:
        import threadpoolctl
    except ImportError:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(1, user_api="blas")
