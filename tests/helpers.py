"""Shared test helpers: the active backend's autodiff and compilation, NumPy views.

Import them as `from tests.helpers import to_numpy, grad, compiled`. The suite runs
once per `KERAS_BACKEND`; the few backend branches of the tests live here (the
library's own live in `keras_nc.compat`).

Tolerance policy: every numerical tolerance follows from the float32 analysis
of the quantity, evaluated on the float64 reference of the test's own data,
never from the value one machine returned (`tests/tolerances.py` states the
analysis for entropies of each order, MIR/HDR, the NC measures and CMA). The
numerics tests also run under other CPU kernels in CI (`make test-kernels`).
"""

import keras
import numpy as np

BACKEND = keras.backend.backend()


# Python code that makes `import matplotlib` fail in a fresh process: Keras imports
# matplotlib itself when it is installed, so a test of what `import keras_nc`
# needs blocks it instead of uninstalling it.
BLOCK_MATPLOTLIB = """
import sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("matplotlib is not installed")

sys.meta_path.insert(0, Blocker())
"""


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def grad(fn, x, dtype="float32"):
    """Gradient of the scalar `fn(x)` with respect to the array `x`, as NumPy.

    `x` is cast to `dtype` first (None: kept as it is, e.g. float64).
    """
    x = np.asarray(x, dtype=dtype) if dtype is not None else np.asarray(x)
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(fn)(jax.numpy.asarray(x)))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        t = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = fn(t)
        # Gradients through gathers come back as IndexedSlices: densify.
        return tf.convert_to_tensor(tape.gradient(y, t)).numpy()
    if BACKEND == "torch":
        import torch

        t = torch.tensor(x, requires_grad=True)
        fn(t).backward()
        return t.grad.detach().cpu().numpy()
    raise NotImplementedError(BACKEND)


def compiled(fn):
    """`fn` compiled by XLA where the backend offers it (JAX, TensorFlow), else as is."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def float64_supported():
    if BACKEND == "jax":
        import jax

        return bool(jax.config.jax_enable_x64)
    return True
