"""`python -m recipes.clip` (`recipes.clip.train`) end to end on the tiny CLIP."""

import json
import math
import os

import keras
import numpy as np
import pytest

from recipes.clip import data, evaluation, train
from recipes.clip.loading import load_clip
from tests import reference
from tests.helpers import BACKEND, to_numpy
from tests.recipes.clip.support import write_folder
from tests.recipes.clip.tiny_clip import CLASSES
from tests.tolerances import EPS32, SAFETY, entropy_tolerance, ratio_tolerance


def _strict(name):
    raise AssertionError(f"results.json holds the non-standard JSON constant {name}")


def _cma_tolerance(features, head, labels):
    """Float32 bound of CMA: each class group's entropy bound over its log size (the worst)."""
    bounds = []
    for c in np.unique(labels):
        group = np.vstack([features[labels == c], head[c : c + 1]])
        bounds.append(entropy_tolerance(reference.gram(group)) / np.log(len(group)))
    return max(bounds)


def _mir_tolerance(k1, k2):
    grams = (k1, k2, k1 * k2)
    h = [reference.entropy(k) for k in grams]
    e = [entropy_tolerance(k) for k in grams]
    return ratio_tolerance(*h, *e, "mir")


# The program is backend-agnostic Python over tf.data; the model, fit, CMA and
# the modes it drives are tested on JAX in test_classifier.py. JAX's suite is the slowest.
@pytest.mark.skipif(BACKEND == "jax", reason="JAX suite time: the pieces are tested on JAX")
def test_program_end_to_end_with_a_nan_measure_written_as_null(tmp_path, preset, monkeypatch):
    # HDR made NaN (as a diverged run's would be): results.json must stay strict JSON.
    pairing = evaluation.class_pairing_ratios
    monkeypatch.setattr(
        evaluation, "class_pairing_ratios", lambda *args: (pairing(*args)[0], math.nan)
    )
    root, _ = write_folder(tmp_path / "folder", per_class=6)
    out = str(tmp_path / "run")
    argv = [
        "--preset", preset, "--data", root, "--shots", "4", "--mode", "prompt",
        "--context-init", "a photo of a", "--cma-weight", "1", "--epochs", "1",
        "--batch-size", "12", "--eval-batch-size", "6", "--lr", "0.01", "--verbose", "0",
        "--output", out,
    ]  # fmt: skip
    summary = train.main(argv)
    for name in ("results.csv", "results.json", "history.csv", "model.keras"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    with open(os.path.join(out, "results.json")) as f:
        results = json.loads(f.read(), parse_constant=_strict)
    assert math.isnan(summary["after"]["test"]["hdr"])
    assert results["after"]["test"]["hdr"] is None and results["before"]["train"]["hdr"] is None
    assert results["settings"]["epochs"] == 1 and results["class_names"] == sorted(CLASSES)
    rows = {row["measure"]: row for row in results["table"]}
    assert results["table"][0]["measure"] == "zero-shot accuracy (templates)"
    assert rows["test: HDR, class pairing"] == {
        "measure": "test: HDR, class pairing", "before": None, "after": None
    }  # fmt: skip

    # Prompt mode trained the context only: CLIP's weights are the preset's, bit for bit.
    model = keras.saving.load_model(os.path.join(out, "model.keras"), safe_mode=True)
    # Coupled L2 on the context only: weight_decay / 2 * ||context||^2 (SGD's 5e-4), a
    # float32 sum of context.size squares (worst-case relative round-off size * eps).
    context = to_numpy(model.prompt_learner.context).astype(np.float64)
    assert len(model.losses) == 1
    np.testing.assert_allclose(
        to_numpy(model.losses[0]), 2.5e-4 * np.sum(context**2), rtol=SAFETY * context.size * EPS32
    )
    original, tokenizer, converter = load_clip(preset)
    for loaded, saved in zip(model.clip.weights, original.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(loaded), to_numpy(saved), err_msg=saved.path)
    table = to_numpy(original.text_encoder.embedding.token_embedding.embeddings)
    initial = table[np.asarray(tokenizer(["a photo of a"])[0]).reshape(-1)]
    assert context.shape == initial.shape and not np.array_equal(context, initial)

    # The reported numbers are those of the saved model on the test images (6 - 4 per class).
    folder = data.image_folder(root)
    _, test_idx = data.split_few_shot(folder, 4, seed=1)
    x = np.stack(
        [to_numpy(converter(np.asarray(keras.utils.load_img(p), "float32")))
         for p in folder.train_paths[test_idx]]
    )  # fmt: skip
    y = folder.train_labels[test_idx]
    features = to_numpy(model.extract_features(x)).astype(np.float64)
    head = to_numpy(model.head_weights).astype(np.float64)
    after = summary["after"]["test"]
    cma, bound = reference.cma(features, head, y), _cma_tolerance(features, head, y)
    assert after["within_class_entropy"] == pytest.approx(cma, abs=bound)
    assert after["accuracy"] == pytest.approx(np.mean(np.argmax(features @ head.T, 1) == y))
    k_means, k_head = reference.class_pairing(features, y, head, 3)
    mir = reference.mir(k_means, k_head)
    assert after["mir"] == pytest.approx(mir, abs=_mir_tolerance(k_means, k_head))


def test_program_argument_errors(tmp_path, preset):
    root, _ = write_folder(tmp_path / "folder", per_class=2)
    with pytest.raises(SystemExit, match="--shots must be >= 1"):
        train.main(["--preset", preset, "--data", root, "--shots", "0"])
    with pytest.raises(SystemExit, match="`shots` is 3 but class 0 has only 2"):
        train.main(["--preset", preset, "--data", root, "--shots", "3"])
    with pytest.raises(SystemExit, match="must contain one"):
        train.main(["--preset", preset, "--data", root, "--template", "a photo"])
    help_text = train.build_parser().format_help()
    assert "(default: 16)" in help_text and "(default: prompt)" in help_text  # HelpFormatter
