"""The prompt mode's one exception: its hand-run text encoder equals keras-hub's public one.

`PromptLearner.text_embeddings` runs keras-hub's `CLIPTextEncoder` layer by
layer (token and position embeddings, `encoder_layers`, `layer_norm`): CoOp
needs vectors in place of tokens. With the context set to the template's own
token embeddings it must give `CLIPBackbone.get_text_embeddings` of the
templated prompts, so that a change inside keras-hub's text encoder fails
here rather than silently changing the prompt mode (docs/clip.md).
"""

import numpy as np

from recipes.clip.loading import load_clip
from recipes.clip.modes import PromptMode
from tests.helpers import to_numpy
from tests.recipes.clip.tiny_clip import (
    CLASSES,
    EMBEDDING_TOLERANCE,
    MAX_SEQUENCE_LENGTH,
    MOVED,
    WIDTH,
    unit,
)


def test_prompt_path_reproduces_get_text_embeddings_of_the_template(preset):
    import keras_hub

    clip, tokenizer, _ = load_clip(preset)
    mode = PromptMode.from_tokenizer(
        tokenizer, CLASSES, MAX_SEQUENCE_LENGTH, context_init="a photo of a"
    )
    learner = mode.prompt_learner
    learner.build((None, WIDTH))
    learner.initialize_context(clip.text_encoder.embedding.token_embedding)
    hand_run = to_numpy(learner.text_embeddings(clip.text_encoder, clip.text_projection))

    # keras-hub's own preprocessing (padded to the full sequence length) and public path.
    preprocessor = keras_hub.models.CLIPPreprocessor(tokenizer, sequence_length=MAX_SEQUENCE_LENGTH)
    prompts = [f"a photo of a {c}." for c in CLASSES]
    ids = to_numpy(preprocessor({"images": None, "prompts": prompts})["token_ids"])
    public = unit(to_numpy(clip.get_text_embeddings(ids)))
    # The learner's prompts are the template's tokens with the context in place of its words.
    context_ids = np.asarray(learner.context_init_ids)
    rows = learner.prompt_ids.copy()
    rows[:, 1 : 1 + learner.context_length] = context_ids
    for row, eos, full in zip(rows, learner.eos_index, ids, strict=True):
        np.testing.assert_array_equal(row[: eos + 1], full[: eos + 1])
    np.testing.assert_allclose(hand_run, public, atol=EMBEDDING_TOLERANCE)

    # The check can fail: another context moves the embeddings by far more than round-off
    # (MOVED times the bound).
    learner.context.assign(np.zeros((learner.context_length, WIDTH), "float32"))
    moved = to_numpy(learner.text_embeddings(clip.text_encoder, clip.text_projection))
    assert np.max(np.abs(moved - public)) > MOVED * EMBEDDING_TOLERANCE
