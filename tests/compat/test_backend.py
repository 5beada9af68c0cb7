"""`keras_nc.compat.backend`: values known eagerly, the widest float the backend keeps.

Each failure names the Keras version and the hook (`keras_changed`).
"""

import keras
import numpy as np
import pytest

from keras_nc.compat import backend as compat_backend
from tests.helpers import keras_changed


def test_values_known_eagerly_not_under_tracing():
    message = keras_changed("backend.values_known", "traced tensors are not told apart")
    x = keras.ops.ones((2,))
    assert compat_backend.values_known(x), message
    seen = {}

    def probe(a):
        seen["known"] = compat_backend.values_known(a)
        return a

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jax.jit(probe)(x)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.function(probe)(x)
    else:
        pytest.skip("torch.compile tracing is too slow for this file")
    assert seen["known"] is False, message


def test_widest_float_is_a_dtype_the_backend_keeps():
    dtype = compat_backend.widest_float()
    x = keras.ops.convert_to_tensor(np.ones(2), dtype=dtype)
    assert keras.backend.standardize_dtype(x.dtype) == dtype, keras_changed(
        "backend.widest_float", f"{dtype} is not kept"
    )
