"""Data of the semi-supervised recipe: a labelled/unlabelled split and weak/strong views.

`split_labeled` draws `N` labels per class with a seed; the rest of the
training set is unlabelled. `semi_supervised_dataset` is an endless `tf.data`
pipeline whose every element is one training step (FixMatch, arXiv
2001.07685): a labelled batch of `B` weak views with their labels and
`uratio * B` unlabelled images under a weak and a strong view,

- weak: random crop with reflect padding (`crop_padding` pixels, 1/8 of the
  side by default) and, where mirror images keep their label, a horizontal flip;
- strong: an independent weak view, then `keras.layers.RandAugment` (3 ops,
  magnitude 5 of 10) and `keras.layers.RandomErasing` (Cutout: a grey square
  of up to half the side, always applied).

The pipeline runs in `tf.data` (Keras preprocessing layers switch to
TensorFlow there), so `fit` consumes it on every backend. Images are expected
standardised (as `recipes.data.load_dataset` returns them): the colour
operations run on them mapped back to `[0, 1]` with the per-channel range
`value_range` (by default that of the images given).

Example:

```python
from recipes import data as data_lib
from recipes.semi_supervised import data

images = data_lib.load_dataset("fashion_mnist")
labeled, unlabeled = data.split_labeled(images.y_train, labels_per_class=4, seed=0)
train = data.semi_supervised_dataset(
    images.x_train[labeled], images.y_train[labeled], images.x_train[unlabeled],
    batch_size=64, uratio=7, unlabeled_labels=images.y_train[unlabeled],
)
```
"""

import numpy as np

from recipes import data as data_lib
from recipes.semi_supervised.models import (
    LABELED,
    UNLABELED_LABELS,
    UNLABELED_STRONG,
    UNLABELED_WEAK,
)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; received {value!r}.")
    return int(value)


def split_labeled(labels, labels_per_class, seed=0):
    """Indices of `labels_per_class` labelled samples per class and of the rest.

    Args:
        labels: `(n,)` integer labels of the training set.
        labels_per_class: labels kept per class (`N`; 4 gives 40 labels on 10
            classes).
        seed: seed of the draw.

    Returns:
        `(labeled, unlabeled)`: sorted index arrays partitioning `range(n)`.

    Raises:
        ValueError: `labels_per_class` is not a positive integer or exceeds
            the size of the smallest class (nothing would stay unlabelled).

    Example:

    ```python
    labeled, unlabeled = split_labeled(y_train, labels_per_class=25, seed=1)
    ```
    """
    labels_per_class = _positive_int(labels_per_class, "labels_per_class")
    labels = np.asarray(labels).reshape(-1)
    smallest = int(np.bincount(labels).min()) if labels.size else 0
    if labels_per_class >= smallest:
        raise ValueError(
            f"`labels_per_class` must be smaller than the smallest class ({smallest} samples); "
            f"received {labels_per_class}."
        )
    labeled = data_lib.balanced_subset(labels, labels_per_class, seed=seed)
    unlabeled = np.setdiff1d(np.arange(labels.size), labeled)
    return labeled, unlabeled


class Augmenter:
    """Weak and strong views of single images `(H, W, C)`, for `tf.data.Dataset.map`.

    Args:
        image_shape: `(H, W, C)`.
        value_range: `(low, high)` per-channel arrays (or numbers) of the
            standardised pixel values that correspond to 0 and 1.
        crop_padding: reflect padding of the random crop (0: no crop).
        flip: random horizontal flips.
        num_ops: RandAugment operations per image (3).
        magnitude: RandAugment magnitude out of 10 (5).
        cutout: append a Cutout (`RandomErasing`) to the strong view.
        seed: seed of the random layers.
    """

    def __init__(
        self,
        image_shape,
        value_range,
        crop_padding=4,
        flip=True,
        num_ops=3,
        magnitude=5.0,
        cutout=True,
        seed=0,
    ):
        import keras

        if not 0 <= magnitude <= 10:
            raise ValueError(f"`magnitude` must be in [0, 10]; received {magnitude!r}.")
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(f"`crop_padding` must be an integer >= 0; received {crop_padding!r}.")
        self.image_shape = tuple(image_shape)
        low, high = value_range
        self.low = np.broadcast_to(np.asarray(low, "float32"), self.image_shape[-1:]).copy()
        self.scale = np.broadcast_to(np.asarray(high, "float32"), self.image_shape[-1:]) - self.low
        self.scale = np.where(self.scale > 0, self.scale, 1.0).astype("float32")
        self.crop_padding = crop_padding
        height, width = self.image_shape[:2]
        self.crop = keras.layers.RandomCrop(height, width, seed=seed) if crop_padding else None
        self.flip = keras.layers.RandomFlip("horizontal", seed=seed + 1) if flip else None
        self.rand_augment = (
            keras.layers.RandAugment(
                value_range=(0.0, 1.0), num_ops=num_ops, factor=magnitude / 10.0, seed=seed + 2
            )
            if num_ops
            else None
        )
        self.cutout = (
            keras.layers.RandomErasing(
                factor=(1.0, 1.0),
                scale=(0.02, 0.25),
                fill_value=0.5,
                value_range=(0.0, 1.0),
                seed=seed + 3,
            )
            if cutout
            else None
        )

    def weak(self, image):
        """Random crop with reflect padding, then a random horizontal flip."""
        import tensorflow as tf

        if self.crop is not None:
            pad = self.crop_padding
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            image = self.crop(image, training=True)
        if self.flip is not None:
            image = self.flip(image, training=True)
        return image

    def strong(self, image):
        """An independent weak view, then RandAugment and Cutout (in `[0, 1]` space)."""
        import tensorflow as tf

        image = self.weak(image)
        unit = (image - self.low) / self.scale
        if self.rand_augment is not None:
            unit = self.rand_augment(unit, training=True)
        if self.cutout is not None:
            unit = self.cutout(unit, training=True)
        unit = tf.clip_by_value(unit, 0.0, 1.0)
        return tf.cast(unit * self.scale + self.low, image.dtype)


