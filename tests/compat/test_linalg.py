"""The backend decisions and Keras private names of `keras_nc.compat.linalg`.

Each failure names the Keras version and the hook (`keras_changed`).
"""

import keras
import numpy as np
import pytest

from keras_nc import compat
from tests.helpers import keras_changed


def test_tensorflow_xla_tracing_is_seen_only_inside_an_xla_trace():
    message = keras_changed("tensorflow_xla_tracing", "XLA tracing is not told apart")
    assert not compat.tensorflow_xla_tracing(), message  # eager, any backend
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    seen = {}

    def probe(x):
        seen["traced"] = compat.tensorflow_xla_tracing()
        return x

    tf.function(probe, jit_compile=True)(tf.zeros(()))
    assert seen["traced"] is True, message
    tf.function(probe, jit_compile=False)(tf.zeros(()))
    assert seen["traced"] is False, message


def test_tensorflow_xla_eigenvalues_reach_machine_precision():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's XLA op")
    import tensorflow as tf

    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    spectrum = np.array([1e-7, 1e-5, 1e-3, 0.1, 0.5, 1.0], dtype=np.float32)
    k = (basis * spectrum) @ basis.T
    k = ((k + k.T) / 2).astype(np.float32)
    got = tf.function(
        lambda a: compat.tensorflow_xla_eigenvalues(a, float(np.finfo(np.float32).eps)),
        jit_compile=True,
    )(tf.constant(k)).numpy()
    want = np.linalg.eigvalsh(k.astype(np.float64))
    # A backward-stable symmetric eigensolver: |error| <= c m eps ||k||_2 (c = 2 here).
    np.testing.assert_allclose(
        got,
        want,
        atol=2 * 6 * np.finfo(np.float32).eps,
        err_msg=keras_changed("tensorflow_xla_eigenvalues", "XLA's eigh misses machine precision"),
    )


def _symmetric(m, seed=0, rank=None):
    """A float64 PSD matrix of the given rank (repeated zero eigenvalues) and its spectrum."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, rank or m))
    k = x @ x.T / (rank or m)
    return (k + k.T) / 2


def _eig_atol(k, dtype):
    # A backward-stable symmetric eigensolver: |error| <= c m eps ||k||_2 (c = 2).
    eps = np.finfo(dtype).eps
    return 2 * k.shape[-1] * eps * np.linalg.norm(k, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("host", [False, True], ids=["backend", "host"])
def test_eigvalsh_matches_float64_numpy(dtype, host, monkeypatch):
    if dtype == "float64" and keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            pytest.skip("float64 is not enabled on jax")
    # host=True: NumPy's LAPACK at every size (where the backend takes that path).
    sizes = {"tensorflow": 0, "jax": 0} if host else {"tensorflow": 10**9, "jax": 10**9}
    monkeypatch.setattr(compat.linalg, "HOST_EIGVALSH_MIN_SIZE", sizes)
    k = np.stack([_symmetric(9, seed=1), _symmetric(9, seed=2, rank=3)])
    x = keras.ops.convert_to_tensor(k.astype(dtype))
    expected_host = host and keras.backend.backend() in ("tensorflow", "jax")
    message = keras_changed("eigvalsh", f"{dtype} eigenvalues (host path: {expected_host})")
    assert compat.host_eigenvalues_apply(x) == expected_host, message
    got = compat.eigvalsh(x)
    assert keras.backend.standardize_dtype(got.dtype) == dtype, message
    assert tuple(got.shape) == (2, 9), message
    want = np.linalg.eigvalsh(k)
    atol = max(_eig_atol(m, dtype) for m in k)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, atol=atol, err_msg=message)


def test_eigvalsh_under_compilation_takes_the_backends_kernel(monkeypatch):
    """Traced input never takes the host path; the compiled values are the eigenvalues."""
    monkeypatch.setattr(compat.linalg, "HOST_EIGVALSH_MIN_SIZE", {"tensorflow": 0, "jax": 0})
    seen = {}

    def probe(a):
        seen["host"] = compat.host_eigenvalues_apply(a)
        return compat.eigvalsh(a)

    k = _symmetric(7, seed=3)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        got = jax.jit(probe)(k.astype("float32"))
    elif backend == "tensorflow":
        import tensorflow as tf

        got = tf.function(probe, jit_compile=True)(tf.constant(k.astype("float32")))
    else:
        import torch

        got = probe(torch.tensor(k.astype("float32")))
    message = keras_changed("eigvalsh", "compiled input (host path never taken)")
    assert seen["host"] is False, message
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(got),
        np.linalg.eigvalsh(k),
        atol=_eig_atol(k, "float32"),
        err_msg=message,
    )


def test_eigvalsh_gradient_is_v_diag_v(monkeypatch):
    """`d sum_i c_i l_i / dk = V diag(c) V^T` on every backend (host path never differentiated)."""
    monkeypatch.setattr(compat.linalg, "HOST_EIGVALSH_MIN_SIZE", {"tensorflow": 0, "jax": 0})
    k = _symmetric(5, seed=4)
    weights = np.arange(1.0, 6.0)
    values, vectors = np.linalg.eigh(k)
    want = (vectors * weights) @ vectors.T
    backend = keras.backend.backend()
    k32 = k.astype("float32")
    if backend == "jax":
        import jax

        got = jax.grad(lambda a: (compat.eigvalsh(a) * weights).sum())(k32)
    elif backend == "tensorflow":
        import tensorflow as tf

        a = tf.constant(k32)
        with tf.GradientTape() as tape:
            tape.watch(a)
            assert compat.tape_is_recording(), keras_changed("tape_is_recording", "tape unseen")
            assert not compat.host_eigenvalues_apply(a), keras_changed(
                "host_eigenvalues_apply", "the host path under a GradientTape"
            )
            y = tf.reduce_sum(compat.eigvalsh(a) * weights.astype("float32"))
        got = tape.gradient(y, a)
    else:
        import torch

        a = torch.tensor(k32, requires_grad=True)
        (compat.eigvalsh(a) * torch.tensor(weights, dtype=torch.float32)).sum().backward()
        got = a.grad
    got = np.asarray(keras.ops.convert_to_numpy(got), dtype="float64")
    # JAX symmetrises its input (the gradient is symmetric); the others read one
    # triangle (the gradient may sit in it): compare the symmetric parts.
    got = (got + got.T) / 2
    gap = np.diff(values).min()  # distinct eigenvalues: V is well conditioned
    np.testing.assert_allclose(
        got,
        want,
        atol=20 * 5 * np.finfo("float32").eps / gap,
        err_msg=keras_changed("eigvalsh", "the gradient is not V diag(c) V^T"),
    )


def test_tape_is_recording_sees_gradient_tapes():
    """TensorFlow's private `could_possibly_record`: the host path must not run under a tape."""
    message = keras_changed("tape_is_recording", "GradientTape recording is not told apart")
    assert not compat.tape_is_recording(), message
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    with tf.GradientTape():
        assert compat.tape_is_recording(), message
    with tf.GradientTape() as tape, tape.stop_recording():
        assert not compat.tape_is_recording(), message  # nothing recorded here
    assert not compat.tape_is_recording(), message


