"""Image datasets for the recipes: offline-first loaders and `tf.data` pipelines.

Every loader returns an `ImageData` of NumPy arrays (channels-last float32
images, standardised per channel with the training statistics, and int32
labels). `training_dataset` and `evaluation_dataset` turn arrays into
`tf.data` pipelines with Keras preprocessing layers for augmentation; `fit`
accepts them on every backend.

Offline (no internet) these work: `digits` (scikit-learn's bundled 8x8 digits,
the embedded default), `fashion_mnist` (Debian's `dataset-fashion-mnist` files
under `/usr/share/datasets/fashion-mnist/`) and `folder` (an image folder, one
sub-folder per class). `cifar10` and `cifar100` are downloaded by
`keras.datasets` and need internet; offline they raise
`DatasetUnavailableError` with that message.

Example:

```python
from recipes import data

images = data.load_dataset("fashion_mnist", samples_per_class=500, seed=0)
train = data.training_dataset(images.x_train, images.y_train, batch_size=128,
                              crop_padding=4, flip=True, seed=0)
```
"""

import dataclasses
import gzip
import os

import numpy as np

DATASETS = ("digits", "fashion_mnist", "cifar10", "cifar100", "folder")
OFFLINE_DATASETS = ("digits", "fashion_mnist", "folder")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = tuple(
    "t-shirt/top,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,ankle boot".split(",")
)
CIFAR10_CLASSES = tuple("airplane automobile bird cat deer dog frog horse ship truck".split())


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be loaded here (no internet, files missing)."""


@dataclasses.dataclass
class ImageData:
    """Train and test images (`(n, H, W, C)` float32) with int32 labels.

    Attributes:
        name: dataset name.
        x_train, y_train, x_test, y_test: the arrays.
        class_names: one name per class.
        flip: whether horizontal flips are label-preserving (not for digits).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    flip: bool = True

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        return tuple(self.x_train.shape[1:])


def balanced_subset(labels, per_class, seed=0):
    """Sorted indices of `per_class` randomly chosen samples of every class.

    Classes with fewer samples contribute all they have.

    Example:

    ```python
    idx = balanced_subset(y_train, 100, seed=0)
    x_small, y_small = x_train[idx], y_train[idx]
    ```
    """
    if not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"`per_class` must be a positive integer; received {per_class!r}.")
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def load_dataset(name, image_size=None, samples_per_class=None, seed=0, data_dir=None):
    """Loads a dataset as standardised channels-last float32 arrays.

    Args:
        name: one of `DATASETS`.
        image_size: optional `(height, width)` (or one int) to resize to
            (bilinear); `None` keeps the native size (digits 8 x 8,
            Fashion-MNIST 28 x 28, CIFAR 32 x 32).
        samples_per_class: keep this many training samples per class
            (class-balanced, drawn with `seed`); `None` keeps all.
        seed: seed of the subsampling.
        data_dir: for `folder`, the image folder (one sub-folder per class, or
            `train/` and `test/` each with one sub-folder per class); for
            `fashion_mnist`, a folder with the four idx `.gz` files
            (default `FASHION_MNIST_DIR`).

    Returns:
        An `ImageData`; pixels standardised per channel with the mean and
        standard deviation of the (full) training set.

    Raises:
        DatasetUnavailableError: the data cannot be reached here.
        ValueError: unknown `name`, or `folder` without `data_dir`.
    """
    if name not in DATASETS:
        raise ValueError(f"`name` must be one of {DATASETS}; received {name!r}.")
    if name == "digits":
        data = _digits()
    elif name == "fashion_mnist":
        data = _fashion_mnist(data_dir or FASHION_MNIST_DIR)
    elif name in ("cifar10", "cifar100"):
        data = _cifar(name)
    else:
        if data_dir is None:
            raise ValueError("`data_dir` is needed for the `folder` dataset.")
        data = _folder(data_dir, image_size, seed)
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        data.x_train, data.x_test = _resize(data.x_train, size), _resize(data.x_test, size)
    mean = data.x_train.mean(axis=(0, 1, 2), keepdims=True)
    std = data.x_train.std(axis=(0, 1, 2), keepdims=True) + 1e-6
    data.x_train = ((data.x_train - mean) / std).astype("float32")
    data.x_test = ((data.x_test - mean) / std).astype("float32")
    if samples_per_class is not None:
        keep = balanced_subset(data.y_train, samples_per_class, seed)
        data.x_train, data.y_train = data.x_train[keep], data.y_train[keep]
    return data


