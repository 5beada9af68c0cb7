"""Saving: registered names `keras_nc_recipes.clip>...`, safe-mode round trips, 0.2.0 files."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest

from keras_nc.losses import CMALoss
from keras_nc.metrics import MIR
from recipes.clip.classifier import CLIPClassifier
from recipes.clip.modes import FullMode, HeadMode, PromptMode
from recipes.clip.prompt_learner import PromptLearner
from tests.helpers import to_numpy
from tests.recipes.clip.tiny_clip import (
    CLASSES,
    EMBEDDING_TOLERANCE,
    WIDTH,
    images,
    logit_tolerance,
)
from tests.tolerances import EPS32, SAFETY

LEGACY = os.path.join(os.path.dirname(__file__), os.pardir, "legacy")
CLASSES_SAVED = (CLIPClassifier, PromptLearner, PromptMode, HeadMode, FullMode)
# One training step of two models with the same weights and optimiser state: the logs
# (cross-entropy, CMA, MIR: sums over the 6 x 3 logits and a 7 x 7 Gram's eigenvalues)
# may differ only by the float32 round-off of a differently ordered sum of WIDTH terms.
STEP_RTOL = SAFETY * np.sqrt(WIDTH) * EPS32


def _name(cls):
    return f"keras_nc_recipes.clip>{cls.__name__}"


@pytest.mark.parametrize("cls", CLASSES_SAVED, ids=lambda cls: cls.__name__)
def test_classes_are_registered_under_the_recipe_package(cls):
    assert keras.saving.get_registered_name(cls) == _name(cls)
    assert f"keras_nc>{cls.__name__}" in keras.saving.get_custom_objects()  # 0.2.0's alias


def test_prompt_learner_and_modes_round_trip_in_safe_mode():
    regularizer = keras.regularizers.L2(5e-4)
    learner = PromptLearner([[3, 4], [5]], 1, 2, 24, context_length=2, seed=0,
                            context_regularizer=regularizer)  # fmt: skip
    for obj in (learner, PromptMode(learner), HeadMode(), FullMode()):
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))
        assert config["registered_name"] == _name(type(obj))
        restored = keras.saving.deserialize_keras_object(config, safe_mode=True)
        assert type(restored) is type(obj)
        assert keras.saving.serialize_keras_object(restored) == config
    assert restored.name == "full" and restored.trains_image_encoder


def test_model_round_trips_in_safe_mode(preset, tmp_path):
    """The whole model (CLIP, mode, prompt learner, head, converter) loads in safe mode.

    Prompt mode, which holds the most; the head mode's round trip is in
    test_classifier.py, the modes' configs are above.
    """
    x, y, mode = images(6), np.arange(6) % 3, "prompt"
    keras.utils.set_random_seed(0)
    model = CLIPClassifier.from_preset(
        preset, CLASSES, mode=mode, context_length=3, seed=2, weight_decay=1e-3
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(1.0)],
        metrics=[MIR()],
    )
    model.train_on_batch(x, y)
    path = str(tmp_path / "clip.keras")
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        saved = json.loads(archive.read("config.json"))
    assert saved["registered_name"] == _name(CLIPClassifier)
    assert saved["config"]["mode"]["registered_name"] == _name(PromptMode)
    learner = saved["config"]["mode"]["config"]["prompt_learner"]
    assert learner["registered_name"] == _name(PromptLearner)

    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is CLIPClassifier and restored.mode == mode
    assert type(restored.tuning_mode) is PromptMode
    assert json.dumps(restored.get_config()) == json.dumps(model.get_config())
    assert {"clip", "head", "mode", "image_converter"} <= set(model.get_config())
    assert restored.image_converter.get_config() == model.image_converter.get_config()
    raw = np.random.default_rng(1).integers(0, 256, size=(2, 40, 36, 3)).astype("float32")
    np.testing.assert_array_equal(  # the same converter config: the same operations
        to_numpy(restored.image_converter(raw)), to_numpy(model.image_converter(raw))
    )
    scale = np.exp(float(to_numpy(model.clip.clip_head.logit_scale)))
    np.testing.assert_allclose(
        to_numpy(restored(x)), to_numpy(model(x)), atol=logit_tolerance(scale)
    )
    np.testing.assert_allclose(
        to_numpy(restored.head_weights), to_numpy(model.head_weights), atol=EMBEDDING_TOLERANCE
    )
    trained = [(w.name, to_numpy(w)) for w in model.trainable_weights]
    assert [name for name, _ in trained] == [w.name for w in restored.trainable_weights]
    for (name, value), loaded in zip(trained, restored.trainable_weights, strict=True):
        np.testing.assert_array_equal(to_numpy(loaded), value, err_msg=name)
    # The optimiser state came along: one more step gives the same logs on both.
    logs = model.train_on_batch(x, y, return_dict=True)
    again = restored.train_on_batch(x, y, return_dict=True)
    for key in logs:
        np.testing.assert_allclose(again[key], logs[key], rtol=STEP_RTOL, err_msg=key)


def test_file_saved_by_0_2_0_loads_with_a_warning_and_predicts_the_stored_logits():
    """`tests/recipes/legacy/clip-prompt-0.2.0.keras`: `keras_nc>CLIPClassifier`, on TensorFlow."""
    expected = np.load(os.path.join(LEGACY, "expected-0.2.0.npz"))
    path = os.path.join(LEGACY, "clip-prompt-0.2.0.keras")
    with pytest.warns(DeprecationWarning, match="keras_nc>CLIPClassifier"):
        model = keras.saving.load_model(path, safe_mode=True)
    assert type(model) is CLIPClassifier and model.mode == "prompt"
    assert isinstance(model.tuning_mode, PromptMode)
    assert model.prompt_learner is model.tuning_mode.prompt_learner
    assert model.prompt_learner.context_length == 3
    # Saved on TensorFlow: another backend's kernels round the same float32 network
    # differently, within the logits' round-off bound.
    scale = np.exp(float(to_numpy(model.clip.clip_head.logit_scale)))
    logits = model.predict(expected["clip_images"], verbose=0)
    np.testing.assert_allclose(logits, expected["clip"], atol=logit_tolerance(scale))
    # Saving again writes the new names.
    config = keras.saving.serialize_keras_object(model)
    assert config["registered_name"] == _name(CLIPClassifier)
    assert config["config"]["mode"]["registered_name"] == _name(PromptMode)
