"""Sample weights in `evaluate`: zero weights give the value of the weighted subset."""

import keras
import numpy as np

import keras_nc
import tests.reference as ref
import tests.tolerances as tol
from keras_nc.metrics import HDR, MIR, MatrixEntropy
from tests.helpers import BACKEND, to_numpy


def head_gram(w, y):
    what = w / np.linalg.norm(w, axis=1, keepdims=True)
    return what[y] @ what[y].T


def test_evaluate_with_zero_weights_gives_the_subset_value(rng):
    keras.utils.set_random_seed(0)
    n, k = 32, 20
    inputs = keras.Input((8,))
    backbone = keras.Model(inputs, keras.layers.Dense(6, activation="tanh")(inputs))
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=4)
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[MIR(), HDR(), MatrixEntropy(), MatrixEntropy(normalize=True, name="h_norm")],
        jit_compile=True if BACKEND == "jax" else "auto",
    )
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (np.arange(n) % 4).astype("int32")
    weight = np.array([1.0] * k + [0.0] * (n - k), dtype="float32")
    logs = model.evaluate(x, y, sample_weight=weight, batch_size=n, verbose=0, return_dict=True)
    features = to_numpy(model.backbone(x[:k])).astype("float64")
    head = to_numpy(model.head.kernel).T.astype("float64")
    k_z, k_w = ref.gram(features, center=True), head_gram(head, y[:k])
    h = [ref.entropy(m) for m in (k_z, k_w, k_z * k_w)]
    e = [tol.entropy_tolerance(m) for m in (k_z, k_w, k_z * k_w)]
    np.testing.assert_allclose(logs["matrix_entropy"], h[0], atol=e[0])
    # Normalised by log k: the rows of weight 0 have left the Gram.
    np.testing.assert_allclose(logs["h_norm"], h[0] / np.log(k), atol=e[0] / np.log(k))
    np.testing.assert_allclose(
        logs["mir"], ref.mir(k_z, k_w), atol=tol.ratio_tolerance(*h, *e, "mir")
    )
    np.testing.assert_allclose(
        logs["hdr"], ref.hdr(k_z, k_w), atol=tol.ratio_tolerance(*h, *e, "hdr")
    )
    unweighted = model.evaluate(x, y, batch_size=n, verbose=0, return_dict=True)
    assert abs(unweighted["mir"] - logs["mir"]) > 10 * tol.ratio_tolerance(*h, *e, "mir")