def training_dataset(x, y, batch_size, crop_padding=0, flip=False, seed=0, shuffle=True):
    """A shuffled, augmented, batched `tf.data` pipeline of `(x, y)`.

    Augmentation per image with core Keras layers: zero padding by
    `crop_padding` pixels and `keras.layers.RandomCrop` back to the input
    size (the usual CIFAR "random crop with padding"), then
    `keras.layers.RandomFlip("horizontal")` when `flip`.

    Args:
        x: `(n, H, W, C)` images.
        y: `(n,)` labels.
        batch_size: batch size (the last partial batch is kept).
        crop_padding: padding of the random crop in pixels; 0 disables it.
        flip: random horizontal flips.
        seed: seed of the shuffling and the augmentation layers.
        shuffle: reshuffle every epoch.
    """
    import keras
    import tensorflow as tf

    height, width = x.shape[1:3]
    layers = []
    if crop_padding:
        layers.append(keras.layers.RandomCrop(height, width, seed=seed))
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))

    def augment(image, label):
        if crop_padding:
            pad = [[crop_padding, crop_padding], [crop_padding, crop_padding], [0, 0]]
            image = tf.pad(image, pad)
        for layer in layers:
            image = layer(image, training=True)
        return image, label

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    if layers:
        dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(x, y, batch_size):
    """A batched `tf.data` pipeline of `(x, y)` in order, without augmentation."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(2)


def unavailable_message(name, reason):
    """The message of `DatasetUnavailableError`: what failed and what works offline."""
    return (
        f"Dataset {name!r} is not available here: {reason}. "
        f"Offline, use one of: {', '.join(OFFLINE_DATASETS)} "
        "(digits is bundled with scikit-learn; fashion_mnist reads Debian's "
        f"dataset-fashion-mnist files in {FASHION_MNIST_DIR}; folder reads --data-dir)."
    )


def _brief(error, limit=160):
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype("float32")[..., None]
    y = bunch.target.astype("int32")
    # A fixed stratified split: every seed sees the same test set.
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    names = tuple(str(c) for c in range(10))
    return ImageData("digits", x_train, y_train, x_test, y_test, names, flip=False)


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fashion_mnist(directory):
    files = {
        "x_train": "train-images-idx3-ubyte.gz",
        "y_train": "train-labels-idx1-ubyte.gz",
        "x_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }
    paths = {key: os.path.join(directory, name) for key, name in files.items()}
    if all(os.path.exists(p) for p in paths.values()):
        arrays = {key: _read_idx(path) for key, path in paths.items()}
    else:
        import keras

        try:
            (x_tr, y_tr), (x_te, y_te) = keras.datasets.fashion_mnist.load_data()
        except Exception as error:
            raise DatasetUnavailableError(
                unavailable_message(
                    "fashion_mnist",
                    f"no idx files in {directory} (apt-get install dataset-fashion-mnist) "
                    f"and the keras.datasets download failed ({_brief(error)})",
                )
            ) from None
        arrays = {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}
    return ImageData(
        "fashion_mnist",
        (arrays["x_train"] / 255.0).astype("float32")[..., None],
        arrays["y_train"].astype("int32"),
        (arrays["x_test"] / 255.0).astype("float32")[..., None],
        arrays["y_test"].astype("int32"),
        FASHION_MNIST_CLASSES,
    )


def _cifar(name):
    import keras

    module = keras.datasets.cifar10 if name == "cifar10" else keras.datasets.cifar100
    try:
        (x_tr, y_tr), (x_te, y_te) = module.load_data()
    except Exception as error:
        reason = f"the keras.datasets download needs internet and failed ({_brief(error)})"
        raise DatasetUnavailableError(unavailable_message(name, reason)) from None
    names = CIFAR10_CLASSES if name == "cifar10" else tuple(f"class_{c}" for c in range(100))
    return ImageData(
        name,
        (x_tr / 255.0).astype("float32"),
        y_tr.reshape(-1).astype("int32"),
        (x_te / 255.0).astype("float32"),
        y_te.reshape(-1).astype("int32"),
        names,
    )


def _folder(directory, image_size, seed):
    import keras

    if not os.path.isdir(directory):
        raise DatasetUnavailableError(
            unavailable_message("folder", f"{directory!r} is not a directory")
        )
    size = image_size or 32
    size = (size, size) if isinstance(size, int) else tuple(size)

    def read(path, subset=None):
        dataset = keras.utils.image_dataset_from_directory(
            path,
            image_size=size,
            batch_size=None,
            shuffle=subset is not None,
            seed=seed,
            validation_split=0.2 if subset else None,
            subset=subset,
            verbose=False,
        )
        images, labels = zip(*dataset.as_numpy_iterator(), strict=True)
        return np.stack(images) / 255.0, np.asarray(labels, "int32"), dataset.class_names

    train_dir, test_dir = os.path.join(directory, "train"), os.path.join(directory, "test")
    if os.path.isdir(train_dir) and os.path.isdir(test_dir):
        x_train, y_train, names = read(train_dir)
        x_test, y_test, _ = read(test_dir)
    else:
        x_train, y_train, names = read(directory, "training")
        x_test, y_test, _ = read(directory, "validation")
    names = tuple(name.replace("_", " ") for name in names)
    return ImageData(
        os.path.basename(os.path.normpath(directory)),
        x_train.astype("float32"),
        y_train,
        x_test.astype("float32"),
        y_test,
        names,
    )


def _resize(images, size):
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    import tensorflow as tf

    return tf.image.resize(images, size, method="bilinear").numpy().astype("float32")
