"""recipes.backbones: the CIFAR ResNets and WideResNets (shapes, parameter counts, decay)."""

import keras
import numpy as np
import pytest

from recipes.backbones import build_backbone
from tests.helpers import to_numpy
from tests.tolerances import float32_tolerance


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# Trainable parameters with a linear head, as published for the PyTorch reference
# implementations (kuangliu/pytorch-cifar ResNets; Zagoruyko and Komodakis' WRNs).
@pytest.mark.parametrize(
    "name, feature_dim, cifar10, cifar100",
    [
        ("resnet18", 512, 11_173_962, 11_220_132),
        ("resnet34", 512, 21_282_122, 21_328_292),
        ("resnet50", 2048, 23_520_842, 23_705_252),
        ("wrn28_10", 640, 36_479_194, 36_536_884),
        ("wrn28_2", 128, 1_467_610, 1_479_220),
    ],
)
def test_parameter_counts_match_the_usual_ones(name, feature_dim, cifar10, cifar100):
    backbone = build_backbone(name, input_shape=(32, 32, 3))
    assert backbone.output.shape[-1] == feature_dim
    for classes, expected in [(10, cifar10), (100, cifar100)]:
        assert _trainable(backbone) + feature_dim * classes + classes == expected


@pytest.mark.parametrize(
    "name, input_shape, width, feature_dim",
    [
        ("resnet18", (12, 12, 1), 0.125, 64),
        ("resnet34", (8, 8, 1), 0.0625, 32),
        ("resnet50", (16, 20, 3), 0.0625, 128),
        ("wrn28_2", (28, 28, 1), 0.25, 32),
    ],
)
def test_narrow_backbones_on_any_input(name, input_shape, width, feature_dim):
    backbone = build_backbone(name, input_shape=input_shape, width=width)
    x = np.random.default_rng(0).normal(size=(3, *input_shape)).astype("float32")
    features = to_numpy(backbone(x, training=False))
    assert features.shape == (3, feature_dim)
    assert np.all(np.isfinite(features))
    # Readable layer names; the CIFAR stem keeps the resolution (stride 1, no pooling).
    stem = backbone.get_layer("stem_conv")
    assert stem.strides == (1, 1) and stem.kernel_size == (3, 3)
    assert tuple(stem.output.shape[1:3]) == input_shape[:2]


def test_backbone_argument_errors():
    with pytest.raises(ValueError, match="`name` must be one of resnet18"):
        build_backbone("resnet19")
    with pytest.raises(ValueError, match="`width` must be a positive number"):
        build_backbone("resnet18", width=0)
    with pytest.raises(ValueError, match="`depth` must be 6n"):
        build_backbone("wrn27_2")


def test_weight_decay_is_coupled_l2_on_every_kernel():
    regularizer = keras.regularizers.L2(0.5)
    backbone = build_backbone("resnet18", (8, 8, 1), 0.0625, kernel_regularizer=regularizer)
    kernels = [w for w in backbone.trainable_weights if w.path.endswith("kernel")]
    assert len(kernels) == 20  # 17 convolutions + 3 projection shortcuts
    weights = [to_numpy(w).astype("float64") for w in kernels]
    expected = 0.5 * sum(float(np.sum(w**2)) for w in weights)
    backbone(np.zeros((1, 8, 8, 1), "float32"))
    total = float(sum(to_numpy(loss) for loss in backbone.losses))
    # A float32 sum of positive squares: relative error <= the number of terms times eps.
    terms = sum(w.size for w in weights)
    np.testing.assert_allclose(total, expected, rtol=float32_tolerance(terms))
