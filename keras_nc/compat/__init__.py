"""The Keras private names keras-nc relies on, in one place.

Keras offers no public hook for some of what keras-nc needs. Each such use
lives here, with a test in `tests/test_compat.py` that fails loudly when a
Keras release changes it, so that a Keras upgrade names what it broke.

- `MetricsList`: Keras' callbacks that watch a metric (`EarlyStopping`,
  `ModelCheckpoint`, `ReduceLROnPlateau` in `mode="auto"`) read a metric's
  direction only from metrics inside Keras' metric containers
  (`keras.src.trainers.compile_utils.MetricsList` or `CompileMetrics`) listed in
  `model.metrics`; `CollapseClassifier` lists its collapse metrics in one.
- `set_metric_direction`: the attribute those callbacks read (`_direction`,
  `"up"` or `"down"`), as Keras' own metrics set it.
- `CompileMetrics`: the container of the metrics passed to `compile`, whose
  sub-metrics Keras flattens into `evaluate`'s list.
- `tensorflow_xla_tracing`, `tensorflow_xla_eigenvalues`: TensorFlow's XLA
  `eigh` stops its Jacobi sweeps at `1e-6` of the matrix norm; inside an XLA
  trace RankMe asks XLA's own op for the dtype's precision (TensorFlow
  private modules: `control_flow_util`, `tf2xla`).
- `eigvalsh`: the eigenvalues of symmetric matrices without the eigenvectors
  that `keras.ops.eigh` computes (a third to a half of the work; LAPACK's
  `syevd` with `jobz='N'`): `torch.linalg.eigvalsh` on PyTorch; on TensorFlow
  `tf.linalg.eigvalsh`, or NumPy's LAPACK for large concrete CPU input that no
  `GradientTape` records (`tape_is_recording`: TensorFlow's private
  `eager.record.could_possibly_record`); on JAX NumPy's LAPACK for concrete CPU
  input (JAX's own `eigvalsh` computes the eigenvectors too) and `eigh` under
  tracing.
- `eigh_call_cost`, `gathers_class_grams`: how the backends execute, for the
  choice between exact paths of equal results (`keras_nc.ops.pairing`):
  the cost of one eigendecomposition call and the elementwise ops around it
  (eager PyTorch dispatches each op from Python, a TensorFlow graph from its
  executor), and whether gathering an
  n x n Gram from a smaller class Gram beats the n x n product
  (TensorFlow's gathers and its oneDNN product of a 100-row matrix cost
  more; measured with `benchmarks/ops.py`).
- `eager_version`: a token that changes whenever an eager PyTorch tensor is
  written in place (its private `_version` counter), so a value derived from
  variables can be reused while they are unchanged; None elsewhere.
"""

import keras
import numpy as np
from keras.src.trainers import compile_utils

MetricsList = compile_utils.MetricsList
CompileMetrics = compile_utils.CompileMetrics

DIRECTIONS = ("up", "down")


def set_metric_direction(metric, direction):
    """Declares whether higher (`"up"`) or lower (`"down"`) values of `metric` are better.

    Keras' monitoring callbacks read it in `mode="auto"` (Keras' own metrics,
    e.g. `keras.metrics.Accuracy`, set the same attribute).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f'`direction` must be "up" or "down"; received {direction!r}.')
    metric._direction = direction


def metric_direction(metric):
    """The direction declared for `metric` (`"up"`, `"down"`), or None."""
    return getattr(metric, "_direction", None)


def tensorflow_xla_tracing():
    """Whether TensorFlow is tracing a function for XLA now (`jit_compile=True`).

    False on the other backends, eagerly, and in TensorFlow graph mode without XLA.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    if tf.executing_eagerly():
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def tensorflow_xla_eigenvalues(k, epsilon):
    """Ascending eigenvalues of symmetric `k` `(..., m, m)`: XLA's Jacobi `eigh` run to `epsilon`.

    For use inside an XLA trace (`tensorflow_xla_tracing()`). The gradient is
    that of `eigh`'s eigenvalues, `dk = V diag(dw) V^T` (XLA's op has none).
    """
    import tensorflow as tf
    from tensorflow.compiler.tf2xla.python import xla

    batch = len(k.shape) - 2

    @tf.custom_gradient
    def eig(a):
        w, v = xla.self_adjoint_eig(a, True, 100, epsilon)
        w.set_shape(a.shape[:-1])
        v.set_shape(a.shape)
        order = tf.argsort(w, axis=-1)
        w = tf.gather(w, order, axis=-1, batch_dims=batch)
        v = tf.gather(v, order, axis=-1, batch_dims=batch)

        def grad(dw):
            return tf.matmul(v * tf.expand_dims(dw, -2), v, adjoint_b=True)

        return w, grad

    return eig(k)


