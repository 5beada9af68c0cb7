"""Smoke test of the light install (`make wheel-check`): keras, numpy, jax and keras-nc only.

Run from outside the source tree, in a venv holding the library's wheel, keras,
numpy and jax: `import keras_nc` must not need TensorFlow, keras-hub or torch,
and a `CollapseClassifier` must fit with MIR/HDR/NC1 metrics and the CMA loss.
"""

import importlib.util

for package in ("tensorflow", "keras_hub", "torch"):
    assert importlib.util.find_spec(package) is None, f"{package} is installed: not a light venv"

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_nc  # noqa: E402
from keras_nc.losses import CMALoss  # noqa: E402
from keras_nc.metrics import HDR, MIR, NC1  # noqa: E402

assert "site-packages" in keras_nc.__file__, keras_nc.__file__  # the wheel, not the checkout
assert keras.backend.backend() == "jax"

rng = np.random.default_rng(0)
y = rng.integers(0, 4, 96).astype("int32")
x = (rng.normal(size=(4, 16))[y] + 0.5 * rng.normal(size=(96, 16))).astype("float32")
inputs = keras.Input((16,))
backbone = keras.Model(inputs, keras.layers.Dense(8, activation="relu")(inputs))
model = keras_nc.models.CollapseClassifier(backbone, num_classes=4)
model.compile(
    optimizer="sgd",
    loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(0.5)],
    metrics=["accuracy", MIR(), HDR(), NC1()],
)
history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
for key in ("loss", "mir", "hdr", "nc1"):
    assert np.all(np.isfinite(history.history[key])), key
print("light install OK:", {key: round(values[-1], 4) for key, values in history.history.items()})
