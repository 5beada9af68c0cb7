"""Image folders of random images for the CLIP recipe's data and program tests."""

import numpy as np

from recipes.clip import data
from tests.recipes.clip.tiny_clip import CLASSES, IMAGE_SIZE


def write_folder(root, per_class, split=None, size=(IMAGE_SIZE, IMAGE_SIZE)):
    """`per_class` random PNG images per class of `CLASSES` under `root`; returns (root, images).

    At the model's size the converter does not resize: the pipelines are then exact on
    every backend (bicubic resizing differs between TensorFlow and PyTorch).
    """
    rng = np.random.default_rng(0)
    n = per_class * len(CLASSES)
    images = rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8)
    labels = np.arange(n) % len(CLASSES)
    return data.write_image_folder(str(root), images, labels, CLASSES, split=split), images