# Below this size TensorFlow's Eigen kernel (`tf.linalg.eigvalsh`) is as fast
# as NumPy's LAPACK; above it LAPACK's blocked tridiagonalisation wins (2x at
# m = 3000, float64, one thread).
HOST_EIGVALSH_MIN_SIZE = {"tensorflow": 1024, "jax": 0}


def tape_is_recording():
    """Whether a TensorFlow `GradientTape` is active (False on the other backends)."""
    if keras.backend.backend() != "tensorflow":
        return False
    from tensorflow.python.eager import record

    return bool(record.could_possibly_record())


def host_eigenvalues_apply(k):
    """Whether `eigvalsh` takes `k` through NumPy's LAPACK on the host.

    Only for concrete (eager) CPU tensors of JAX or TensorFlow whose gradient
    cannot be asked for (JAX differentiates tracers; TensorFlow only under a
    tape), of size at least `HOST_EIGVALSH_MIN_SIZE`.
    """
    backend = keras.backend.backend()
    size = k.shape[-1]
    if backend not in HOST_EIGVALSH_MIN_SIZE or size is None:
        return False
    if size < HOST_EIGVALSH_MIN_SIZE[backend]:
        return False
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or tape_is_recording():
            return False
        return "GPU" not in k.device and "TPU" not in k.device
    import jax

    if not isinstance(k, jax.Array) or isinstance(k, jax.core.Tracer):
        return False
    return all(device.platform == "cpu" for device in k.devices())


def eigvalsh(k):
    """Ascending eigenvalues of symmetric matrices `k` `(..., m, m)`, without eigenvectors.

    Differentiable wherever a gradient can be asked for (the backends'
    `eigvalsh` gradients are `V diag(dw) V^T`); jit-safe: traced input takes
    the backend's own kernel.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return torch.linalg.eigvalsh(k)
    if host_eigenvalues_apply(k):
        values = np.linalg.eigvalsh(np.asarray(k))
        return keras.ops.convert_to_tensor(values, dtype=keras.backend.standardize_dtype(k.dtype))
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.linalg.eigvalsh(k)
    return keras.ops.eigh(k)[0]


# Per eigendecomposition call, the cost of the call and of the entropy's
# elementwise ops around it, in units of the `m^3` of an `m x m` `eigh`. Eager
# PyTorch dispatches each op from Python (~100 small ops per sample-head step
# at n = 64 take longer than its eigendecompositions): about a 112 x 112
# `eigh`; TensorFlow graphs, whose executor dispatches each op, as much; JAX's
# XLA programs far less. Measured with `benchmarks/ops.py` (sample-head rows,
# n = 64 to 256).
EIGH_CALL_COST = {"torch": 112**3, "tensorflow": 112**3, "jax": 32**3}

# Whether an n x n Gram gathered from the C x C class Gram (C < n: `C^2 d`
# work and two gathers) beats the n x n product (`n^2 d`). Not on TensorFlow:
# at n = 128, C = 100, d = 2048 its C x C product took 528 us against 406 us
# for the n x n one (oneDNN, one thread) and the two gathers 123 us more.
GATHERS_CLASS_GRAMS = {"torch": True, "tensorflow": False, "jax": True}


def eigh_call_cost():
    """The cost of one eigendecomposition call on this backend (`EIGH_CALL_COST`)."""
    return EIGH_CALL_COST.get(keras.backend.backend(), 0)


def gathers_class_grams():
    """Whether this backend builds an n x n Gram by gathering from a smaller class Gram."""
    return GATHERS_CLASS_GRAMS.get(keras.backend.backend(), True)


def eager_version(tensor):
    """`(id, version)` of an eager PyTorch tensor, changed by every in-place write; else None.

    PyTorch's version counter (`tensor._version`) counts in-place writes
    (`copy_`, `add_`, Keras' `assign`); the other backends' eager values are
    replaced, not written, so `id` alone would do there, but only PyTorch
    gains from the reuse (one dispatch fewer an eager step).
    """
    if keras.backend.backend() != "torch":
        return None
    import torch

    if not isinstance(tensor, torch.Tensor) or torch.compiler.is_compiling():
        return None
    return (id(tensor), tensor._version)
