"""recipes.clip: CLIPClassifier on a tiny random keras-hub CLIP, data, program.

The tiny CLIP (32 x 32 images, patch 8, width 32, 2 layers; a character-level
BPE vocabulary with `<|endoftext|>` last) is saved once as a local preset and
loaded with the recipe, as a user loads a preset directory offline.
"""

import json
import os
import time

import keras
import numpy as np
import pytest

from keras_nc.losses import CMALoss
from keras_nc.metrics import HDR, MIR
from recipes.clip import data, train
from recipes.clip.model import CLIPClassifier, PresetUnavailableError, load_clip
from tests import reference
from tests.clip_tiny import save_tiny_preset
from tests.helpers import BACKEND, to_numpy

CLASSES = ("cat", "ankle boot", "dog")


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return save_tiny_preset(str(tmp_path_factory.mktemp("tiny_clip")))


def _images(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 32, 32, 3)).astype("float32")


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _weights(model):
    return {i: to_numpy(w).copy() for i, w in enumerate(model.weights)}


def _changed(model, before):
    return {
        model.weights[i].path for i, value in before.items()
        if not np.array_equal(to_numpy(model.weights[i]), value)
    }  # fmt: skip


def test_zero_shot_logits_are_scaled_cosines_of_clip_embeddings(preset):
    import keras_hub

    templates = ["a photo of a {}.", "{} texture."]
    model = CLIPClassifier.from_preset(preset, CLASSES, mode="head", templates=templates)
    x = _images(6)
    logits = to_numpy(model(x))

    # Manual: keras-hub's own preprocessor tokenises; embeddings normalised in float64,
    # averaged over templates and renormalised; times CLIP's logit scale.
    clip = model.clip
    tokenizer = keras_hub.models.CLIPTokenizer.from_preset(preset)
    preprocessor = keras_hub.models.CLIPPreprocessor(tokenizer, sequence_length=24)
    image = _unit(to_numpy(clip.get_vision_embeddings(x)))
    texts = []
    for template in templates:
        prompts = [template.format(c) for c in CLASSES]
        ids = preprocessor({"images": None, "prompts": prompts})["token_ids"]
        texts.append(_unit(to_numpy(clip.get_text_embeddings(to_numpy(ids)))))
    text = _unit(np.mean(texts, axis=0))
    scale = np.exp(float(to_numpy(clip.clip_head.logit_scale)))
    np.testing.assert_allclose(logits, scale * image @ text.T, atol=1e-5 * scale)
    np.testing.assert_allclose(to_numpy(model.head.kernel).T, text, atol=1e-6)
    # The first template alone is keras-hub's CLIPBackbone output.
    prompts = [f"a photo of a {c}." for c in CLASSES]
    ids = to_numpy(preprocessor({"images": None, "prompts": prompts})["token_ids"])
    outputs = clip({"images": x, "token_ids": ids})
    np.testing.assert_allclose(
        to_numpy(outputs["vision_logits"]), scale * image @ texts[0].T, atol=1e-5 * scale
    )


def test_prompt_mode_starts_as_zero_shot_and_head_mode_trains_only_the_head(preset):
    x, y = _images(6), np.arange(6) % 3
    # Prompt learning initialised from "a photo of a": the context replaces those words'
    # embeddings, so it starts as the zero-shot classifier of "a photo of a {}.".
    prompt = CLIPClassifier.from_preset(preset, CLASSES, mode="prompt", context_init="a photo of a")
    tokenizer = load_clip(preset)[1]
    learner = prompt.prompt_learner
    assert learner.context_length == np.asarray(tokenizer(["a photo of a"])[0]).size == 6
    features = _unit(to_numpy(prompt.clip.get_vision_embeddings(x)))
    scale = np.exp(float(to_numpy(prompt.clip.clip_head.logit_scale)))
    zero_shot = scale * features @ prompt.zero_shot_embeddings.T
    np.testing.assert_allclose(to_numpy(prompt(x)), zero_shot, atol=1e-5 * scale)
    np.testing.assert_allclose(to_numpy(prompt.head.kernel).T, prompt.zero_shot_embeddings, 1e-5)
    assert [w.path.split("/", 1)[1] for w in prompt.trainable_weights] == ["prompt_learner/context"]

    keras.utils.set_random_seed(0)
    model = CLIPClassifier.from_preset(preset, CLASSES, mode="head")
    np.testing.assert_allclose(to_numpy(model(x)), zero_shot, atol=1e-5 * scale)
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(1.0)],
    )
    before = _weights(model)
    model.train_on_batch(x, y)
    assert {path.split("/", 1)[1] for path in _changed(model, before)} == {"head/kernel"}
    head = to_numpy(model.head_weights)  # the trained kernel's columns
    logits = to_numpy(model(x))
    np.testing.assert_allclose(logits, scale * features @ head.T, atol=1e-5 * scale)
    assert np.max(np.abs(logits - zero_shot)) > 1e-3


