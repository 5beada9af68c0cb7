"""`keras_nc.paths.interpolate`: exact end points, the float64 blend, architecture checks."""

import re

import keras
import numpy as np
import pytest

from keras_nc import paths
from tests.helpers import to_numpy
from tests.paths import models


def _perturbed(model, seed=7):
    """`model`'s architecture with other float weights (BatchNormalization's stats too)."""
    rng = np.random.default_rng(seed)
    copy = keras.models.clone_model(model)
    copy.set_weights([w + rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    for layer in paths.batchnorm.batchnorm_layers(copy):  # a positive moving variance
        layer.moving_variance.assign(np.abs(to_numpy(layer.moving_variance)) + 0.5)
    return copy


@pytest.mark.parametrize("kind", sorted(models.BUILDERS))
def test_end_points_reproduce_each_models_predictions_exactly(kind):
    x, _ = models.data()
    model_a = models.BUILDERS[kind](0)
    model_b = _perturbed(model_a)
    for alpha, model in ((0.0, model_a), (1.0, model_b)):
        copy = paths.interpolate(model_a, model_b, alpha)
        assert copy is not model_a and copy is not model_b
        for mine, theirs in zip(copy.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_array_equal(to_numpy(copy(x)), to_numpy(model(x)))


def test_weights_are_the_float64_blend_cast_to_float32_and_extrapolate():
    model_a = models.sequential(0)
    model_b = models.sequential(1)
    for alpha in (0.3, -0.5, 1.5):
        copy = paths.interpolate(model_a, model_b, alpha)
        for mine, a, b in zip(
            copy.get_weights(), model_a.get_weights(), model_b.get_weights(), strict=True
        ):
            expected = (1 - alpha) * a.astype(np.float64) + alpha * b.astype(np.float64)
            # The documented definition: the float64 value rounded once to float32.
            np.testing.assert_array_equal(mine, expected.astype(np.float32))
            assert mine.dtype == np.float32


def test_a_model_with_itself_gives_its_own_weights_at_every_alpha():
    # (1 - a) w + a w in float64 lies within a few float64 ulps of the float32 value w,
    # so it rounds back to w exactly.
    model = models.sequential(0)
    for alpha in np.linspace(0.0, 1.0, 5):
        copy = paths.interpolate(model, model, float(alpha))
        for mine, theirs in zip(copy.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)


def test_seed_states_come_from_model_a_and_the_models_are_unchanged():
    model_a, model_b = models.subclassed(0), models.subclassed(1)
    before_a, before_b = model_a.get_weights(), model_b.get_weights()
    state = model_a.dropout.seed_generator.state
    state.assign(np.array([5, 9], dtype="uint32"))
    copy = paths.interpolate(model_a, model_b, 0.5)
    np.testing.assert_array_equal(to_numpy(copy.dropout.seed_generator.state), [5, 9])
    for now, before in zip(model_a.get_weights(), before_a, strict=True):
        np.testing.assert_array_equal(now, before)
    for now, before in zip(model_b.get_weights(), before_b, strict=True):
        np.testing.assert_array_equal(now, before)


def test_mismatched_architectures_name_the_first_mismatching_weight():
    model_a, model_b = models.sequential(0), models.sequential(0, hidden=5)
    kernel_a, kernel_b = model_a.weights[0], model_b.weights[0]
    message = (
        f"weight 0 is {kernel_a.path!r} of shape (4, 6) in `model_a` and "
        f"{kernel_b.path!r} of shape (4, 5) in `model_b`"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        paths.interpolate(model_a, model_b, 0.5)
    layers = [keras.Input((models.INPUT_DIM,)), *model_a.layers, keras.layers.Dense(2)]
    deeper = keras.Sequential(layers)
    with pytest.raises(ValueError, match=r"`model_a` has 4 weights and `model_b` 6; weight 4"):
        paths.interpolate(model_a, deeper, 0.5)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), "0.5", None, True, [0.5]])
def test_alpha_must_be_a_finite_real_number(alpha):
    model = models.sequential(0)
    with pytest.raises(ValueError, match="`alpha` must be a finite real number"):
        paths.interpolate(model, model, alpha)


def test_an_interpolated_model_saves_and_loads(tmp_path):
    x, _ = models.data()
    model_a = models.collapse_classifier(0)
    middle = paths.interpolate(model_a, _perturbed(model_a), 0.5)
    path = tmp_path / "middle.keras"
    middle.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(middle)
    for mine, theirs in zip(loaded.get_weights(), middle.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # The same weights through the same layers: the same float32 computation.
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(middle(x)))
