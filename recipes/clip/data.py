"""Image folders, the few-shot sampler and CLIP's input pipelines (`tf.data`).

An image folder has one sub-folder per class (`DIR/<class>/*.jpg`), or
`DIR/train/<class>/` and `DIR/test/<class>/`. Class names are the folder
names with underscores turned into spaces (`"ankle_boot"` -> `"ankle boot"`),
sorted by folder name; the label of a class is its index in that order.

The pipelines read the files lazily (`tf.data`, on every Keras backend): the
training one takes a random resized crop (scale 0.08 to 1, aspect ratio 3/4
to 4/3, bicubic), a `keras.layers.RandomFlip("horizontal")` and the preset's
`keras_hub.layers.CLIPImageConverter`; the evaluation one only the converter
(resize with centre crop, CLIP's normalisation).

Example:

```python
from recipes.clip import data

folder = data.image_folder("/data/eurosat")
train_idx = data.few_shot_indices(folder.train_labels, shots=16, seed=1)
train = data.training_dataset(
    folder.train_paths[train_idx], folder.train_labels[train_idx], converter, 32, seed=1
)
```
"""

import dataclasses
import os

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass
class ImageFolder:
    """File paths and labels of an image folder.

    Attributes:
        class_names: one name per class (folder names, underscores to spaces).
        train_paths, train_labels: the training files (all files when the
            folder has no `train/` and `test/` split).
        test_paths, test_labels: the test files, or `None` without a split.
    """

    class_names: tuple
    train_paths: np.ndarray
    train_labels: np.ndarray
    test_paths: np.ndarray = None
    test_labels: np.ndarray = None

    @property
    def num_classes(self):
        return len(self.class_names)


def _class_dirs(directory):
    return sorted(
        entry
        for entry in os.listdir(directory)
        if os.path.isdir(os.path.join(directory, entry)) and not entry.startswith(".")
    )


def _list_split(directory, classes=None):
    if classes is None:
        classes = _class_dirs(directory)
    if not classes:
        raise ValueError(
            f"`data_dir` {directory!r} has no class folders: expected one sub-folder of "
            "images per class (or train/ and test/ with one sub-folder per class)."
        )
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(directory, name)
        files = sorted(
            f
            for f in (os.listdir(folder) if os.path.isdir(folder) else [])
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            raise ValueError(
                f"`data_dir`: class folder {folder!r} has no images (expected files ending "
                f"in {', '.join(IMAGE_EXTENSIONS)})."
            )
        paths += [os.path.join(folder, f) for f in files]
        labels += [label] * len(files)
    return classes, np.asarray(paths), np.asarray(labels, dtype="int32")


def class_name(folder_name):
    """The class name of a folder: underscores become spaces."""
    return folder_name.replace("_", " ").strip()


def image_folder(directory):
    """Lists an image folder (see the module docstring).

    Args:
        directory: `DIR` with one sub-folder per class, or `DIR/train` and
            `DIR/test` with the same class sub-folders.

    Returns:
        An `ImageFolder`.

    Raises:
        ValueError: the directory does not exist, has fewer than 2 class
            folders, or a class folder has no images.
    """
    if not isinstance(directory, str) or not os.path.isdir(directory):
        raise ValueError(f"`data_dir` must be an existing directory; received {directory!r}.")
    split = all(os.path.isdir(os.path.join(directory, s)) for s in ("train", "test"))
    if split:
        classes, train_paths, train_labels = _list_split(os.path.join(directory, "train"))
        test_dir = os.path.join(directory, "test")
        if _class_dirs(test_dir) != classes:
            raise ValueError(
                f"`data_dir`: {test_dir!r} must have the same class folders as the train/ "
                f"folder ({len(classes)} of them)."
            )
        _, test_paths, test_labels = _list_split(test_dir, classes)
    else:
        classes, train_paths, train_labels = _list_split(directory)
        test_paths = test_labels = None
    if len(classes) < 2:
        raise ValueError(f"`data_dir` {directory!r} must have at least 2 class folders.")
    names = tuple(class_name(c) for c in classes)
    return ImageFolder(names, train_paths, train_labels, test_paths, test_labels)


def few_shot_indices(labels, shots, seed=0):
    """Sorted indices of exactly `shots` samples of every class, drawn with `seed`.

    Args:
        labels: `(n,)` integer labels `0..C-1`.
        shots: samples per class, `>= 1`.
        seed: seed of the draw (the same seed gives the same indices).

    Raises:
        ValueError: `shots < 1`, or a class has fewer than `shots` samples.

    Example:

    ```python
    idx = few_shot_indices(labels, shots=16, seed=1)  # 16 per class
    ```
    """
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"`shots` must be an integer >= 1; received {shots!r}.")
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < shots:
            raise ValueError(
                f"`shots` is {shots} but class {int(c)} has only {len(members)} samples: "
                f"every class needs at least `shots` images."
            )
        picks.append(rng.choice(members, size=shots, replace=False))
    return np.sort(np.concatenate(picks))


