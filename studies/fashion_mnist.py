"""The phenomena studies' shared setting: a small conv net on a Fashion-MNIST subset.

The studies of linear mode connectivity, pruning, label smoothing and early
stopping (`studies.mode_connectivity`, `studies.pruning`,
`studies.label_smoothing`, `studies.early_stopping`) train the same model on
the same data so that their numbers can be read side by side:

- data: class-balanced subsets of Fashion-MNIST (the offline Debian package
  `dataset-fashion-mnist`, read by `recipes.data`): `TRAIN_PER_CLASS` training
  images per class, `VAL_PER_CLASS` validation images per class taken from the
  rest of the training set, `TEST_PER_CLASS` test images per class. The
  subsets are fixed (drawn with `DATA_SEED`): a study's seed changes the
  initialisation and the data order, never the data, so seeds are paired.
- model: `convnet()`, three 3x3 convolution blocks (16, 32, 64 channels, batch
  normalisation, ReLU, max-pooling after the first two), global average
  pooling and a 64-wide ReLU feature layer, wrapped in a
  `keras_nc.models.CollapseClassifier` with a 10-way linear head.
- training: `compile_model()`, SGD with momentum 0.9 at a constant learning
  rate, cross-entropy (with label smoothing when asked), and the measures of
  arXiv 2409.16767 (`keras_nc.metrics`): accuracy, MIR, HDR (sample pairing,
  per batch) and NC1 (per epoch, from class statistics).

Example:

```python
from studies import fashion_mnist

data = fashion_mnist.load()
model = fashion_mnist.convnet(seed=0)
fashion_mnist.compile_model(model)
model.fit(*data.train, batch_size=fashion_mnist.BATCH_SIZE, epochs=1)
```
"""

from dataclasses import dataclass

import keras
import numpy as np

import keras_nc
from recipes import data as data_lib

TRAIN_PER_CLASS = 600
VAL_PER_CLASS = 100
TEST_PER_CLASS = 200
DATA_SEED = 0
BATCH_SIZE = 128
LEARNING_RATE = 0.05
NUM_CLASSES = 10
FEATURE_DIM = 64
# What `metrics()` logs: keys of `model.evaluate(..., return_dict=True)`.
MEASURES = ("loss", "accuracy", "mir", "hdr", "nc1")


@dataclass
class Splits:
    """Fixed `(x, y)` pairs: `train`, `val` (from the training set) and `test`."""

    train: tuple
    val: tuple
    test: tuple


def load(
    train_per_class=TRAIN_PER_CLASS, val_per_class=VAL_PER_CLASS, test_per_class=TEST_PER_CLASS
):
    """The fixed, class-balanced subsets of Fashion-MNIST (standardised, `(28, 28, 1)`)."""
    images = data_lib.load_dataset("fashion_mnist")
    rng = np.random.default_rng(DATA_SEED)
    train, val = [], []
    for label in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(images.y_train == label))
        train.append(members[:train_per_class])
        val.append(members[train_per_class : train_per_class + val_per_class])
    test = data_lib.balanced_subset(images.y_test, test_per_class, DATA_SEED)

    def pick(x, y, index):
        index = np.sort(np.concatenate(index) if isinstance(index, list) else index)
        return x[index], y[index].astype("int32")

    return Splits(
        train=pick(images.x_train, images.y_train, train),
        val=pick(images.x_train, images.y_train, val),
        test=pick(images.x_test, images.y_test, test),
    )


def convnet(seed=0, input_shape=(28, 28, 1)):
    """The studies' `CollapseClassifier`: a three-block conv net, features of width 64."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = inputs
    for index, filters in enumerate((16, 32, 64)):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
        x = keras.layers.ReLU()(x)
        if index < 2:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    features = keras.layers.Dense(FEATURE_DIM, activation="relu", name="features")(x)
    backbone = keras.Model(inputs, features, name="convnet")
    head = keras.layers.Dense(NUM_CLASSES, name="head")
    return keras_nc.models.CollapseClassifier(backbone, NUM_CLASSES, head=head)


def metrics():
    """Accuracy and the measures of arXiv 2409.16767 the studies log (see `MEASURES`)."""
    return ["accuracy", keras_nc.metrics.MIR(), keras_nc.metrics.HDR(), keras_nc.metrics.NC1()]


def loss(label_smoothing=0.0):
    """Cross-entropy on integer labels, with `label_smoothing` (Keras' definition).

    Keras' `SparseCategoricalCrossentropy` has no `label_smoothing`; the
    labels are one-hot encoded inside the loss instead, so the model and its
    metrics keep integer labels.
    """
    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return SmoothedCrossentropy(label_smoothing)


@keras.saving.register_keras_serializable(package="studies")
class SmoothedCrossentropy(keras.losses.Loss):
    """`CategoricalCrossentropy(label_smoothing=s)` on integer labels."""

    def __init__(self, label_smoothing, name="smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,))
        one_hot = keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=True, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def compile_model(model, learning_rate=LEARNING_RATE, label_smoothing=0.0, extra_metrics=()):
    """SGD (momentum 0.9, constant rate), cross-entropy and `metrics()`."""
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
        loss=loss(label_smoothing),
        metrics=[*metrics(), *extra_metrics],
    )
    return model


def evaluate(model, split, batch_size=500):
    """`model.evaluate` of a split as a dict of Python floats (`MEASURES` and the rest)."""
    values = model.evaluate(*split, batch_size=batch_size, verbose=0, return_dict=True)
    return {key: float(value) for key, value in values.items()}
