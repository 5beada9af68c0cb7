"""`recipes.clip.data`: the few-shot sampler, image folders and the tf.data pipelines."""

import os

import numpy as np
import pytest

from recipes.clip import data
from recipes.clip.loading import CLIP_MEAN, CLIP_STD, load_clip
from tests.recipes.clip.support import write_folder
from tests.recipes.clip.tiny_clip import CLASSES
from tests.tolerances import EPS32, SAFETY

# A PNG round trip is exact; the converter's float32 `x * scale + offset` rounds 4 times
# (the scale, the offset, the product, the sum), each by at most eps of values below 4
# (255 * scale = 1 / 0.2613 ~ 3.8).
PIXEL_TOLERANCE = SAFETY * 4 * 4.0 * EPS32


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


def test_image_folder_and_pipelines(tmp_path, preset):
    root, images = write_folder(tmp_path / "folder", per_class=4)
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
    expected = (original / 255.0 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(np.asarray(x)[0], expected, atol=PIXEL_TOLERANCE)
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