def split_few_shot(folder, shots, seed=0, test_per_class=None):
    """Training (k shots per class) and test indices of a folder without a split.

    The test set is the rest of each class (at most `test_per_class` of it,
    drawn with `seed`); raises `ValueError` when a class has no image left.
    """
    train = few_shot_indices(folder.train_labels, shots, seed)
    rest = np.setdiff1d(np.arange(len(folder.train_labels)), train)
    if len(np.unique(folder.train_labels[rest])) != folder.num_classes:
        raise ValueError(
            f"`shots` is {shots}: without train/ and test/ folders every class needs more than "
            "`shots` images (the rest is the test set)."
        )
    if test_per_class is not None:
        rng = np.random.default_rng(seed + 1)
        rest = np.sort(
            np.concatenate(
                [
                    rng.permutation(rest[folder.train_labels[rest] == c])[:test_per_class]
                    for c in range(folder.num_classes)
                ]
            )
        )
    return train, rest


def _decode(path):
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.cast(image, "float32")


def random_resized_crop(image, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """A random crop of area `scale` and aspect `ratio`, resized to `size` (bicubic)."""
    import tensorflow as tf

    begin, crop, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.zeros((1, 0, 4)),
        min_object_covered=0.0,
        aspect_ratio_range=ratio,
        area_range=scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, crop)
    image = tf.image.resize(image, size, method="bicubic")
    return tf.clip_by_value(image, 0.0, 255.0)


def training_dataset(paths, labels, converter, batch_size, seed=0, flip=True, scale=(0.08, 1.0)):
    """Shuffled, augmented, batched `(images, labels)` for `fit`.

    Args:
        paths: image files.
        labels: their labels.
        converter: a `keras_hub.layers.CLIPImageConverter` (its `image_size`
            is the crop size).
        batch_size: batch size (the last partial batch is kept).
        seed: seed of the shuffle and the augmentations.
        flip: random horizontal flips (`keras.layers.RandomFlip`).
        scale: area range of the random resized crop.
    """
    import keras
    import tensorflow as tf

    size = tuple(converter.image_size)
    flipper = keras.layers.RandomFlip("horizontal", seed=seed) if flip else None
    tf.random.set_seed(seed)

    def load(path, label):
        image = random_resized_crop(_decode(path), size, scale=scale)
        if flipper is not None:
            image = flipper(image, training=True)
        return converter(image), label

    dataset = tf.data.Dataset.from_tensor_slices((np.asarray(paths), np.asarray(labels)))
    dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(paths, labels, converter, batch_size):
    """Batched `(images, labels)` in order, through the converter only."""
    import tensorflow as tf

    def load(path, label):
        return converter(_decode(path)), label

    dataset = tf.data.Dataset.from_tensor_slices((np.asarray(paths), np.asarray(labels)))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def write_image_folder(directory, images, labels, class_names, split=None):
    """Writes `(n, H, W[, 3])` uint8 images as PNG files in class folders.

    Class folder names are the class names with spaces turned into
    underscores (`image_folder` turns them back). `split` (e.g. `"train"`)
    adds a level. Used to make small offline datasets.
    """
    import tensorflow as tf

    root = directory if split is None else os.path.join(directory, split)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    counters = {}
    for image, label in zip(images, np.asarray(labels), strict=True):
        name = str(class_names[int(label)]).replace("/", " or ").replace(" ", "_")
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        index = counters.get(int(label), 0)
        counters[int(label)] = index + 1
        png = tf.io.encode_png(tf.convert_to_tensor(image.astype("uint8")))
        tf.io.write_file(os.path.join(folder, f"{index:05d}.png"), png)
    return directory