def value_range_of(images):
    """Per-channel `(low, high)` of standardised images: where 0 and 1 were mapped."""
    images = np.asarray(images)
    return images.min(axis=(0, 1, 2)), images.max(axis=(0, 1, 2))


def semi_supervised_dataset(
    x_labeled,
    y_labeled,
    x_unlabeled=None,
    batch_size=64,
    uratio=7,
    unlabeled_labels=None,
    augmenter=None,
    crop_padding=None,
    flip=True,
    num_ops=3,
    magnitude=5.0,
    seed=0,
):
    """An endless `tf.data` pipeline of training steps `(x, y_labeled)`.

    `x` is a dict: `"labeled"` (`batch_size` weak views), and when
    `x_unlabeled` is given `"unlabeled_weak"`, `"unlabeled_strong"`
    (`uratio * batch_size` images each, two views of the same images) and
    `"unlabeled_labels"` (their true labels, or `-1`: only for logging the
    pseudo-label accuracy). Both sources are reshuffled on every pass;
    batches are full (static shapes).

    Args:
        x_labeled: `(n_l, H, W, C)` labelled images.
        y_labeled: `(n_l,)` labels.
        x_unlabeled: `(n_u, H, W, C)` unlabelled images, or `None` for the
            supervised baseline.
        batch_size: labelled batch size `B`.
        uratio: unlabelled images per labelled image.
        unlabeled_labels: `(n_u,)` true labels of the unlabelled images, for
            logging only; `None`: unknown (`-1`).
        augmenter: an `Augmenter`; default: one with `crop_padding`, `flip`,
            RandAugment(3, 5) and Cutout, and the value range of `x_labeled`
            and `x_unlabeled`.
        crop_padding: for the default augmenter (default: image side / 8).
        flip: for the default augmenter.
        num_ops: RandAugment operations of the default augmenter (3).
        magnitude: RandAugment magnitude (out of 10) of the default augmenter.
        seed: seed of the shuffling and of the default augmenter.

    Returns:
        A `tf.data.Dataset`; pass `steps_per_epoch` to `fit`.
    """
    import tensorflow as tf

    batch_size = _positive_int(batch_size, "batch_size")
    uratio = _positive_int(uratio, "uratio")
    x_labeled = np.asarray(x_labeled, "float32")
    y_labeled = np.asarray(y_labeled, "int32").reshape(-1)
    if x_labeled.ndim != 4 or len(x_labeled) != len(y_labeled) or not len(y_labeled):
        raise ValueError(
            "`x_labeled` must be (n, H, W, C) images with one label each in `y_labeled`; "
            f"received shapes {x_labeled.shape} and {y_labeled.shape}."
        )
    if augmenter is None:
        sources = [x_labeled] + ([np.asarray(x_unlabeled)] if x_unlabeled is not None else [])
        lows, highs = zip(*(value_range_of(x) for x in sources), strict=True)
        padding = max(1, x_labeled.shape[1] // 8) if crop_padding is None else crop_padding
        augmenter = Augmenter(
            x_labeled.shape[1:],
            (np.min(lows, axis=0), np.max(highs, axis=0)),
            crop_padding=padding,
            flip=flip,
            num_ops=num_ops,
            magnitude=magnitude,
            seed=seed,
        )

    def labeled_view(image, label):
        return augmenter.weak(image), label

    labeled = (
        tf.data.Dataset.from_tensor_slices((x_labeled, y_labeled))
        .repeat()
        .shuffle(max(len(y_labeled), batch_size), seed=seed)
        .map(labeled_view, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size, drop_remainder=True)
    )
    if x_unlabeled is None:
        dataset = labeled.map(lambda x, y: ({LABELED: x}, y))
        return dataset.prefetch(tf.data.AUTOTUNE)

    x_unlabeled = np.asarray(x_unlabeled, "float32")
    if unlabeled_labels is None:
        unlabeled_labels = np.full(len(x_unlabeled), -1, "int32")
    unlabeled_labels = np.asarray(unlabeled_labels, "int32").reshape(-1)
    if x_unlabeled.shape[1:] != x_labeled.shape[1:] or len(unlabeled_labels) != len(x_unlabeled):
        raise ValueError(
            "`x_unlabeled` must be images of the labelled images' shape "
            f"{x_labeled.shape[1:]} (and `unlabeled_labels` one per image); received "
            f"{x_unlabeled.shape} and {unlabeled_labels.shape}."
        )

    def unlabeled_views(image, label):
        return augmenter.weak(image), augmenter.strong(image), label

    unlabeled = (
        tf.data.Dataset.from_tensor_slices((x_unlabeled, unlabeled_labels))
        .repeat()
        .shuffle(min(len(x_unlabeled), 10_000), seed=seed + 1)
        .map(unlabeled_views, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(uratio * batch_size, drop_remainder=True)
    )

    def join(lab, unlab):
        (x, y), (weak, strong, truth) = lab, unlab
        return {
            LABELED: x,
            UNLABELED_WEAK: weak,
            UNLABELED_STRONG: strong,
            UNLABELED_LABELS: truth,
        }, y

    return tf.data.Dataset.zip(labeled, unlabeled).map(join).prefetch(tf.data.AUTOTUNE)