def test_performance_constants_cover_every_backend():
    """The path choice reads a cost per eigendecomposition call and the gather rule per backend."""
    message = keras_changed("eigh_call_cost", "a backend's cost is missing")
    for backend in ("tensorflow", "jax", "torch"):
        assert compat.EIGH_CALL_COST[backend] >= 0, message
        assert isinstance(compat.GATHERS_CLASS_GRAMS[backend], bool), keras_changed(
            "gathers_class_grams", f"no rule for {backend}"
        )
    assert compat.eigh_call_cost() == compat.EIGH_CALL_COST[keras.backend.backend()], message
    # Eager PyTorch dispatches every op from Python: its calls cost the most.
    assert compat.EIGH_CALL_COST["torch"] > compat.EIGH_CALL_COST["jax"], message


def test_eager_version_changes_with_every_in_place_write():
    variable = keras.Variable(np.zeros(3, "float32"))
    message = keras_changed("eager_version", "PyTorch's in-place writes are not counted")
    before = compat.eager_version(variable.value)
    if keras.backend.backend() != "torch":
        assert before is None, message  # only PyTorch's eager values are written in place
        return
    assert before is not None, message
    variable.assign(np.ones(3, "float32"))
    after = compat.eager_version(variable.value)
    assert after != before, message  # Keras' assign writes in place: the counter moved
    assert compat.eager_version(variable.value) == after, message  # reading does not


def test_gradient_may_be_taken_only_rules_out_eager_torch_without_grad():
    x = keras.ops.ones((2,))
    if keras.backend.backend() != "torch":
        assert compat.gradient_may_be_taken(x)
        return
    import torch

    message = keras_changed("gradient_may_be_taken", "PyTorch's requires_grad is not read")
    assert not compat.gradient_may_be_taken(torch.ones(2)), message
    assert compat.gradient_may_be_taken(torch.ones(2, requires_grad=True)), message
    with torch.no_grad():
        assert not compat.gradient_may_be_taken(torch.ones(2, requires_grad=True)), message


def test_backend_decisions_of_linalg():
    backend = keras.backend.backend()
    assert compat.decomposes_one_matrix_per_call() == (backend == "jax")
    assert compat.eager_ops_compile_per_shape() == (backend == "jax")
    assert compat.compiled_branches_on_data() == (backend != "torch")
