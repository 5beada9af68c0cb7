"""Small models of the `keras_nc.paths` tests: each kind of Keras model, tiny."""

import keras
import numpy as np

import keras_nc

INPUT_DIM, HIDDEN, CLASSES = 4, 6, 3


@keras.saving.register_keras_serializable(package="tests_paths")
class TwoLayer(keras.Model):
    """A subclassed model (built by a call), serialisable through `get_config`."""

    def __init__(self, hidden=HIDDEN, classes=CLASSES, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.classes = hidden, classes
        self.inner = keras.layers.Dense(hidden, activation="relu")
        self.dropout = keras.layers.Dropout(0.5)
        self.out = keras.layers.Dense(classes)

    def call(self, x, training=None):
        return self.out(self.dropout(self.inner(x), training=training))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "classes": self.classes}


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, INPUT_DIM)).astype("float32")
    return x, (np.arange(n) % CLASSES).astype("int32")


def functional(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((INPUT_DIM,))
    hidden = keras.layers.Dense(HIDDEN, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(hidden))


def sequential(seed, hidden=HIDDEN):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((INPUT_DIM,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(CLASSES),
        ]
    )


def subclassed(seed):
    keras.utils.set_random_seed(seed)
    model = TwoLayer()
    model(np.zeros((1, INPUT_DIM), "float32"))
    return model


def collapse_classifier(seed):
    keras.utils.set_random_seed(seed)
    backbone = keras.Sequential(
        [
            keras.Input((INPUT_DIM,)),
            keras.layers.Dense(HIDDEN),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ]
    )
    return keras_nc.models.CollapseClassifier(backbone, CLASSES)


BUILDERS = {
    "functional": functional,
    "sequential": sequential,
    "subclassed": subclassed,
    "collapse_classifier": collapse_classifier,
}
