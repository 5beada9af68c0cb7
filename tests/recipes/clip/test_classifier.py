"""`CLIPClassifier` on the tiny random CLIP: zero-shot head, the three modes, argument errors."""

import os
import time

import keras
import numpy as np
import pytest

from keras_nc.losses import CMALoss
from keras_nc.metrics import HDR, MIR
from recipes.clip.classifier import CLIPClassifier
from recipes.clip.loading import PresetUnavailableError, load_clip, tokenize
from recipes.clip.modes import FullMode, HeadMode, PromptMode
from tests import reference
from tests.helpers import to_numpy
from tests.recipes.clip.tiny_clip import (
    CLASSES,
    EMBEDDING_TOLERANCE,
    MAX_SEQUENCE_LENGTH,
    MOVED,
    images,
    logit_tolerance,
    unit,
)


def _weights(model):
    return {i: to_numpy(w).copy() for i, w in enumerate(model.weights)}


def _changed(model, before):
    return {
        model.weights[i].path for i, value in before.items()
        if not np.array_equal(to_numpy(model.weights[i]), value)
    }  # fmt: skip


def _scale(model):
    return np.exp(float(to_numpy(model.clip.clip_head.logit_scale)))


def test_zero_shot_logits_are_scaled_cosines_of_clip_embeddings(preset):
    import keras_hub

    templates = ["a photo of a {}.", "{} texture."]
    model = CLIPClassifier.from_preset(preset, CLASSES, mode="head", templates=templates)
    assert isinstance(model.tuning_mode, HeadMode) and model.mode == "head"
    x = images(6)
    logits = to_numpy(model(x))

    # Manual: keras-hub's own preprocessor tokenises; embeddings normalised in float64,
    # averaged over templates and renormalised; times CLIP's logit scale.
    clip = model.clip
    tokenizer = keras_hub.models.CLIPTokenizer.from_preset(preset)
    preprocessor = keras_hub.models.CLIPPreprocessor(tokenizer, sequence_length=24)
    image = unit(to_numpy(clip.get_vision_embeddings(x)))
    texts = []
    for template in templates:
        prompts = [template.format(c) for c in CLASSES]
        ids = preprocessor({"images": None, "prompts": prompts})["token_ids"]
        texts.append(unit(to_numpy(clip.get_text_embeddings(to_numpy(ids)))))
    text = unit(np.mean(texts, axis=0))
    scale = _scale(model)
    np.testing.assert_allclose(logits, scale * image @ text.T, atol=logit_tolerance(scale))
    np.testing.assert_allclose(to_numpy(model.head.kernel).T, text, atol=EMBEDDING_TOLERANCE)
    # The first template alone is keras-hub's CLIPBackbone output.
    prompts = [f"a photo of a {c}." for c in CLASSES]
    ids = to_numpy(preprocessor({"images": None, "prompts": prompts})["token_ids"])
    outputs = clip({"images": x, "token_ids": ids})
    np.testing.assert_allclose(
        to_numpy(outputs["vision_logits"]), scale * image @ texts[0].T, atol=logit_tolerance(scale)
    )


def test_prompt_mode_starts_as_zero_shot_and_head_mode_trains_only_the_head(preset, tmp_path):
    x, y = images(6), np.arange(6) % 3
    # Prompt learning initialised from "a photo of a": the context replaces those words'
    # embeddings, so it starts as the zero-shot classifier of "a photo of a {}.".
    prompt = CLIPClassifier.from_preset(preset, CLASSES, mode="prompt", context_init="a photo of a")
    assert isinstance(prompt.tuning_mode, PromptMode) and prompt.mode == "prompt"
    tokenizer = load_clip(preset)[1]
    learner = prompt.prompt_learner
    assert learner is prompt.tuning_mode.prompt_learner
    assert learner.context_length == np.asarray(tokenizer(["a photo of a"])[0]).size == 6
    features = unit(to_numpy(prompt.clip.get_vision_embeddings(x)))
    scale = _scale(prompt)
    zero_shot = scale * features @ prompt.zero_shot_embeddings.T
    np.testing.assert_allclose(to_numpy(prompt(x)), zero_shot, atol=logit_tolerance(scale))
    np.testing.assert_allclose(
        to_numpy(prompt.head.kernel).T, prompt.zero_shot_embeddings, atol=EMBEDDING_TOLERANCE
    )
    assert [w.path.split("/", 1)[1] for w in prompt.trainable_weights] == ["prompt_learner/context"]

    keras.utils.set_random_seed(0)
    model = CLIPClassifier.from_preset(preset, CLASSES, mode="head")
    assert model.prompt_learner is None and not model.train_image_encoder
    np.testing.assert_allclose(to_numpy(model(x)), zero_shot, atol=logit_tolerance(scale))
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(1.0)],
    )
    before = _weights(model)
    model.train_on_batch(x, y)
    assert {path.split("/", 1)[1] for path in _changed(model, before)} == {"head/kernel"}
    head = to_numpy(model.head_weights)  # the trained kernel's columns
    logits = to_numpy(model(x))
    np.testing.assert_allclose(logits, scale * features @ head.T, atol=logit_tolerance(scale))
    assert np.max(np.abs(logits - zero_shot)) > MOVED * logit_tolerance(scale)
    # The trained head mode round-trips in safe mode (prompt mode, with the optimiser
    # state: test_saving.py).
    path = str(tmp_path / "head.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored.tuning_mode) is HeadMode and restored.mode == "head"
    np.testing.assert_array_equal(to_numpy(restored.head.kernel), to_numpy(model.head.kernel))
    np.testing.assert_allclose(to_numpy(restored(x)), logits, atol=logit_tolerance(scale))


def _fit_full(preset, x, y, cma_weight):
    keras.utils.set_random_seed(0)
    model = CLIPClassifier.from_preset(preset, CLASSES, mode="full")
    assert isinstance(model.tuning_mode, FullMode) and model.train_image_encoder
    loss = [keras.losses.SparseCategoricalCrossentropy(from_logits=True)]
    if cma_weight:
        loss.append(CMALoss(cma_weight))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss, metrics=[MIR(), HDR()])
    before = _weights(model)
    start = reference.cma(to_numpy(model.extract_features(x)), to_numpy(model.head.kernel).T, y)
    history = model.fit(x, y, batch_size=len(y), epochs=4, shuffle=False, verbose=0)
    entropy = reference.cma(to_numpy(model.extract_features(x)), to_numpy(model.head.kernel).T, y)
    return start, _changed(model, before), entropy, history.history