def _fit_full(preset, x, y, cma_weight):
    keras.utils.set_random_seed(0)
    model = CLIPClassifier.from_preset(preset, CLASSES, mode="full")
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
    x, y = _images(6), np.arange(6) % 3
    start, changed, plain, _ = _fit_full(preset, x, y, 0.0)
    _, _, aligned, history = _fit_full(preset, x, y, 5.0)
    # Full fine-tuning moves the image encoder, its projection and the head; never the text
    # encoder, its projection or the logit scale.
    assert any("vision_encoder" in p for p in changed)
    assert any("vision_projection" in p for p in changed)
    assert any(p.endswith("head/kernel") for p in changed)
    assert not [p for p in changed if "text" in p or "logit_scale" in p]
    assert np.all(np.isfinite(history["mir"])) and np.all(np.isfinite(history["hdr"]))
    # Same seed, same steps: with CMA the groups {images of c} U {text of c} are more aligned.
    assert aligned < plain - 0.01, (start, plain, aligned)
    assert aligned < start


@pytest.mark.parametrize("mode", ["prompt", "head"])
def test_config_is_complete_and_round_trips_in_safe_mode(preset, tmp_path, mode):
    """The whole model (CLIP, prompt learner or head, converter) loads in safe mode."""
    x, y = _images(6), np.arange(6) % 3
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
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is CLIPClassifier and restored.mode == mode
    assert json.dumps(restored.get_config()) == json.dumps(model.get_config())
    assert {"clip", "head", "prompt_learner", "image_converter"} <= set(model.get_config())
    assert restored.image_converter.get_config() == model.image_converter.get_config()
    raw = np.random.default_rng(1).integers(0, 256, size=(2, 40, 36, 3)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(restored.image_converter(raw)), to_numpy(model.image_converter(raw)), atol=1e-6
    )
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(model(x)), atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(restored.head_weights), to_numpy(model.head_weights), atol=1e-6
    )
    trained = [(w.name, to_numpy(w)) for w in model.trainable_weights]
    assert [name for name, _ in trained] == [w.name for w in restored.trainable_weights]
    for (name, value), loaded in zip(trained, restored.trainable_weights, strict=True):
        np.testing.assert_array_equal(to_numpy(loaded), value, err_msg=name)
    # The optimiser state came along: one more step gives the same logs on both.
    logs = model.train_on_batch(x, y, return_dict=True)
    again = restored.train_on_batch(x, y, return_dict=True)
    for key in logs:
        np.testing.assert_allclose(again[key], logs[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_few_shot_sampler_is_exact_and_reproducible():
    labels = np.repeat(np.arange(4), [5, 7, 9, 6])
    idx = data.few_shot_indices(labels, 3, seed=7)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [3, 3, 3, 3])
    assert len(np.unique(idx)) == 12 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, data.few_shot_indices(labels, 3, seed=7))
    draws = {tuple(data.few_shot_indices(labels, 3, seed=s)) for s in range(5)}
    assert len(draws) > 1
    np.testing.assert_array_equal(np.sort(data.few_shot_indices(labels, 5, 0)[:5]), np.arange(5))
    with pytest.raises(ValueError, match="`shots` must be an integer >= 1"):
        data.few_shot_indices(labels, 0)
    with pytest.raises(ValueError, match="`shots` is 6 but class 0 has only 5 samples"):
        data.few_shot_indices(labels, 6)


def _write_folder(root, per_class, split=None, size=(32, 32)):
    # At the model's size the converter does not resize: the pipelines are then exact on
    # every backend (bicubic resizing differs between TensorFlow and PyTorch).
    rng = np.random.default_rng(0)
    n = per_class * len(CLASSES)
    images = rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8)
    labels = np.arange(n) % len(CLASSES)
    return data.write_image_folder(str(root), images, labels, CLASSES, split=split), images


def test_image_folder_and_pipelines(tmp_path, preset):
    root, images = _write_folder(tmp_path / "folder", per_class=4)
    folder = data.image_folder(root)
    assert folder.class_names == ("ankle boot", "cat", "dog")  # sorted folder names
    np.testing.assert_array_equal(np.bincount(folder.train_labels), [4, 4, 4])
    assert folder.test_paths is None
    train_idx, test_idx = data.split_few_shot(folder, 3, seed=0)
    assert len(train_idx) == 9 and len(test_idx) == 3 and not set(train_idx) & set(test_idx)

    _, _, converter = load_clip(preset)
    evaluation = data.evaluation_dataset(folder.train_paths, folder.train_labels, converter, 5)
    x, y = next(iter(evaluation))
    np.testing.assert_array_equal(np.asarray(y), folder.train_labels[:5])
    # Files round-trip (PNG); the converter normalises with CLIP's mean and std.
    assert folder.train_paths[0].endswith(os.path.join("ankle_boot", "00000.png"))
    original = images[CLASSES.index("ankle boot")].astype(np.float64)
    mean = np.array([0.48145466, 0.4578275, 0.40821073])
    std = np.array([0.26862954, 0.26130258, 0.27577711])
    np.testing.assert_allclose(np.asarray(x)[0], (original / 255.0 - mean) / std, atol=1e-4)
    augmented = data.training_dataset(folder.train_paths, folder.train_labels, converter, 12)
    x, y = next(iter(augmented))
    assert np.asarray(x).shape == (12, 32, 32, 3) and np.all(np.isfinite(np.asarray(x)))
    np.testing.assert_array_equal(np.bincount(np.asarray(y)), [4, 4, 4])  # a permutation

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no class folders"):
        data.image_folder(str(tmp_path / "empty"))
    (tmp_path / "empty" / "a").mkdir()
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(ValueError, match=r"class folder .* has no images"):
        data.image_folder(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="`shots` is 5 but class 0 has only 4"):
        data.split_few_shot(folder, 5)
    with pytest.raises(ValueError, match="every class needs more than `shots`"):
        data.split_few_shot(folder, 4)


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


