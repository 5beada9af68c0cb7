"""Which Keras backend runs, and where: the package's one reader of `keras.backend.backend()`."""

import keras

BACKENDS = ("tensorflow", "jax", "torch")


def backend_name():
    """The name of the Keras backend in use (`"tensorflow"`, `"jax"` or `"torch"`)."""
    return keras.backend.backend()


def is_backend(*names):
    """Whether the Keras backend in use is one of `names`."""
    return keras.backend.backend() in names
