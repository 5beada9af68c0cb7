"""A tiny random CLIP (keras-hub) and a tiny BPE vocabulary, saved as a local preset.

Used by `tests/test_recipes_clip.py` and handy for trying `python -m recipes.clip`
offline: `python tests/clip_tiny.py DIR` writes the preset to `DIR`.
"""

import string
import sys

IMAGE_SIZE = 32
MAX_SEQUENCE_LENGTH = 24


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

    from recipes.clip.model import default_image_converter

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
