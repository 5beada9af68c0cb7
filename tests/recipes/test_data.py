"""recipes.data: offline loaders, class-balanced subsets and the tf.data augmentation."""

import os
import subprocess
import sys

import numpy as np
import pytest

from recipes import data
from tests.tolerances import EPS32, SAFETY

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _float32_mean_tolerance(x):
    """Error of a float32 mean (or variance) of `x`'s unit-scale values, Wilkinson's rule.

    The loader standardises with float32 statistics of `x.size` values; their
    round-off adds up like a random walk (tests/tolerances.py): `sqrt(n) * eps`.
    """
    return SAFETY * np.sqrt(x.size) * EPS32


def test_digits_are_standardised_with_training_statistics():
    images = data.load_dataset("digits")
    assert images.x_train.shape == (1437, 8, 8, 1) and images.x_test.shape == (360, 8, 8, 1)
    assert images.num_classes == 10 and not images.flip
    x = images.x_train.astype("float64")
    assert abs(x.mean()) <= _float32_mean_tolerance(x)
    assert abs(x.std() - 1.0) <= _float32_mean_tolerance(x)
    # Test images use the training statistics, so their mean is only near zero.
    assert abs(images.x_test.mean()) < 0.1
    # The split is fixed: every seed sees the same test set, stratified.
    again = data.load_dataset("digits", seed=5)
    np.testing.assert_array_equal(again.y_test, images.y_test)
    assert np.bincount(images.y_test).min() >= 35


def test_samples_per_class_and_resize():
    images = data.load_dataset("digits", samples_per_class=7, image_size=12, seed=3)
    assert images.x_train.shape == (70, 12, 12, 1)
    np.testing.assert_array_equal(np.bincount(images.y_train), np.full(10, 7))


def test_balanced_subset_is_balanced_reproducible_and_checked():
    labels = np.repeat(np.arange(4), [10, 3, 8, 9])
    first = data.balanced_subset(labels, 5, seed=1)
    np.testing.assert_array_equal(np.bincount(labels[first]), [5, 3, 5, 5])
    np.testing.assert_array_equal(first, data.balanced_subset(labels, 5, seed=1))
    assert not np.array_equal(first, data.balanced_subset(labels, 5, seed=2))
    with pytest.raises(ValueError, match="`per_class` must be a positive integer"):
        data.balanced_subset(labels, 0)


@pytest.mark.skipif(
    not os.path.isdir(data.FASHION_MNIST_DIR), reason="Debian's dataset-fashion-mnist not installed"
)
def test_fashion_mnist_from_debian_files():
    images = data.load_dataset("fashion_mnist")
    assert images.x_train.shape == (60000, 28, 28, 1) and images.x_test.shape == (10000, 28, 28, 1)
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    np.testing.assert_array_equal(np.bincount(images.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(images.y_test), np.full(10, 1000))
    assert images.class_names[9] == "ankle boot"
    # Background pixels are exactly 0 in the files: after standardisation, the mode.
    values, counts = np.unique(images.x_train[:100], return_counts=True)
    assert values[np.argmax(counts)] == images.x_train.min()


def test_folder_dataset(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, colour in [("red_things", (200, 0, 0)), ("blue_things", (0, 0, 200))]:
        folder = tmp_path / name
        folder.mkdir()
        for i in range(5):
            pixels = np.clip(np.array(colour) + rng.integers(0, 40, (10, 10, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(folder / f"{i}.png")
    images = data.load_dataset("folder", data_dir=str(tmp_path), image_size=6)
    assert images.class_names == ("blue things", "red things")
    assert images.x_train.shape[1:] == (6, 6, 3)
    assert len(images.y_train) + len(images.y_test) == 10
    # Blue images (class 0) have more blue than red, red images the reverse.
    x = np.concatenate([images.x_train, images.x_test])
    y = np.concatenate([images.y_train, images.y_test])
    blueness = x[..., 2].mean(axis=(1, 2)) - x[..., 0].mean(axis=(1, 2))
    assert np.all((blueness > 0) == (y == 0))
    with pytest.raises(ValueError, match="`data_dir` is needed"):
        data.load_dataset("folder")
    with pytest.raises(data.DatasetUnavailableError, match="not a directory"):
        data.load_dataset("folder", data_dir=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="`name` must be one of"):
        data.load_dataset("imagenet")


def _shifted_copies(image, padding):
    """All crops of the zero-padded image: what a padded random crop may return."""
    h, w = image.shape[:2]
    padded = np.pad(image, [(padding, padding), (padding, padding), (0, 0)])
    return [
        padded[dy : dy + h, dx : dx + w]
        for dy in range(2 * padding + 1)
        for dx in range(2 * padding + 1)
    ]


def test_training_dataset_augments_by_padded_crops_and_flips():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 6, 6, 2)).astype("float32")
    y = np.arange(12, dtype="int32")
    dataset = data.training_dataset(x, y, batch_size=5, crop_padding=2, flip=True, seed=0)
    batches = list(dataset.as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [5, 5, 2]
    seen_y = np.concatenate([b[1] for b in batches])
    assert sorted(seen_y) == list(range(12)) and not np.array_equal(seen_y, y)
    moved = 0
    for images, labels in batches:
        for image, label in zip(images, labels, strict=True):
            original = x[label]
            candidates = _shifted_copies(original, 2) + _shifted_copies(original[:, ::-1], 2)
            assert any(np.allclose(image, c) for c in candidates)
            moved += not np.allclose(image, original)
    assert moved >= 6  # most images are shifted or flipped
    plain = data.training_dataset(x, y, batch_size=4, shuffle=False)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in plain.as_numpy_iterator()]), x)


def test_offline_cifar_fails_fast_with_a_clear_message(tmp_path):
    # An unreachable proxy makes the download fail as it does offline; KERAS_HOME
    # points at an empty cache so no earlier download is found.
    env = dict(
        os.environ,
        https_proxy="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        KERAS_HOME=str(tmp_path),
        PYTHONPATH=ROOT,
    )
    result = subprocess.run(
        [sys.executable, "-m", "recipes.cifar", "--dataset", "cifar10"],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "'cifar10' is not available here" in result.stderr
    assert "digits, fashion_mnist, folder" in result.stderr
