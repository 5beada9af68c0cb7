"""Which Keras backend runs, and where: the package's one reader of `keras.backend.backend()`."""

import keras

BACKENDS = ("tensorflow", "jax", "torch")


def backend_name():
    """The name of the Keras backend in use (`"tensorflow"`, `"jax"` or `"torch"`)."""
    return keras.backend.backend()


def is_backend(*names):
    """Whether the Keras backend in use is one of `names`."""
    return keras.backend.backend() in names


def values_known(x):
    """Whether the values of tensor `x` are known now (not traced for compilation).

    False inside `tf.function` graphs, for JAX tracers (`jax.jit`) and while
    `torch.compile` traces.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True


def widest_float():
    """The widest float the backend computes in: float64, or float32 on JAX without x64."""
    if keras.backend.backend() == "jax":
        import jax

        return "float64" if jax.config.jax_enable_x64 else "float32"
    return "float64"
