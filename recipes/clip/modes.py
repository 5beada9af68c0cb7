"""What a `CLIPClassifier` fine-tunes: `PromptMode`, `HeadMode` and `FullMode`.

A mode is a small object the classifier is given. It knows which weights
train (`set_trainable`), where the head rows come from (`head_weights`), what
it adds to the model (`prompt_learner`, built in `build`, initialised in
`initialize`) and its config. `CLIPClassifier(..., mode="head")` and
`from_preset(..., mode="prompt")` take the names; `model.mode` reports the
name, `model.tuning_mode` is the object (docs/clip.md).

| mode | head rows | trained |
|---|---|---|
| `PromptMode` | a `PromptLearner`'s prompts through the frozen text encoder | the context |
| `HeadMode` | `model.head`'s kernel (starts as the zero-shot text embeddings) | the head |
| `FullMode` | as `HeadMode` | the head, the image encoder and its projection |

Example:

```python
from recipes.clip.classifier import CLIPClassifier
from recipes.clip.modes import FullMode

model = CLIPClassifier(clip, prompt_token_ids, mode=FullMode())  # or mode="full"
model.mode  # "full"
```
"""

import warnings

import keras
from keras import ops

from recipes.clip.loading import DEFAULT_CONTEXT_INIT, tokenize
from recipes.clip.prompt_learner import PromptLearner
from recipes.registration import serializable

__all__ = [
    "DEFAULT_CONTEXT_INIT",
    "CLIPMode",
    "FullMode",
    "HeadMode",
    "PromptMode",
    "from_arguments",
    "get",
    "instance",
]


class CLIPMode:
    """The base of the modes: everything frozen but the head; subclasses say more."""

    name = None
    trains_image_encoder = False
    prompt_learner = None

    @classmethod
    def from_tokenizer(cls, tokenizer, class_names, max_length, regularizer=None, **options):
        """The mode for `class_names` (`from_backbone` calls it; `options` are prompt mode's)."""
        return cls()

    def default_head(self, num_classes, regularizer=None):
        """The bias-free `Dense` head the classifier gets when none is given."""
        return keras.layers.Dense(
            num_classes, use_bias=False, kernel_regularizer=regularizer, name="head"
        )

    def check(self, num_classes):
        """Raises `ValueError` if the mode does not fit `num_classes` classes."""

    def build(self, model):
        """Builds the mode's own layers once the model holds `clip`."""

    def set_trainable(self, model):
        """Freezes CLIP (and its logit scale); the image tower trains in full mode only."""
        clip = model.clip
        clip.trainable = False
        clip.vision_encoder.trainable = self.trains_image_encoder
        clip.vision_projection.trainable = self.trains_image_encoder
        model.head.trainable = True

    def initialize(self, model):
        """Called once the head holds the zero-shot text embeddings (a new model only)."""

    def head_weights(self, model):
        """The head rows `(C, d)` (a tensor): the head kernel's transpose."""
        return ops.transpose(model.head.kernel)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}()"


@serializable("clip")
class HeadMode(CLIPMode):
    """A linear probe: the head (text-initialised) trains, both encoders are frozen."""

    name = "head"


@serializable("clip")
class FullMode(CLIPMode):
    """Full fine-tuning: the head, the image encoder and its projection train."""

    name = "full"
    trains_image_encoder = True


