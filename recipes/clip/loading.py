"""Loading a keras-hub CLIP: presets, tokenizer, image converter and tokenisation helpers.

The first of `recipes.clip`'s modules, as keras-hub splits a task: this one
turns a preset (a name or a local directory) into a `CLIPBackbone`, a
`CLIPTokenizer` and a `CLIPImageConverter`, and class prompts into token ids
and CLIP text embeddings (through the public `CLIPBackbone.get_text_embeddings`).
The prompt learner is in `recipes.clip.prompt_learner`, the modes in
`recipes.clip.modes` and the classifier in `recipes.clip.classifier`
(docs/clip.md).

Example:

```python
from recipes.clip.loading import load_clip, pad_token_ids, text_embeddings, tokenize

clip, tokenizer, converter = load_clip("/data/clip_b16")  # a save_to_preset directory
ids = pad_token_ids(tokenize(tokenizer, ["a photo of a cat.", "a photo of a dog."]))
embeddings = text_embeddings(clip, ids)  # (2, d), unit rows
```
"""

import os

import numpy as np
from keras import ops

DEFAULT_TEMPLATES = ("a photo of a {}.",)
DEFAULT_CONTEXT_INIT = "a photo of a"
# CLIP's channel statistics (Radford et al., 2021), those of keras-hub's CLIP presets.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PresetUnavailableError(RuntimeError):
    """A keras-hub preset cannot be loaded here (no internet, no such preset)."""


def _is_local(preset):
    if "://" in preset:  # kaggle://, hf://, modelscope:// handles
        return False
    return os.path.isdir(preset) or preset.startswith((".", "/", "~")) or os.sep in preset


def _unavailable(preset, error):
    reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    return PresetUnavailableError(
        f"The keras-hub preset {preset!r} could not be loaded ({reason}). Named presets "
        "are downloaded from Kaggle and need internet. Offline, pass a local preset "
        "directory instead: on a machine with internet run `backbone = keras_hub.models."
        f"CLIPBackbone.from_preset({preset!r}); backbone.save_to_preset(DIR)` and the same "
        "for `keras_hub.models.CLIPTokenizer` and `keras_hub.layers.CLIPImageConverter`, "
        "copy DIR here and use `--preset DIR` (docs/clip.md)."
    )


def load_clip(preset):
    """Loads a keras-hub CLIP backbone, tokenizer and image converter.

    Args:
        preset: a keras-hub preset name (`"clip_vit_base_patch16"`, ...),
            a `kaggle://` or `hf://` handle, or a local preset directory
            written by `save_to_preset` (backbone and tokenizer; an image
            converter is optional).

    Returns:
        `(backbone, tokenizer, image_converter)`: a
        `keras_hub.models.CLIPBackbone`, a `keras_hub.models.CLIPTokenizer`
        and a `keras_hub.layers.CLIPImageConverter`. A preset without an
        image converter gets CLIP's (`default_image_converter`).

    Raises:
        PresetUnavailableError: a named preset cannot be downloaded (no
            internet): the message names the local-directory alternative.
        ValueError: a local directory that does not exist or holds no CLIP.

    Example:

    ```python
    clip, tokenizer, converter = load_clip("clip_vit_base_patch16")  # needs internet
    ```
    """
    import keras_hub

    if not isinstance(preset, str) or not preset:
        raise ValueError(f"`preset` must be a preset name or directory; received {preset!r}.")
    local = _is_local(preset)
    if local:
        preset = os.path.expanduser(preset)
        if not os.path.isfile(os.path.join(preset, "config.json")):
            raise ValueError(
                f"`preset` {preset!r} is not a keras-hub preset directory (expected the "
                "config.json written by `backbone.save_to_preset(directory)`)."
            )
    try:
        backbone = keras_hub.models.CLIPBackbone.from_preset(preset)
        tokenizer = keras_hub.models.CLIPTokenizer.from_preset(preset)
    except Exception as error:  # network, Kaggle, missing files: all say the same here
        if local:
            raise ValueError(
                f"`preset` {preset!r} could not be loaded as a CLIP preset: "
                f"{type(error).__name__}: {error}"
            ) from error
        raise _unavailable(preset, error) from None
    try:
        converter = keras_hub.layers.CLIPImageConverter.from_preset(preset)
    except Exception:
        converter = default_image_converter(backbone.vision_encoder.image_shape[0])
    return backbone, tokenizer, converter


def default_image_converter(image_size):
    """CLIP's image converter: resize (centre crop), CLIP mean and std, bicubic.

    Example:

    ```python
    converter = default_image_converter(224)  # CLIP ViT-B/16's 224 x 224 images
    images = converter(raw_images)  # (n, 224, 224, 3), CLIP-normalised
    ```
    """
    import keras_hub

    return keras_hub.layers.CLIPImageConverter(
        image_size=(image_size, image_size),
        scale=[1.0 / (255.0 * s) for s in CLIP_STD],
        offset=[-m / s for m, s in zip(CLIP_MEAN, CLIP_STD, strict=True)],
        crop_to_aspect_ratio=True,
        interpolation="bicubic",
    )


def tokenize(tokenizer, texts, add_special_tokens=True, max_length=None):
    """Token ids of each text, as lists of ints (lower-cased, like `CLIPPreprocessor`).

    With `add_special_tokens`, each list is `[SOS] ... [EOS]`, truncated to
    `max_length` with the end token kept.

    Example:

    ```python
    tokenize(tokenizer, ["a photo of a cat."])  # [[49406, 320, 1125, 539, 320, 2368, 269, 49407]]
    ```
    """
    texts = [str(text).lower() for text in texts]
    ids = tokenizer(texts)
    if hasattr(ids, "to_list"):
        ids = ids.to_list()
    ids = [[int(i) for i in np.asarray(row).reshape(-1)] for row in ids]
    if add_special_tokens:
        ids = [[tokenizer.start_token_id, *row, tokenizer.end_token_id] for row in ids]
        if max_length is not None:
            ids = [
                row if len(row) <= max_length else row[: max_length - 1] + row[-1:] for row in ids
            ]
    return ids


def pad_token_ids(rows, pad_id=0):
    """A dense `(n, L)` int32 array of the ragged `rows`, `L` the longest row.

    >>> pad_token_ids([[5, 6, 7], [8]]).tolist()
    [[5, 6, 7], [8, 0, 0]]
    """
    length = max(len(row) for row in rows)
    out = np.full((len(rows), length), pad_id, dtype="int32")
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def text_embeddings(clip, token_ids, batch_size=256):
    """CLIP's L2-normalised text embeddings `(n, d)` (NumPy) of padded token ids `(n, L)`.

    Through keras-hub's public `CLIPBackbone.get_text_embeddings`, in float64
    after it (the normalisation and the templates' average).
    """
    token_ids = np.asarray(token_ids, dtype="int32")
    out = []
    for start in range(0, len(token_ids), batch_size):
        chunk = token_ids[start : start + batch_size]
        out.append(ops.convert_to_numpy(clip.get_text_embeddings(ops.convert_to_tensor(chunk))))
    return unit_rows_numpy(np.concatenate(out).astype("float64"))


def unit_rows_numpy(x):
    """Rows of `x` divided by their norms (NumPy; a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def int_lists(value, name, depth):
    """Validates nested lists of ints (`depth` 2: rows; 3: templates of rows)."""
    try:
        if depth == 2:
            return [[int(i) for i in row] for row in value]
        return [[[int(i) for i in row] for row in group] for group in value]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be nested lists of integer token ids.") from None
