"""The recipe's classes save and load in safe mode; models saved by keras-nc 0.2.0 still load."""

import json
import math
import os
import zipfile

import keras
import numpy as np
import pytest

from recipes.semi_supervised.models import FixMatch, FreeMatch, SemiSupervisedModel
from recipes.semi_supervised.schedule import USBCosineDecay
from tests.recipes.semi_supervised.support import C, backbone, batch
from tests.tolerances import float32_tolerance

PACKAGE = "keras_nc_recipes.semi_supervised"
LEGACY = os.path.join(os.path.dirname(os.path.dirname(__file__)), "legacy")
# Logits of `backbone()` in inference (BatchNorm's moving statistics): the pooling's
# mean of 36 pixels is the longest sum, then the conv (fan-in 9) and the head (4);
# one float32 rounding per addend, relative to the largest logit. Covers another
# backend's kernels than TensorFlow's, which wrote the legacy predictions.
LOGITS_TERMS = 36 + 9 + 4
# USBCosineDecay: a cast, a division, a minimum, a product, a cosine and a product.
SCHEDULE_TERMS = 6


def _registered_names(path):
    """`registered_name`s in a `.keras` file's configuration (the model's and nested ones)."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    names, stack = set(), [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            names.add(item.get("registered_name"))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return names


def _schedule_config(model):
    schedule = model.optimizer.get_config()["learning_rate"]
    return schedule["registered_name"], schedule["config"]


@pytest.mark.parametrize("cls", [SemiSupervisedModel, FixMatch, FreeMatch])
def test_each_class_saves_and_loads_in_safe_mode_under_the_recipe_package(cls, tmp_path):
    assert keras.saving.get_registered_name(cls) == f"{PACKAGE}>{cls.__name__}"
    model = cls(backbone(), C)
    model.compile(optimizer=keras.optimizers.SGD(USBCosineDecay(0.03, total_steps=64)))
    images = batch(0)[0]["labeled"]
    want = keras.ops.convert_to_numpy(model.predict(images, verbose=0))
    path = str(tmp_path / "model.keras")
    model.save(path)
    names = _registered_names(path)
    assert {f"{PACKAGE}>{cls.__name__}", f"{PACKAGE}>USBCosineDecay"} <= names
    legacy = {f"keras_nc>{c.__name__}" for c in (cls, USBCosineDecay)}
    assert not names & legacy  # the library's own classes (metrics) stay `keras_nc>...`
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is cls

    def settings(m):  # the trainer's own options (the nested layers are renamed on load)
        return {k: v for k, v in m.get_config().items() if k not in ("backbone", "head")}

    assert settings(loaded) == settings(model)
    assert _schedule_config(loaded) == (
        f"{PACKAGE}>USBCosineDecay",
        {"initial_learning_rate": 0.03, "total_steps": 64},
    )
    got = keras.ops.convert_to_numpy(loaded.predict(images, verbose=0))
    tol = float32_tolerance(terms=LOGITS_TERMS, scale=np.abs(want).max())
    # tol: rtol=0, the computed atol is the whole bound
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


@pytest.mark.parametrize("cls", [FreeMatch, FixMatch])
def test_models_saved_by_0_2_0_load_with_a_warning_and_predict_as_then(cls):
    name = cls.__name__.lower()
    expected = np.load(os.path.join(LEGACY, "expected-0.2.0.npz"))
    with pytest.warns(DeprecationWarning, match=f"`keras_nc>{cls.__name__}` was saved by"):
        model = keras.saving.load_model(os.path.join(LEGACY, f"{name}-0.2.0.keras"), safe_mode=True)
    assert type(model) is cls and model.mir_weight == 0.1
    want = expected[name]
    got = keras.ops.convert_to_numpy(model.predict(expected["probe"], verbose=0))
    tol = float32_tolerance(terms=LOGITS_TERMS, scale=np.abs(want).max())
    # tol: rtol=0, the computed atol is the whole bound
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    # The optimizer's schedule, after the one step it took: USBCosineDecay(0.03, 100) at 1.
    assert _schedule_config(model) == (
        f"{PACKAGE}>USBCosineDecay",
        {"initial_learning_rate": 0.03, "total_steps": 100},
    )
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 1
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    want_rate = 0.03 * math.cos(7 * math.pi * (1 / 100) / 16)
    # tol: 0.03 is the scale of the bound (the initial learning rate), not a tolerance
    assert rate == pytest.approx(want_rate, abs=float32_tolerance(SCHEDULE_TERMS, 0.03))


def test_schedule_is_usb_cosine_decay():
    schedule = USBCosineDecay(0.03, total_steps=100)
    for step, progress in ((0, 0.0), (50, 0.5), (100, 1.0), (400, 1.0)):  # capped at K
        want = 0.03 * math.cos(7 * math.pi * progress / 16)
        got = float(keras.ops.convert_to_numpy(schedule(step)))
        # tol: 0.03 is the scale of the bound (the initial learning rate), not a tolerance
        assert got == pytest.approx(want, abs=float32_tolerance(SCHEDULE_TERMS, 0.03))
    with pytest.raises(ValueError, match="`total_steps` must be a positive integer"):
        USBCosineDecay(0.03, total_steps=0)
