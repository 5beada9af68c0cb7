"""`PromptLearner`: CoOp's learnable context before each class name (Zhou et al., 2022).

The one place in `recipes.clip` that runs CLIP's text encoder by hand instead
of through keras-hub's public `CLIPBackbone.get_text_embeddings`: CoOp puts
learned vectors where the words of the prompt were, which needs the token
embeddings, the position embeddings, the transformer blocks and the final
layer norm separately (`text_encoder.embedding.token_embedding`,
`.position_embedding`, `text_encoder.encoder_layers`, `text_encoder.layer_norm`).
`tests/recipes/clip/test_prompt_path.py` guards it: with the context set to a
template's own token embeddings the hand-run path gives
`get_text_embeddings` of the templated prompts to float32 precision, so that a
change of keras-hub's text encoder fails there (docs/clip.md).
"""

import keras
import numpy as np
from keras import ops

from recipes.clip.loading import int_lists, pad_token_ids
from recipes.registration import serializable


def unit_rows(x):
    """Rows of the tensor `x` divided by their norms (a zero row stays zero)."""
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


@serializable("clip")
class PromptLearner(keras.layers.Layer):
    """CoOp's learnable prompts: `[SOS] ctx_1 .. ctx_M name . [EOS]` for each class.

    Holds `M` context vectors in CLIP's token-embedding space, shared by the
    classes, and the token ids of the `C` prompts with `M` placeholders. A
    `CLIPClassifier` in prompt mode (`recipes.clip.modes.PromptMode`) takes
    its head rows from `text_embeddings`: the prompts (their token embeddings,
    the context in place of the placeholders) through CLIP's frozen text
    encoder and projection, so that gradients reach the context only.

    `text_embeddings` runs keras-hub's text encoder layer by layer (token and
    position embeddings, `encoder_layers`, `layer_norm`), the one use of
    keras-hub internals in the recipe: CoOp needs the embeddings in place of
    tokens, which `CLIPBackbone.get_text_embeddings` (token ids in) cannot
    take. A test checks that this path reproduces `get_text_embeddings`
    (docs/clip.md, "The prompt mode's exception").

    Build it with `CLIPClassifier.from_preset(..., mode="prompt")`, which
    tokenises the class names; the classifier builds it with the width of
    CLIP's token embeddings.

    Args:
        class_token_ids: the `C` token-id lists of the class names followed
            by `"."` (no start or end token).
        start_token_id: the tokenizer's start-of-text id.
        end_token_id: the tokenizer's end-of-text id.
        max_sequence_length: the text encoder's sequence length; a class name
            longer than the room left by the context is truncated.
        context_length: number `M` of context vectors when `context_init_ids`
            is `None`.
        context_init_ids: optional token ids (no start or end token) whose
            embeddings initialise the context (CoOp's "a photo of a"); their
            number is then the context length. `None`: random normal
            (standard deviation 0.02), seeded by `seed`.
        seed: seed of the random context.
        context_regularizer: optional regularizer of the context, e.g.
            `keras.regularizers.L2(weight_decay / 2)`: the coupled weight
            decay of PyTorch's `SGD(weight_decay=...)` (CoOp: 5e-4).
        **kwargs: passed to `keras.layers.Layer` (e.g. `name`).

    Example:

    ```python
    learner = PromptLearner([[9, 4], [7]], start_token_id=1, end_token_id=2,
                            max_sequence_length=77, context_length=4)
    learner.num_classes, learner.context_length  # (2, 4)
    ```
    """

    def __init__(
        self,
        class_token_ids,
        start_token_id,
        end_token_id,
        max_sequence_length,
        context_length=16,
        context_init_ids=None,
        seed=None,
        context_regularizer=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "prompt_learner")
        super().__init__(**kwargs)
        self.class_token_ids = int_lists(class_token_ids, "class_token_ids", 2)
        if not self.class_token_ids:
            raise ValueError("`class_token_ids` must hold one list of token ids per class.")
        if context_init_ids is not None:
            context_init_ids = [int(i) for i in context_init_ids]
            context_length = len(context_init_ids)
        if isinstance(context_length, bool) or not isinstance(context_length, int):
            raise ValueError(f"`context_length` must be an integer; got {context_length!r}.")
        if context_length < 1:
            raise ValueError(f"`context_length` must be >= 1; received {context_length}.")
        self.start_token_id, self.end_token_id = int(start_token_id), int(end_token_id)
        self.max_sequence_length = int(max_sequence_length)
        self.context_length = int(context_length)
        self.context_init_ids = context_init_ids
        self.seed = seed
        self.context_regularizer = keras.regularizers.get(context_regularizer)
        self.prompt_ids, self.eos_index = self._prompt_template()

    @property
    def num_classes(self):
        return len(self.class_token_ids)

    def _prompt_template(self):
        """Token ids `[SOS] x*M name . [EOS] pad...` `(C, L)` and the EOS positions `(C,)`.

        The `M` placeholders (id 0) are replaced by the context vectors; CLIP's
        text pooler would find the end token by argmax (it has the largest id),
        here its positions are known.
        """
        room = self.max_sequence_length - 2 - self.context_length
        if room < 1:
            raise ValueError(
                f"`context_length` {self.context_length} leaves no room for the class name in "
                f"the text encoder's {self.max_sequence_length} tokens."
            )
        rows = [
            [self.start_token_id, *[0] * self.context_length, *ids[:room], self.end_token_id]
            for ids in self.class_token_ids
        ]
        return pad_token_ids(rows), np.asarray([len(row) - 1 for row in rows], dtype="int32")

    def build(self, input_shape):
        """Creates the context `(M, e)`; `input_shape[-1]` is the token-embedding width `e`."""
        self.context = self.add_weight(
            shape=(self.context_length, int(input_shape[-1])),
            initializer=keras.initializers.RandomNormal(stddev=0.02, seed=self.seed),
            regularizer=self.context_regularizer,
            name="context",
        )

    def initialize_context(self, token_embedding):
        """Sets the context to the token embeddings of `context_init_ids` (if given)."""
        if self.context_init_ids is not None:
            table = token_embedding.embeddings
            self.context.assign(ops.take(table, np.asarray(self.context_init_ids), axis=0))

    def text_embeddings(self, text_encoder, text_projection):
        """Normalised text embeddings `(C, d)` of the prompts (a tensor).

        Runs keras-hub's `CLIPTextEncoder` by hand with the context in place of
        the placeholders' token embeddings (see the class docstring).

        Args:
            text_encoder: CLIP's `CLIPTextEncoder` (`clip.text_encoder`).
            text_projection: CLIP's text projection (`clip.text_projection`).
        """
        ids = ops.convert_to_tensor(self.prompt_ids)
        tokens = text_encoder.embedding.token_embedding(ids)  # (C, L, e)
        context = ops.broadcast_to(
            ops.expand_dims(ops.cast(self.context, tokens.dtype), 0),
            (self.num_classes, self.context_length, tokens.shape[-1]),
        )
        x = ops.concatenate([tokens[:, :1], context, tokens[:, 1 + self.context_length :]], axis=1)
        x = x + text_encoder.embedding.position_embedding(x)
        for block in text_encoder.encoder_layers:
            x = block(x)
        x = text_encoder.layer_norm(x)
        eos = ops.convert_to_tensor(self.eos_index.reshape(-1, 1, 1))
        pooled = ops.squeeze(ops.take_along_axis(x, eos, axis=1), axis=1)
        return unit_rows(text_projection(pooled))

    def get_config(self):
        return {
            **super().get_config(),
            "class_token_ids": self.class_token_ids,
            "start_token_id": self.start_token_id,
            "end_token_id": self.end_token_id,
            "max_sequence_length": self.max_sequence_length,
            "context_length": self.context_length,
            "context_init_ids": self.context_init_ids,
            "seed": self.seed,
            "context_regularizer": keras.regularizers.serialize(self.context_regularizer),
        }