@serializable("clip")
class PromptMode(CLIPMode):
    """CoOp prompt learning: the head rows are a `PromptLearner`'s prompts.

    The context is the only trained weight; `model.head` is frozen and holds a
    snapshot of the prompts' text embeddings (`model.refresh_head()`). The
    head rows run keras-hub's text encoder by hand (`PromptLearner.
    text_embeddings`): the recipe's one exception to keras-hub's public
    `get_text_embeddings`, guarded by a test (docs/clip.md).

    Args:
        prompt_learner: the `PromptLearner` of the classes.

    Example:

    ```python
    mode = PromptMode.from_tokenizer(tokenizer, ["cat", "dog"], max_length=77,
                                     context_init="a photo of a")
    model = CLIPClassifier(clip, prompt_token_ids, mode=mode)
    ```
    """

    name = "prompt"

    def __init__(self, prompt_learner):
        if not isinstance(prompt_learner, PromptLearner):
            raise ValueError(
                f"`prompt_learner` must be a PromptLearner; received {prompt_learner!r}."
            )
        self.prompt_learner = prompt_learner

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer,
        class_names,
        max_length,
        regularizer=None,
        context_length=16,
        context_init=None,
        seed=None,
    ):
        """A `PromptLearner` of `class_names` (each followed by "."), tokenised here.

        Args:
            tokenizer: a `keras_hub.models.CLIPTokenizer`.
            class_names: the class names, in label order.
            max_length: the text encoder's sequence length.
            regularizer: the context's regularizer (the coupled weight decay).
            context_length: random context vectors when `context_init` is `None`.
            context_init: optional text (e.g. `DEFAULT_CONTEXT_INIT`, "a photo of
                a") whose token embeddings initialise the context.
            seed: seed of the random context.
        """
        init_ids = tokenize(tokenizer, [context_init], False)[0] if context_init else None
        return cls(
            PromptLearner(
                tokenize(tokenizer, [f"{c}." for c in class_names], False),
                tokenizer.start_token_id,
                tokenizer.end_token_id,
                max_length,
                context_length=context_length,
                context_init_ids=init_ids,
                seed=seed,
                context_regularizer=regularizer,
            )
        )

    def default_head(self, num_classes, regularizer=None):
        """A plain head: the weight decay is the context's."""
        return super().default_head(num_classes)

    def check(self, num_classes):
        if self.prompt_learner.num_classes != num_classes:
            raise ValueError(
                f"`prompt_learner` must be a PromptLearner for {num_classes} classes; "
                f"received one for {self.prompt_learner.num_classes}."
            )

    def build(self, model):
        if not self.prompt_learner.built:
            table = model.clip.text_encoder.embedding.token_embedding
            self.prompt_learner.build((None, int(table.output_dim)))

    def set_trainable(self, model):
        super().set_trainable(model)
        model.head.trainable = False

    def initialize(self, model):
        self.prompt_learner.initialize_context(model.clip.text_encoder.embedding.token_embedding)
        model.refresh_head()

    def head_weights(self, model):
        """The normalised text embeddings `(C, d)` of the learned prompts (a tensor)."""
        clip = model.clip
        return self.prompt_learner.text_embeddings(clip.text_encoder, clip.text_projection)

    def get_config(self):
        return {"prompt_learner": keras.saving.serialize_keras_object(self.prompt_learner)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["prompt_learner"]))

    def __repr__(self):
        learner = self.prompt_learner
        return f"PromptMode({learner.num_classes} classes, {learner.context_length} context)"


MODES = {mode.name: mode for mode in (PromptMode, HeadMode, FullMode)}


def get(mode):
    """The mode class of a name (`"prompt"`, `"head"`, `"full"`), or a mode object itself."""
    if isinstance(mode, CLIPMode):
        return mode
    if isinstance(mode, str) and mode in MODES:
        return MODES[mode]
    raise ValueError(
        f"`mode` must be one of {tuple(MODES)} or a mode object (`PromptMode`, `HeadMode`, "
        f"`FullMode`); received {mode!r}."
    )


def from_arguments(prompt_learner=None, train_image_encoder=False):
    """The mode of keras-nc 0.2.0's `prompt_learner=` and `train_image_encoder=`."""
    if prompt_learner is not None:
        return PromptMode(prompt_learner)
    return FullMode() if train_image_encoder else HeadMode()


def instance(mode, kwargs):
    """The constructor's mode object: `mode` itself, or the object of `"head"`/`"full"`.

    keras-nc 0.2.0's `prompt_learner`/`train_image_encoder` in `kwargs` are
    popped and mapped with a `DeprecationWarning`.
    """
    legacy = [key for key in ("prompt_learner", "train_image_encoder") if key in kwargs]
    if legacy:
        if mode != "head":
            raise TypeError(f"Pass `mode` or {legacy}, not both.")
        warnings.warn(
            f"CLIPClassifier({', '.join(f'{k}=...' for k in legacy)}) is deprecated since "
            "keras-nc 0.3.0; pass `mode=PromptMode(prompt_learner)`, `'head'` or `'full'` "
            "(docs/clip.md).",
            DeprecationWarning,
            stacklevel=4,
        )
        return from_arguments(
            kwargs.pop("prompt_learner", None), kwargs.pop("train_image_encoder", 0)
        )
    mode = get(mode)
    if mode is PromptMode:
        raise ValueError(
            "`mode='prompt'` needs the class names' tokens: pass "
            "`mode=PromptMode.from_tokenizer(...)`, or build with `CLIPClassifier.from_preset`."
        )
    return mode() if isinstance(mode, type) else mode
