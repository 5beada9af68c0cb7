"""`studies.fashion_mnist`: the phenomena studies' fixed data and their smoothed loss."""

import os

import keras
import numpy as np
import pytest

from recipes import data as data_lib
from studies import fashion_mnist
from tests.helpers import BACKEND, to_numpy
from tests.tolerances import float32_tolerance

needs_data = pytest.mark.skipif(
    not os.path.isdir(data_lib.FASHION_MNIST_DIR),
    reason="Debian's dataset-fashion-mnist not installed",
)


@needs_data
@pytest.mark.skipif(BACKEND != "tensorflow", reason="NumPy data: backend-independent")
def test_splits_are_fixed_balanced_and_disjoint():
    first, second = fashion_mnist.load(20, 5, 7), fashion_mnist.load(20, 5, 7)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(first, split)[0], getattr(second, split)[0])
    for (x, y), per_class in ((first.train, 20), (first.val, 5), (first.test, 7)):
        assert x.shape == (10 * per_class, 28, 28, 1) and x.dtype == np.float32
        np.testing.assert_array_equal(np.bincount(y), [per_class] * 10)
    train_rows = {row.tobytes() for row in first.train[0]}
    assert not train_rows & {row.tobytes() for row in first.val[0]}


def smoothed_cross_entropy(logits, labels, smoothing):
    """Float64 reference: targets (1 - s) one-hot + s / C, against log-softmax."""
    logits = np.asarray(logits, dtype="float64")
    c = logits.shape[1]
    targets = np.full(logits.shape, smoothing / c)
    targets[np.arange(len(labels)), labels] += 1 - smoothing
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-(targets * log_softmax).sum(axis=1).mean())


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_the_loss_on_integer_labels_is_keras_label_smoothing(smoothing):
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=3.0, size=(16, 10)).astype("float32")
    labels = rng.integers(0, 10, size=16)
    loss = fashion_mnist.loss(smoothing)
    value = float(to_numpy(loss(labels.astype("int32"), logits)))
    expected = smoothed_cross_entropy(logits, labels, smoothing)
    # A log-sum-exp of C terms (at the logits' scale), C products with the targets and a
    # mean of n rows.
    assert abs(value - expected) <= float32_tolerance(
        terms=2 * 10 + 16, scale=max(abs(expected), np.abs(logits).max())
    )
    if smoothing:
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        assert restored.label_smoothing == smoothing


def test_the_convnet_gives_64_features_and_10_logits():
    model = fashion_mnist.convnet(seed=0)
    x = np.zeros((2, 28, 28, 1), "float32")
    assert tuple(model.extract_features(x).shape) == (2, fashion_mnist.FEATURE_DIM)
    assert tuple(model(x).shape) == (2, fashion_mnist.NUM_CLASSES)
