"""Collapse losses and metrics under `jit_compile=True` on every backend.

XLA on TensorFlow and JAX, `torch.compile` on PyTorch: the compiled step gives
the values of the step run eagerly (float32 round-off of the eigensolvers
only), and training runs.
"""

import keras
import numpy as np
import pytest

import keras_nc
from keras_nc.losses import CMALoss, InformationRegularizer
from keras_nc.metrics import MIR, MatrixEntropy
from tests.helpers import to_numpy


def _model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12,))
    features = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras_nc.models.CollapseClassifier(keras.Model(inputs, features), num_classes=4)
    return model


def _compile(model, **kwargs):
    model.compile(
        optimizer="sgd",
        loss=[
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            CMALoss(0.5),
            InformationRegularizer(mir_weight=0.3, hdr_weight=0.2),
        ],
        metrics=[MIR(), MatrixEntropy()],
        **kwargs,
    )


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_cma_and_regularizer_compiled_equal_eager_and_train():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 12)).astype("float32")
    y = rng.integers(0, 4, 32)
    compiled, eager = _model(0), _model(0)
    _compile(compiled, jit_compile=True)
    _compile(eager, run_eagerly=True)
    assert compiled.jit_compile
    reference = eager.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    # One compiled training step on the same batch: its logs are computed with the
    # weights before the update, so they equal the eager evaluation. Entropies of
    # 32 x 32 float32 Grams: errors ~1e-5 nats; the loss sums four terms.
    history = compiled.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False).history
    for name in ("loss", "mir", "matrix_entropy"):
        np.testing.assert_allclose(history[name][-1], reference[name], rtol=1e-4, atol=1e-4)
    kernel = to_numpy(compiled.head.kernel)
    assert np.all(np.isfinite(kernel)) and not np.allclose(kernel, to_numpy(eager.head.kernel))
