"""Wrote the models saved by keras-nc 0.2.0's recipes (registered as `keras_nc>...`).

Kept as the record of how the files were made; it ran against the recipes at
commit 2a8ec8c and does not run against the current ones.
"""

import os
import sys

sys.path.insert(0, os.getcwd())
import keras
import numpy as np
import tensorflow as tf

from recipes.clip.model import CLIPClassifier
from recipes.semi_supervised.models import FixMatch, FreeMatch
from recipes.semi_supervised.train import USBCosineDecay
from tests.recipes.clip.tiny_clip import save_tiny_preset

out = "tests/recipes/legacy"


def backbone(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


rng = np.random.default_rng(0)
x = {
    "labeled": rng.normal(size=(4, 6, 6, 1)).astype("float32"),
    "unlabeled_weak": rng.normal(size=(8, 6, 6, 1)).astype("float32"),
    "unlabeled_strong": rng.normal(size=(8, 6, 6, 1)).astype("float32"),
    "unlabeled_labels": rng.integers(-1, 4, size=8).astype("int32"),
}
y = (np.arange(4) % 4).astype("int32")
probe = rng.normal(size=(3, 6, 6, 1)).astype("float32")
arrays = {"probe": probe}
for cls in (FreeMatch, FixMatch):
    model = cls(backbone(), 4, mir_weight=0.1)
    model.compile(
        optimizer=keras.optimizers.SGD(USBCosineDecay(0.03, total_steps=100), momentum=0.9)
    )
    model.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0)
    model.save(f"{out}/{cls.__name__.lower()}-0.2.0.keras")
    arrays[cls.__name__.lower()] = keras.ops.convert_to_numpy(model.predict(probe, verbose=0))
preset = save_tiny_preset("/tmp/w/tiny_clip")
keras.utils.set_random_seed(0)
classes = ("cat", "ankle boot", "dog")
model = CLIPClassifier.from_preset(preset, classes, mode="prompt", context_length=3, seed=2)
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
model.save(f"{out}/clip-prompt-0.2.0.keras")
arrays["clip_images"] = images
arrays["clip"] = keras.ops.convert_to_numpy(model.predict(images, verbose=0))
np.savez(f"{out}/expected-0.2.0.npz", **arrays)
