"""Seeding and, on request, deterministic kernels for the recipes' programs."""

import keras


def seed_everything(seed, deterministic=False):
    """Seeds Python, NumPy and the backend; with `deterministic`, fixes the kernels too.

    A seed fixes the initial weights, the label draw and the data order, but a
    rerun still differs: TensorFlow's CPU kernels and the random layers of a
    parallel `tf.data` map run on threads whose timing changes the order of
    floating-point sums and of random draws. `deterministic=True` makes a rerun
    bit-identical on the same machine and software, at some cost in speed:
    `tf.config.experimental.enable_op_determinism()` (the input pipelines are
    `tf.data` on every backend) and, on PyTorch,
    `torch.use_deterministic_algorithms(True)`; JAX's CPU kernels are
    deterministic already.

    Example:

    >>> import numpy as np
    >>> seed_everything(0)
    >>> first = np.random.rand()
    >>> seed_everything(0)
    >>> bool(np.random.rand() == first)
    True
    """
    keras.utils.set_random_seed(seed)
    if not deterministic:
        return
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    if keras.backend.backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
