"""Collapse losses and metrics under `jit_compile=True` on every backend.

XLA on TensorFlow and JAX, `torch.compile` on PyTorch: the compiled step gives
the values of the step run eagerly (float32 round-off of the eigensolvers
only), and training runs.
"""

import keras
import numpy as np
import pytest

import keras_nc
import tests.reference as ref
from keras_nc.losses import CMALoss, InformationRegularizer
from keras_nc.metrics import MIR, MatrixEntropy
from tests.helpers import to_numpy
from tests.tolerances import (
    cma_tolerance,
    cross_entropy_tolerance,
    entropy_tolerance,
    information_tolerance,
)


def _bounds(model, x, y):
    """Float32 bounds of the logged values, from the float64 reference of the model's outputs.

    Cross-entropy: a log-sum-exp of C terms and a mean of n; CMA: each class group's
    entropy bound (a matrix of n + C rows) over the log of its size; MIR, HDR and the
    entropy: `information_tolerance` and `entropy_tolerance` of the batch's Grams.
    """
    z = to_numpy(model.extract_features(x)).astype(np.float64)
    head = to_numpy(model.head_weights).astype(np.float64)
    e_ce = cross_entropy_tolerance(z @ head.T + to_numpy(model.head.bias), y)
    e_cma = cma_tolerance(z, head, y)
    k_z, k_w = ref.gram(z, center=True), ref.gram(head[y])
    e_mir, e_hdr = information_tolerance(k_z, k_w), information_tolerance(k_z, k_w, "hdr")
    loss = e_ce + 0.5 * e_cma + 0.3 * e_mir + 0.2 * e_hdr  # the weights of `_compile`
    return {"loss": loss, "mir": e_mir, "matrix_entropy": entropy_tolerance(k_z)}


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
    # weights before the update, so they equal the eager evaluation: two float32
    # evaluations, each within its float64 bound, so within twice the bound.
    bounds = _bounds(eager, x, y)
    history = compiled.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False).history
    for name in ("loss", "mir", "matrix_entropy"):
        atol = 2 * bounds[name]
        # tol: rtol=0, the bound is the absolute one above
        np.testing.assert_allclose(history[name][-1], reference[name], rtol=0, atol=atol)
    kernel = to_numpy(compiled.head.kernel)
    assert np.all(np.isfinite(kernel)) and not np.allclose(kernel, to_numpy(eager.head.kernel))
