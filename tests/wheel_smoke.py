"""Smoke test of the light install (`make wheel-check`): keras, numpy, jax and keras-nc only.

Run from outside the source tree, in a venv holding the library's wheel, keras,
numpy and jax: `import keras_nc` must not need TensorFlow, keras-hub or torch,
and a `CollapseClassifier` must fit with MIR/HDR/NC1 metrics and the CMA loss.
With `--jax VERSION`: the venv's JAX (and jaxlib) must be that release, the one
installed before the wheel's `[jax]` extra (which must keep it, being in range).
"""

import argparse
import importlib.metadata
import importlib.util

for package in ("tensorflow", "keras_hub", "torch"):
    assert importlib.util.find_spec(package) is None, f"{package} is installed: not a light venv"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--jax", help="the JAX and jaxlib release the venv must hold")
args = parser.parse_args()
if args.jax:
    for package in ("jax", "jaxlib"):
        found = importlib.metadata.version(package)
        assert found == args.jax, f"{package} {args.jax} was replaced by {found}"

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
versions = {name: importlib.metadata.version(name) for name in ("keras-nc", "keras", "jax")}
print("light install OK:", versions)
print({key: round(values[-1], 4) for key, values in history.history.items()})
