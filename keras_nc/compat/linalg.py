"""How the backends run linear algebra, and the backend private names it takes.

`keras_nc.ops` computes the same values on every backend; where the backends
execute differently (which kernel, how a batch or a branch runs, what a call
costs), the ops ask the functions here, whose names say what they decide:

- `tensorflow_xla_tracing`, `tensorflow_xla_eigenvalues`: TensorFlow's XLA
  `eigh` stops its Jacobi sweeps at `1e-6` of the matrix norm; inside an XLA
  trace RankMe asks XLA's own op for the dtype's precision (TensorFlow
  private modules: `control_flow_util`, `tf2xla`).
- `eigvalsh`, `host_eigenvalues_apply`, `tape_is_recording`: eigenvalues
  without the eigenvectors that `keras.ops.eigh` computes (see `eigvalsh`;
  TensorFlow's private `eager.record.could_possibly_record`).
- `decomposes_one_matrix_per_call`: whether batched `eigh`/`svd` are
  split into one call per matrix (JAX).
- `eager_ops_compile_per_shape`: whether eager ops compile a kernel for each
  new shape (JAX), so eager code should not size tensors by the data.
- `compiled_branches_on_data`: whether a compiled function can branch on
  data (`keras.ops.switch`; not under `torch.compile`).
- `gradient_may_be_taken`: whether a gradient of a tensor may be asked for.
- `eigh_call_cost`, `gathers_class_grams`: the cost of one eigendecomposition
  call, and whether gathering an n x n Gram from a smaller class Gram pays
  (measured with `benchmarks/ops.py`).
- `eager_version`: a token that changes whenever an eager PyTorch tensor is
  written in place (its private `_version` counter).
"""

import keras
import numpy as np

from keras_nc.compat.backend import backend_name, is_backend


def tensorflow_xla_tracing():
    """Whether TensorFlow is tracing a function for XLA now (`jit_compile=True`).

    False on the other backends, eagerly, and in TensorFlow graph mode without XLA.
    """
    if not is_backend("tensorflow"):
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
    if not is_backend("tensorflow"):
        return False
    from tensorflow.python.eager import record

    return bool(record.could_possibly_record())


def host_eigenvalues_apply(k):
    """Whether `eigvalsh` takes `k` through NumPy's LAPACK on the host.

    Only for concrete (eager) CPU tensors of JAX or TensorFlow whose gradient
    cannot be asked for (JAX differentiates tracers; TensorFlow only under a
    tape), of size at least `HOST_EIGVALSH_MIN_SIZE`.
    """
    backend = backend_name()
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

    A third to a half of the work of `keras.ops.eigh` (LAPACK's `syevd` with
    `jobz='N'`): `torch.linalg.eigvalsh` on PyTorch; on TensorFlow
    `tf.linalg.eigvalsh`, or NumPy's LAPACK for large concrete CPU input that
    no `GradientTape` records; on JAX NumPy's LAPACK for concrete CPU input
    (JAX's own `eigvalsh` computes the eigenvectors too) and `eigh` under
    tracing. Differentiable wherever a gradient can be asked for (the
    backends' `eigvalsh` gradients are `V diag(dw) V^T`); jit-safe: traced
    input takes the backend's own kernel.
    """
    backend = backend_name()
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


def decomposes_one_matrix_per_call():
    """Whether batched `eigh` and `svd` are run as one unbatched call per matrix (JAX).

    jaxlib's CPU kernel for a *batched* `eigh` (or `svd`) farms the batch out
    to XLA's intra-op thread pool and blocks until it is done; two such calls
    running side by side in one XLA program (two collapse metrics in a train
    step) can then occupy every pool thread and wait for each other forever
    (seen with jax 0.10.2 on 2 cores). Unbatched calls run inline and cannot
    deadlock; as JAX's CPU `eigh` runs one matrix at a time anyway, a loop
    over matrices costs it nothing more.
    """
    return is_backend("jax")


def eager_ops_compile_per_shape():
    """Whether each eager op compiles a kernel for every new input shape (JAX).

    Eager code that sizes its tensors by the data (one shape per batch's
    class counts) would compile anew for most batches there.
    """
    return is_backend("jax")


def compiled_branches_on_data():
    """Whether a compiled function can pick a branch by data (`keras.ops.switch`).

    Not under `torch.compile`, which cannot trace a data-dependent branch
    without breaking the graph.
    """
    return not is_backend("torch")


def gradient_may_be_taken(x):
    """False only where a gradient of `x` surely will not be taken (eager PyTorch, no grad).

    Under tracing (JAX, TensorFlow) it cannot be known: True.
    """
    if not is_backend("torch"):
        return True
    import torch

    return bool(torch.is_grad_enabled() and x.requires_grad) or torch.compiler.is_compiling()


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
    return EIGH_CALL_COST.get(backend_name(), 0)


def gathers_class_grams():
    """Whether this backend builds an n x n Gram by gathering from a smaller class Gram."""
    return GATHERS_CLASS_GRAMS.get(backend_name(), True)


def eager_version(tensor):
    """`(id, version)` of an eager PyTorch tensor, changed by every in-place write; else None.

    PyTorch's version counter (`tensor._version`) counts in-place writes
    (`copy_`, `add_`, Keras' `assign`); the other backends' eager values are
    replaced, not written, so `id` alone would do there, but only PyTorch
    gains from the reuse (one dispatch fewer an eager step).
    """
    if not is_backend("torch"):
        return None
    import torch

    if not isinstance(tensor, torch.Tensor) or torch.compiler.is_compiling():
        return None
    return (id(tensor), tensor._version)
