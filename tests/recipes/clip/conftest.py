"""The tiny random CLIP of `tiny_clip.py`, saved once per session as a local preset.

Loaded with the recipe, as a user loads a preset directory offline.
"""

import pytest

from tests.recipes.clip.tiny_clip import save_tiny_preset


@pytest.fixture(scope="session")
def preset(tmp_path_factory):
    return save_tiny_preset(str(tmp_path_factory.mktemp("tiny_clip")))