def test_named_preset_that_cannot_be_downloaded_fails_fast():
    start = time.time()
    with pytest.raises(PresetUnavailableError, match="pass a local preset directory") as info:
        load_clip("kaggle://keras-nc-offline-test/no-such-clip/keras/none")
    assert "--preset DIR" in str(info.value) and "save_to_preset" in str(info.value)
    assert time.time() - start < 30


# The program is backend-agnostic Python over tf.data; the model, fit, CMA and
# the modes it drives are tested on JAX above. JAX's suite is the slowest.
@pytest.mark.skipif(BACKEND == "jax", reason="JAX suite time: the pieces are tested on JAX above")
def test_program_end_to_end(tmp_path, preset):
    root, _ = _write_folder(tmp_path / "folder", per_class=6)
    out = str(tmp_path / "run")
    argv = [
        "--preset", preset, "--data", root, "--shots", "4", "--mode", "prompt",
        "--context-init", "a photo of a", "--cma-weight", "1", "--epochs", "2",
        "--batch-size", "12", "--eval-batch-size", "6", "--lr", "0.01", "--verbose", "0",
        "--output", out,
    ]  # fmt: skip
    summary = train.main(argv)
    for name in ("results.csv", "results.json", "history.csv", "model.keras"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["settings"]["epochs"] == 2 and results["class_names"] == sorted(CLASSES)
    names = [row["measure"] for row in results["table"]]
    assert names[0] == "zero-shot accuracy (templates)" and "test: MIR, class pairing" in names

    # Prompt mode trained the context only: CLIP's weights are the preset's, bit for bit.
    model = keras.saving.load_model(os.path.join(out, "model.keras"), safe_mode=True)
    # Coupled L2 on the context only: weight_decay / 2 * ||context||^2 (SGD's 5e-4).
    context = to_numpy(model.prompt_learner.context).astype(np.float64)
    assert len(model.losses) == 1
    np.testing.assert_allclose(to_numpy(model.losses[0]), 2.5e-4 * np.sum(context**2), rtol=1e-5)
    original = load_clip(preset)[0]
    for loaded, saved in zip(model.clip.weights, original.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(loaded), to_numpy(saved), err_msg=saved.path)
    table = to_numpy(original.text_encoder.embedding.token_embedding.embeddings)
    initial = table[np.asarray(load_clip(preset)[1](["a photo of a"])[0]).reshape(-1)]
    assert context.shape == initial.shape
    assert np.max(np.abs(context - initial)) > 1e-6

    # The reported numbers are those of the saved model on the test images (6 - 4 per class).
    folder = data.image_folder(root)
    _, test_idx = data.split_few_shot(folder, 4, seed=1)
    converter = load_clip(preset)[2]
    x = np.stack(
        [to_numpy(converter(np.asarray(keras.utils.load_img(p), "float32")))
         for p in folder.train_paths[test_idx]]
    )  # fmt: skip
    y = folder.train_labels[test_idx]
    features = to_numpy(model.extract_features(x))
    head = to_numpy(model.head_weights)
    after = summary["after"]["test"]
    assert after["within_class_entropy"] == pytest.approx(reference.cma(features, head, y), 1e-4)
    assert after["accuracy"] == pytest.approx(np.mean(np.argmax(features @ head.T, 1) == y))
    k_means, k_head = reference.class_pairing(features, y, head, 3)
    assert after["mir"] == pytest.approx(reference.mir(k_means, k_head), abs=1e-4)


def test_program_argument_errors(tmp_path, preset):
    root, _ = _write_folder(tmp_path / "folder", per_class=2)
    with pytest.raises(SystemExit, match="--shots must be >= 1"):
        train.main(["--preset", preset, "--data", root, "--shots", "0"])
    with pytest.raises(SystemExit, match="`shots` is 3 but class 0 has only 2"):
        train.main(["--preset", preset, "--data", root, "--shots", "3"])
    with pytest.raises(SystemExit, match="must contain one"):
        train.main(["--preset", preset, "--data", root, "--template", "a photo"])
