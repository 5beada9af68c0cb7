"""Data, model and metrics shared by the multi-device and multi-process tests.

`tests/test_distribution.py`, `tests/test_multihost_jax.py` and
`tests/test_multiworker_tf.py` run scripts in fresh interpreters (one per
device count, process or worker); those scripts import this module once their
devices are configured, so every run builds the same model on the same data.
"""

import os
import signal

import keras
import numpy as np

from keras_nc import metrics, models

NUM_CLASSES, SAMPLES, FEATURES = 5, 64, 16


def data():
    """`SAMPLES` points around `NUM_CLASSES` centres, every class equally often."""
    rng = np.random.default_rng(3)  # a seed where NCCAgreement tells the semantics apart
    y = rng.permutation(np.arange(SAMPLES) % NUM_CLASSES).astype("int32")
    centres = 1.5 * rng.normal(size=(NUM_CLASSES, FEATURES))
    x = centres[y] + rng.normal(size=(SAMPLES, FEATURES))
    return x.astype("float32"), y


def build_model(sample_scope="global"):
    """A `CollapseClassifier` (one Dense + ReLU backbone) with fixed initial weights."""
    rng = np.random.default_rng(1)
    inputs = keras.Input((FEATURES,))
    features = keras.layers.Dense(8, activation="relu", name="features")(inputs)
    model = models.CollapseClassifier(
        keras.Model(inputs, features), num_classes=NUM_CLASSES, sample_scope=sample_scope
    )
    model.backbone.get_layer("features").set_weights(
        [0.3 * rng.normal(size=(FEATURES, 8)).astype("float32"), np.full(8, 0.1, "float32")]
    )
    head_kernel = 0.3 * rng.normal(size=(8, NUM_CLASSES)).astype("float32")
    model.head.set_weights([head_kernel, np.zeros(NUM_CLASSES, "float32")])
    return model


def collapse_metrics():
    """Every collapse metric of the library, by its default name."""
    return [
        # Per-batch estimates (`sample_size=None`): what is pinned here is how
        # the per-batch values of replicas and devices combine.
        metrics.MIR(sample_size=None),
        metrics.HDR(sample_size=None),
        metrics.MatrixEntropy(sample_size=None),
        metrics.MIR(pairing="class", name="mir_class"),
        metrics.HDR(pairing="class", name="hdr_class"),
        metrics.NC1(),
        metrics.CDNV(),
        metrics.ETFError(),
        metrics.Equinorm(),
        metrics.SelfDuality(),
        metrics.NCCAgreement(),
    ]


def kill_process_group(proc):
    """Kills the process group of `proc` (started with `start_new_session=True`) if it runs."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


# Several devices or processes add the same float32 terms in another order. NC1
# subtracts the between-class part from the second moment (cancellation): its
# float32 value can move by a few 1e-5, relative, under such a reordering.
RTOL, ATOL, RTOL_NC1 = 1e-5, 1e-6, 1e-4


def assert_close(actual, expected, keys, what=""):
    """`actual[key]` equals `expected[key]` for every key, up to float32 summation order."""
    for key in keys:
        np.testing.assert_allclose(
            actual[key],
            expected[key],
            rtol=RTOL_NC1 if key == "nc1" else RTOL,
            atol=ATOL,
            err_msg=f"{what} {key}",
        )


def assert_distinguishable(a, b, keys, margin=1e-3):
    """The two semantics a test tells apart give visibly different numbers."""
    for key in keys:
        assert abs(a[key] - b[key]) > margin, (key, a[key], b[key])
