"""Shared test helpers: the active backend's autodiff and compilation, NumPy views.

Import them as `from tests.helpers import to_numpy, grad, compiled`. The suite runs
once per `KERAS_BACKEND`; the few backend branches of the tests live here (the
library's own live in `keras_nc.compat`). Also the small models, data and messages
that several test files share (a test file never imports another test file).

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


def keras_changed(hook, what):
    """The failure message of a `keras_nc.compat` hook's test: the Keras release and the hook."""
    import importlib

    version = getattr(importlib.import_module(BACKEND), "__version__", "?")
    return (
        f"Keras {keras.__version__} ({BACKEND} {version}) changed `keras_nc.compat.{hook}`: {what}"
    )


# Feature batches that stress the numerics of the ops (tests/ops/).
FEATURE_KINDS = [
    "random",
    "rank_deficient",
    "duplicated_rows",
    "zero_rows",
    "near_collinear",
    "wide",
]


def feature_batch(kind, rng, n=24, d=10):
    """A float32 feature batch of one of `FEATURE_KINDS` (the reference reads it in float64)."""
    z = rng.normal(size=(n, d))
    if kind == "rank_deficient":  # n > d: the n x n Gram has rank d
        z = rng.normal(size=(n, 3))
    elif kind == "duplicated_rows":
        z[n // 2 :] = z[: n - n // 2]
    elif kind == "zero_rows":
        z[[0, 5, 7]] = 0.0
    elif kind == "near_collinear":  # rows within a small cone around one direction
        z = np.ones((n, d)) + 0.05 * z
    elif kind == "wide":  # n < d
        z = rng.normal(size=(6, 40))
    elif kind != "random":
        raise ValueError(kind)
    return z.astype("float32")


def every_collapse_metric():
    """One instance of every collapse metric, both pairings, with distinct names."""
    from keras_nc import metrics

    return [
        metrics.MIR(),
        metrics.HDR(),
        metrics.MIR(pairing="class"),
        metrics.HDR(pairing="class"),
        metrics.MatrixEntropy(),
        metrics.MatrixEntropy(normalize=True, name="matrix_entropy_normalized"),
        metrics.MatrixEntropy(of="head"),
        metrics.NC1(),
        metrics.CDNV(),
        metrics.ETFError(),
        metrics.Equinorm(),
        metrics.SelfDuality(),
        metrics.NCCAgreement(),
    ]


# Edge-case data: C = 5 classes in D = 8 dimensions, class centres 3x the noise.
EDGE_CLASSES, EDGE_DIM = 5, 8
# Feature scales whose products stay finite in float32 (scale invariance tests).
EXTREME_SCALES = [1e-30, 1e-20, 1e20, 1e30]


def edge_case_data(rng, n=40):
    """`(z, y, head)` in float32: `n` rows cycling over `EDGE_CLASSES` separated classes."""
    centres = 3.0 * rng.normal(size=(EDGE_CLASSES, EDGE_DIM))
    y = np.arange(n) % EDGE_CLASSES
    z = centres[y] + rng.normal(size=(n, EDGE_DIM))
    head = rng.normal(size=(EDGE_CLASSES, EDGE_DIM))
    return z.astype("float32"), y.astype("int32"), head.astype("float32")


def identity_classifier(dim=EDGE_DIM, num_classes=EDGE_CLASSES):
    """A `CollapseClassifier` whose backbone is the identity: its features are its inputs."""
    from keras_nc.models import CollapseClassifier

    inputs = keras.Input((dim,))
    return CollapseClassifier(keras.Model(inputs, keras.layers.Identity()(inputs)), num_classes)


def labelled_batches(rng, sizes=(20, 17, 25), num_classes=6, dim=9, absent=(4,)):
    """Float32 `(z, y)` batches of the given sizes with class structure; `absent` never appear."""
    centres = 2.0 * rng.normal(size=(num_classes, dim))
    allowed = [c for c in range(num_classes) if c not in absent]
    out = []
    for n in sizes:
        y = rng.choice(allowed, size=n).astype("int32")
        z = centres[y] + rng.normal(size=(n, dim))
        out.append((z.astype("float32"), y))
    return out


def random_batch(n=9, c=3, d=4, seed=0):
    """Float32 `(z, y, w)`: `n` normal feature rows, labels cycling over `c`, `c` head rows."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d)).astype("float32")
    y = (np.arange(n) % c).astype("int32")
    w = rng.normal(size=(c, d)).astype("float32")
    return z, y, w


def small_classification_data():
    """120 samples of 4 separable classes in 12 dimensions (seeded)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30).astype("int32")
    x = (rng.normal(size=(4, 12))[y] + 0.7 * rng.normal(size=(120, 12))).astype("float32")
    return x, y


def small_classifier_and_data():
    """A compiled `CollapseClassifier` (one Dense backbone) and `small_classification_data()`."""
    from keras_nc.models import CollapseClassifier

    keras.utils.set_random_seed(0)
    x, y = small_classification_data()
    inputs = keras.Input((12,))
    backbone = keras.Model(inputs, keras.layers.Dense(8, activation="relu")(inputs))
    model = CollapseClassifier(backbone, num_classes=4)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model, x, y


def residual_backbone(shape=(6, 6, 2)):
    """A conv stem, two residual blocks and pooled features."""
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem_conv")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for block in (1, 2):
        y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=f"b{block}_conv")(x)
        x = keras.layers.ReLU(name=f"b{block}_out")(keras.layers.Add(name=f"b{block}_add")([x, y]))
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, features, name="tiny_resnet")
