"""A tiny random CLIP (keras-hub) and a tiny BPE vocabulary, saved as a local preset.

Used by the tests in `tests/recipes/clip/` and handy for trying `python -m recipes.clip`
offline: `python -m tests.recipes.clip.tiny_clip DIR` writes the preset to `DIR`.
"""

import math
import string
import sys

from tests.tolerances import EPS32, SAFETY

IMAGE_SIZE = 32
MAX_SEQUENCE_LENGTH = 24
WIDTH = 32  # both towers' transformer width (and token-embedding width)
NUM_LAYERS = 2  # transformer blocks per tower

# Float32 error of a unit CLIP embedding of the tiny CLIP: each stage of a tower (the
# embeddings, NUM_LAYERS transformer blocks, the final layer norm and the projection)
# is made of dot products of length WIDTH, each adding a relative round-off of about
# sqrt(WIDTH) * eps32 (Wilkinson's random-walk rule, tests/tolerances.py); the stages'
# errors add up, times SAFETY for the second-order terms. |embedding| = 1.
STAGES = NUM_LAYERS + 3
EMBEDDING_TOLERANCE = SAFETY * STAGES * math.sqrt(WIDTH) * EPS32

# A change the tests make on purpose (a training step, another context) moves logits and
# embeddings by O(0.1) at least: more than MOVED times the round-off bounds above.
MOVED = 100

CLASSES = ("cat", "ankle boot", "dog")


def images(n, seed=0):
    """`n` random 32 x 32 images (already "converted": standard normal values)."""
    import numpy as np

    return np.random.default_rng(seed).normal(size=(n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")


def unit(x):
    """Rows of `x` in float64, divided by their norms."""
    import numpy as np

    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def logit_tolerance(scale):
    """Float32 error of CLIP logits `scale * <z, t>`: both unit embeddings' errors, scaled."""
    return 2 * EMBEDDING_TOLERANCE * float(scale)


def tiny_vocabulary():
    """A byte-level BPE vocabulary of single characters (with and without `</w>`).

    A few merges are added to exercise them; `<|endoftext|>` gets the largest
    id, as CLIP's text pooler finds the end of text by argmax over token ids.
    """
    symbols = list(string.ascii_lowercase + string.digits + ".,'-")
    tokens = ["<|pad|>"] + symbols + [s + "</w>" for s in symbols]
    merges = ["p h", "o f</w>", "t o</w>"]
    tokens += ["ph", "of</w>", "to</w>"]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocabulary = {token: i for i, token in enumerate(tokens)}
    return vocabulary, merges


def build_tiny_clip(seed=0):
    """A random `CLIPBackbone` (32 x 32 images, patch 8, width 32, 2 layers) and tokenizer."""
    import keras
    import keras_hub

    from recipes.clip.loading import default_image_converter

    keras.utils.set_random_seed(seed)
    vocabulary, merges = tiny_vocabulary()
    tokenizer = keras_hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=merges)
    vision = keras_hub.models.CLIPVisionEncoder(
        patch_size=8,
        hidden_dim=32,
        num_layers=2,
        num_heads=2,
        intermediate_dim=64,
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
    )
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=len(vocabulary),
        embedding_dim=32,
        hidden_dim=32,
        num_layers=2,
        num_heads=2,
        intermediate_dim=64,
        max_sequence_length=MAX_SEQUENCE_LENGTH,
    )
    backbone = keras_hub.models.CLIPBackbone(vision, text, projection_dim=16)
    converter = default_image_converter(IMAGE_SIZE)  # CLIP's statistics, bicubic
    return backbone, tokenizer, converter


def save_tiny_preset(directory, seed=0):
    """Writes the tiny CLIP as a keras-hub preset directory; returns the directory."""
    backbone, tokenizer, converter = build_tiny_clip(seed)
    backbone.save_to_preset(directory)
    tokenizer.save_to_preset(directory)
    converter.save_to_preset(directory)
    return directory


if __name__ == "__main__":
    print(save_tiny_preset(sys.argv[1]))