def test_full_mode_and_cma_lowers_the_within_class_entropy(preset):
    x, y = images(6), np.arange(6) % 3
    start, changed, plain, _ = _fit_full(preset, x, y, 0.0)
    _, _, aligned, history = _fit_full(preset, x, y, 5.0)
    # Full fine-tuning moves the image encoder, its projection and the head; never the text
    # encoder, its projection or the logit scale.
    assert any("vision_encoder" in p for p in changed)
    assert any("vision_projection" in p for p in changed)
    assert any(p.endswith("head/kernel") for p in changed)
    assert not [p for p in changed if "text" in p or "logit_scale" in p]
    assert np.all(np.isfinite(history["mir"])) and np.all(np.isfinite(history["hdr"]))
    # Same seed, same steps: with CMA the groups {images of c} U {text of c} are more aligned
    # The effect of the CMA term, far above the entropy's float32 bound (tests/tolerances.py):
    # tol: a margin of 0.01 of the normalised entropy, not a round-off tolerance
    assert aligned < plain - 0.01, (start, plain, aligned)
    assert aligned < start


def test_argument_errors(preset):
    clip, tokenizer, _ = load_clip(preset)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        CLIPClassifier.from_backbone(clip, tokenizer, CLASSES, mode="lora")
    with pytest.raises(ValueError, match="`templates` must be strings with one"):
        CLIPClassifier.from_backbone(clip, tokenizer, CLASSES, templates=["a photo"])
    with pytest.raises(ValueError, match="`class_names` must name at least 2"):
        CLIPClassifier.from_backbone(clip, tokenizer, ["cat"])
    with pytest.raises(ValueError, match="`context_length` must be >= 1"):
        CLIPClassifier.from_backbone(clip, tokenizer, CLASSES, mode="prompt", context_length=0)
    with pytest.raises(ValueError, match="leaves no room for the class name"):
        CLIPClassifier.from_backbone(clip, tokenizer, CLASSES, mode="prompt", context_length=22)
    with pytest.raises(ValueError, match="`weight_decay` must be >= 0"):
        CLIPClassifier.from_backbone(clip, tokenizer, CLASSES, weight_decay=-1.0)
    with pytest.raises(ValueError, match="without bias"):
        CLIPClassifier.from_backbone(clip, tokenizer, CLASSES, head=keras.layers.Dense(3))
    with pytest.raises(ValueError, match="is not a keras-hub preset directory"):
        load_clip(os.path.join(preset, "missing"))
    # The constructor: mode objects or "head"/"full"; "prompt" needs the tokens.
    prompts = [tokenize(tokenizer, [f"a {c}." for c in CLASSES], max_length=MAX_SEQUENCE_LENGTH)]
    with pytest.raises(ValueError, match="needs the class names' tokens"):
        CLIPClassifier(clip, prompts, mode="prompt")
    other = PromptMode.from_tokenizer(tokenizer, ["cat", "dog"], MAX_SEQUENCE_LENGTH)
    with pytest.raises(ValueError, match="PromptLearner for 3 classes; received one for 2"):
        CLIPClassifier(clip, prompts, mode=other)
    with pytest.raises(ValueError, match="must be a PromptLearner"):
        PromptMode(keras.layers.Dense(3))
    # keras-nc 0.2.0's constructor arguments map to the modes, with a warning.
    with pytest.warns(DeprecationWarning, match="train_image_encoder=...` is deprecated|0.3.0"):
        full = CLIPClassifier(clip, prompts, train_image_encoder=True)
    assert full.mode == "full" and isinstance(full.tuning_mode, FullMode)
    with pytest.raises(TypeError, match="not both"):
        CLIPClassifier(clip, prompts, mode="full", train_image_encoder=True)


def test_named_preset_that_cannot_be_downloaded_fails_fast():
    start = time.time()
    with pytest.raises(PresetUnavailableError, match="pass a local preset directory") as info:
        load_clip("kaggle://keras-nc-offline-test/no-such-clip/keras/none")
    assert "--preset DIR" in str(info.value) and "save_to_preset" in str(info.value)
    assert time.time() - start < 30  # the offline failure is immediate, not a long retry
