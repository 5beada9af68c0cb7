"""`CLIPClassifier`: a keras-hub CLIP as a `CollapseClassifier`, and the preset loader.

The features are CLIP's L2-normalised image embeddings; the head rows are the
L2-normalised text embeddings of the class prompts; the logits are CLIP's logit
scale times their cosine, exactly CLIP's zero-shot classifier. Collapse metrics
(`MIR`, `HDR`, ...) and `CMALoss` receive these features and head rows, so CMA
aligns each class's image embeddings with its text embedding (arXiv 2409.16767).

Where the head rows come from is chosen once, at construction, by the layer
that holds them:

- a `PromptLearner` (CoOp prompt learning): `M` learnable context vectors
  replace the words of the prompt, the class name follows them (`[SOS] ctx_1
  .. ctx_M name . [EOS]`), both encoders are frozen and the head rows are
  recomputed from the context through the frozen text encoder in every
  forward pass;
- otherwise the `Dense` head, initialised with the zero-shot text embeddings
  (a linear probe with a text-initialised head), optionally with the image
  encoder trainable too.

`CLIPClassifier.from_preset(..., mode=...)` names these three set-ups
`"prompt"`, `"head"` and `"full"`.

Example:

```python
from recipes.clip.model import CLIPClassifier

model = CLIPClassifier.from_preset(
    "clip_vit_base_patch16",  # or a local directory written by save_to_preset
    class_names=["cat", "dog"],
    mode="prompt",
)
```
"""

import os

import keras
import numpy as np
from keras import ops

from keras_nc.models import CollapseClassifier

MODES = ("prompt", "head", "full")
DEFAULT_TEMPLATES = ("a photo of a {}.",)
DEFAULT_CONTEXT_INIT = "a photo of a"


class PresetUnavailableError(RuntimeError):
    """A keras-hub preset cannot be loaded here (no internet, no such preset)."""


def _is_local(preset):
    if "://" in preset:  # kaggle://, hf://, modelscope:// handles
        return False
    return os.path.isdir(preset) or preset.startswith((".", "/", "~")) or os.sep in preset


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
        image converter gets CLIP's (resize with centre crop to the
        backbone's image size, CLIP's channel mean and standard deviation).

    Raises:
        PresetUnavailableError: a named preset cannot be downloaded (no
            internet): the message names the local-directory alternative.
        ValueError: a local directory that does not exist or holds no CLIP.
    """
    import keras_hub

    if not isinstance(preset, str) or not preset:
        raise ValueError(f"`preset` must be a preset name or directory; received {preset!r}.")
    if _is_local(preset):
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
        if _is_local(preset):
            raise ValueError(
                f"`preset` {preset!r} could not be loaded as a CLIP preset: "
                f"{type(error).__name__}: {error}"
            ) from error
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        raise PresetUnavailableError(
            f"The keras-hub preset {preset!r} could not be loaded ({reason}). Named presets "
            "are downloaded from Kaggle and need internet. Offline, pass a local preset "
            "directory instead: on a machine with internet run `backbone = keras_hub.models."
            f"CLIPBackbone.from_preset({preset!r}); backbone.save_to_preset(DIR)` and the same "
            "for `keras_hub.models.CLIPTokenizer` and `keras_hub.layers.CLIPImageConverter`, "
            "copy DIR here and use `--preset DIR`."
        ) from None
    try:
        converter = keras_hub.layers.CLIPImageConverter.from_preset(preset)
    except Exception:
        converter = default_image_converter(backbone.vision_encoder.image_shape[0])
    return backbone, tokenizer, converter


def default_image_converter(image_size):
    """CLIP's image converter: resize (centre crop), CLIP mean and std, bicubic."""
    import keras_hub

    mean = (0.48145466, 0.4578275, 0.40821073)
    std = (0.26862954, 0.26130258, 0.27577711)
    return keras_hub.layers.CLIPImageConverter(
        image_size=(image_size, image_size),
        scale=[1.0 / (255.0 * s) for s in std],
        offset=[-m / s for m, s in zip(mean, std, strict=True)],
        crop_to_aspect_ratio=True,
        interpolation="bicubic",
    )


def tokenize(tokenizer, texts, add_special_tokens=True, max_length=None):
    """Token ids of each text, as lists of ints (lower-cased, like `CLIPPreprocessor`).

    With `add_special_tokens`, each list is `[SOS] ... [EOS]`, truncated to
    `max_length` with the end token kept.
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
    """A dense `(n, L)` int32 array of the ragged `rows`, `L` the longest row."""
    length = max(len(row) for row in rows)
    out = np.full((len(rows), length), pad_id, dtype="int32")
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def text_embeddings(clip, token_ids, batch_size=256):
    """CLIP's L2-normalised text embeddings `(n, d)` (NumPy) of padded token ids `(n, L)`."""
    token_ids = np.asarray(token_ids, dtype="int32")
    out = []
    for start in range(0, len(token_ids), batch_size):
        chunk = token_ids[start : start + batch_size]
        out.append(ops.convert_to_numpy(clip.get_text_embeddings(ops.convert_to_tensor(chunk))))
    emb = np.concatenate(out).astype("float64")
    return emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)


def _int_lists(value, name, depth):
    """Validates nested lists of ints (`depth` 2: rows; 3: templates of rows)."""
    try:
        if depth == 2:
            return [[int(i) for i in row] for row in value]
        return [[[int(i) for i in row] for row in group] for group in value]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be nested lists of integer token ids.") from None


def _unit_rows(x):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


@keras.saving.register_keras_serializable(package="keras_nc")
class PromptLearner(keras.layers.Layer):
    """CoOp's learnable prompts: `[SOS] ctx_1 .. ctx_M name . [EOS]` for each class.

    Holds `M` context vectors in CLIP's token-embedding space, shared by the
    classes, and the token ids of the `C` prompts with `M` placeholders. A
    `CLIPClassifier` given one takes its head rows from `text_embeddings`:
    the prompts (their token embeddings, the context in place of the
    placeholders) through CLIP's frozen text encoder and projection, so that
    gradients reach the context only (Zhou et al., CoOp, 2022).

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
        self.class_token_ids = _int_lists(class_token_ids, "class_token_ids", 2)
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
        return _unit_rows(text_projection(pooled))

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


@keras.saving.register_keras_serializable(package="keras_nc")
class CLIPClassifier(CollapseClassifier):
    """A keras-hub CLIP fine-tuned as a `CollapseClassifier` (zero-shot, prompt, head, full).

    Features `z_i` are the L2-normalised CLIP image embeddings, head rows
    `t_c` the text embeddings of the class prompts and the logits
    `exp(logit_scale) * <z_i, t_c>` with CLIP's (frozen) logit scale. At
    construction the model is CLIP's zero-shot classifier with the prompt
    templates (their normalised embeddings averaged per class, then
    renormalised), except with a randomly initialised `PromptLearner`.

    The head rows come from one of two sources, fixed at construction:

    - a `prompt_learner` (CoOp): the text embeddings of the learned prompts,
      recomputed through the frozen text encoder in every forward pass
      (gradients reach the context only). Both encoders are frozen, and so is
      `model.head`, which holds a snapshot of those embeddings (for tools
      that read `head.kernel`, such as `CollapseMonitor`); `refresh_head()`
      updates it.
    - otherwise `model.head`, a bias-free `Dense` whose kernel starts as the
      normalised zero-shot text embeddings, applied to the normalised image
      embeddings; it trains, and with `train_image_encoder=True` the image
      encoder and its projection train too (the text encoder and the logit
      scale stay frozen). No bias, so that the logits stay scaled inner
      products with the head rows (a zero-initialised bias would also start
      at zero-shot, but is not a class anchor).

    Build it with `CLIPClassifier.from_preset` (or `from_backbone`), which
    tokenises the prompts and names these set-ups `mode="prompt"`, `"head"`
    and `"full"`.

    Args:
        clip: a `keras_hub.models.CLIPBackbone`.
        prompt_token_ids: the tokenised prompts, one list per template, each a
            list of `C` token-id lists `[SOS] ... [EOS]` (the templates filled
            with the class names): the zero-shot head.
        prompt_learner: optional `PromptLearner` with `C` classes: the head
            rows are then its prompts' text embeddings.
        head: optional bias-free `keras.layers.Dense(C, use_bias=False)`
            (e.g. with a `kernel_regularizer`); default: a new one named
            `"head"`.
        train_image_encoder: train the image encoder and its projection (with
            a linear head: full fine-tuning).
        class_names: optional class names (kept in the config).
        image_converter: optional `keras_hub.layers.CLIPImageConverter`, the
            preprocessing the images need (kept in the config, not applied by
            the model: apply it to the images, as the recipe's pipelines do).
        initialize: compute the zero-shot head (and the context) from the text
            encoder now. `from_config` passes `False`: the weights then come
            from the saved file.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    ```python
    from keras_nc.losses import CMALoss
    from keras_nc.metrics import HDR, MIR

    model = CLIPClassifier.from_preset("clip_vit_base_patch16", ["cat", "dog"], mode="head")
    model.compile(
        optimizer=keras.optimizers.SGD(0.002, momentum=0.9),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(1.0)],
        metrics=["accuracy", MIR(), HDR()],
    )
    model.fit(images, labels, epochs=10)  # images already through model.image_converter
    ```
    """

    def __init__(
        self,
        clip,
        prompt_token_ids,
        prompt_learner=None,
        head=None,
        train_image_encoder=False,
        class_names=None,
        image_converter=None,
        initialize=True,
        **kwargs,
    ):
        prompts = _int_lists(prompt_token_ids, "prompt_token_ids", 3)
        num_classes = _check_parts(prompts, class_names, prompt_learner, head)
        if head is None:
            head = keras.layers.Dense(num_classes, use_bias=False, name="head")
        image_model = _image_embedding_model(clip)
        # Plain (untracked) settings. `clip` and the prompt learner are tracked in
        # `build`, which the parent constructor calls (Keras locks the state after it).
        settings = {
            "prompt_token_ids": prompts,
            "train_image_encoder": bool(train_image_encoder),
            "class_names": None if class_names is None else [str(c) for c in class_names],
            "image_converter": image_converter,  # preprocessing: not a layer of the model
            "_pending_layers": {"clip": clip, "prompt_learner": prompt_learner},
        }
        for key, value in settings.items():
            object.__setattr__(self, key, value)
        super().__init__(image_model, num_classes, head=head, **kwargs)

        self._set_trainable()
        object.__setattr__(self, "zero_shot_embeddings", None)
        if initialize:
            zero_shot = self.zero_shot_text_embeddings()
            object.__setattr__(self, "zero_shot_embeddings", zero_shot)
            self.head.kernel.assign(zero_shot.T.astype(self.head.kernel.dtype))
            if self.prompt_learner is not None:
                self.prompt_learner.initialize_context(
                    self.clip.text_encoder.embedding.token_embedding
                )
                self.refresh_head()

    # ------------------------------------------------------------------ #

    @classmethod
    def from_preset(
        cls,
        preset,
        class_names,
        mode="head",
        templates=DEFAULT_TEMPLATES,
        context_length=16,
        context_init=None,
        seed=None,
        weight_decay=0.0,
        **kwargs,
    ):
        """Builds the classifier from a keras-hub preset name or local preset directory.

        Args:
            preset: `"clip_vit_base_patch16"`, ... (needs internet), or a local
                directory written by `save_to_preset` (see `load_clip`).
            class_names: the class names, in label order.
            mode: `"prompt"` (a `PromptLearner`), `"head"` (a linear head on
                the frozen encoders) or `"full"` (the head and the image
                encoder trained).
            templates: prompt templates with one `{}` for the class name; the
                zero-shot head averages their normalised text embeddings.
            context_length: learnable context vectors (prompt mode, random init).
            context_init: optional text (e.g. `"a photo of a"`) initialising the
                context with its token embeddings (prompt mode; its number of
                tokens is then the context length).
            seed: seed of the random context.
            weight_decay: coupled L2 weight decay of the trained head rows: a
                penalty `weight_decay / 2 * ||w||^2` on the context (prompt
                mode) or the head kernel, whose gradient `weight_decay * w` is
                what PyTorch's `SGD(weight_decay=...)` adds (CoOp: 5e-4). The
                image encoder in full mode is not penalised here (use AdamW's
                decoupled decay).
            **kwargs: passed to the constructor (e.g. `name`).

        Returns:
            A `CLIPClassifier`; `model.image_converter` is the preset's
            `CLIPImageConverter` (saved with the model, not applied by it:
            apply it to the images).

        Example:

        ```python
        model = CLIPClassifier.from_preset("/data/clip_b16", ["cat", "dog"], mode="prompt",
                                           context_init="a photo of a")
        ```
        """
        clip, tokenizer, converter = load_clip(preset)
        return cls.from_backbone(
            clip,
            tokenizer,
            class_names,
            mode=mode,
            templates=templates,
            context_length=context_length,
            context_init=context_init,
            seed=seed,
            weight_decay=weight_decay,
            image_converter=converter,
            **kwargs,
        )

    @classmethod
    def from_backbone(
        cls,
        clip,
        tokenizer,
        class_names,
        mode="head",
        templates=DEFAULT_TEMPLATES,
        context_length=16,
        context_init=None,
        seed=None,
        weight_decay=0.0,
        **kwargs,
    ):
        """As `from_preset`, from a `CLIPBackbone` and a `CLIPTokenizer` already built.

        `**kwargs` go to the constructor (e.g. `image_converter`, `name`; a
        `head` given there replaces the default one, `weight_decay` then
        applies through its own `kernel_regularizer` only).
        """
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}; received {mode!r}.")
        class_names = [str(name) for name in class_names]
        if len(class_names) < 2:
            raise ValueError(f"`class_names` must name at least 2 classes; got {class_names!r}.")
        templates = [templates] if isinstance(templates, str) else list(templates)
        if not templates or any(not isinstance(t, str) or t.count("{}") != 1 for t in templates):
            raise ValueError(
                "`templates` must be strings with one `{}` for the class name; received "
                f"{templates!r}."
            )
        regularizer = _coupled_l2(weight_decay)
        max_length = int(clip.text_encoder.max_sequence_length)
        prompts = [
            tokenize(tokenizer, [t.format(c) for c in class_names], max_length=max_length)
            for t in templates
        ]
        if mode == "prompt":
            init_ids = tokenize(tokenizer, [context_init], False)[0] if context_init else None
            kwargs["prompt_learner"] = PromptLearner(
                tokenize(tokenizer, [f"{c}." for c in class_names], False),
                tokenizer.start_token_id,
                tokenizer.end_token_id,
                max_length,
                context_length=context_length,
                context_init_ids=init_ids,
                seed=seed,
                context_regularizer=regularizer,
            )
        elif kwargs.get("head") is None:
            kwargs["head"] = keras.layers.Dense(
                len(class_names), use_bias=False, kernel_regularizer=regularizer, name="head"
            )
        return cls(
            clip,
            prompts,
            train_image_encoder=mode == "full",
            class_names=class_names,
            **kwargs,
        )

    # ------------------------------------------------------------------ #

    def build(self, input_shape=None):
        if self.built:
            return
        for name, layer in self.__dict__.pop("_pending_layers", {}).items():
            setattr(self, name, layer)
        if self.prompt_learner is not None and not self.prompt_learner.built:
            table = self.clip.text_encoder.embedding.token_embedding
            self.prompt_learner.build((None, int(table.output_dim)))
        super().build(input_shape)

    def _set_trainable(self):
        clip = self.clip
        clip.trainable = False
        clip.vision_encoder.trainable = self.train_image_encoder
        clip.vision_projection.trainable = self.train_image_encoder
        self.head.trainable = self.prompt_learner is None

    @property
    def mode(self):
        """`"prompt"` (a `PromptLearner`), `"head"` or `"full"` (a linear head)."""
        if self.prompt_learner is not None:
            return "prompt"
        return "full" if self.train_image_encoder else "head"

    @property
    def logit_scale(self):
        """CLIP's logit scale `exp(clip_head.logit_scale)` (a tensor; frozen)."""
        return ops.exp(self.clip.clip_head.logit_scale)

    def zero_shot_text_embeddings(self):
        """Normalised zero-shot class embeddings `(C, d)` (NumPy float64) from the templates.

        Each template's normalised text embeddings, averaged over templates and
        renormalised (CLIP's prompt ensembling). A new model keeps them in
        `zero_shot_embeddings` (`None` on a model loaded from a file: call this).
        """
        total = 0.0
        for group in self.prompt_token_ids:
            total = total + text_embeddings(self.clip, pad_token_ids(group))
        return total / np.maximum(np.linalg.norm(total, axis=-1, keepdims=True), 1e-12)

    @property
    def head_weights(self):
        """The current head weights `(C, d)` (a tensor).

        With a `PromptLearner`, the text embeddings of its prompts; else the
        head kernel's transpose.
        """
        if self.prompt_learner is None:
            return super().head_weights
        return self.prompt_learner.text_embeddings(
            self.clip.text_encoder, self.clip.text_projection
        )

    def classify(self, features):
        """CLIP's logits `exp(logit_scale) * <z_i, t_c>` and the head rows `t_c`."""
        rows = ops.cast(self.head_weights, features.dtype)
        scale = ops.cast(self.logit_scale, features.dtype)
        return scale * ops.matmul(features, ops.transpose(rows)), rows

    def refresh_head(self):
        """Copies `head_weights` into `head.kernel`.

        With a `PromptLearner`, the learned prompts' text embeddings; a linear
        head already holds its rows.
        """
        rows = ops.convert_to_numpy(self.head_weights)
        self.head.kernel.assign(rows.T.astype(self.head.kernel.dtype))

    # ------------------------------------------------------------------ #

    def get_config(self):
        config = super().get_config()
        # The backbone is CLIP's image tower and the number of classes that of the
        # prompts: both are rebuilt from `clip` and `prompt_token_ids`.
        del config["backbone"], config["num_classes"]
        return {
            **config,
            "clip": keras.saving.serialize_keras_object(self.clip),
            "prompt_token_ids": self.prompt_token_ids,
            "prompt_learner": keras.saving.serialize_keras_object(self.prompt_learner),
            "train_image_encoder": self.train_image_encoder,
            "class_names": self.class_names,
            "image_converter": keras.saving.serialize_keras_object(self.image_converter),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("clip", "head", "prompt_learner", "image_converter"):
            config[key] = keras.saving.deserialize_keras_object(config.get(key))
        return cls(initialize=False, **config)


def _check_parts(prompts, class_names, prompt_learner, head):
    """Validates `CLIPClassifier`'s arguments; returns the number of classes."""
    if not prompts or any(len(group) != len(prompts[0]) for group in prompts):
        raise ValueError(
            "`prompt_token_ids` must be a non-empty list (one per template) of lists of "
            "token ids, the same number of classes in each."
        )
    num_classes = len(prompts[0])
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"`class_names` has {len(class_names)} names for {num_classes} classes.")
    if prompt_learner is not None and (
        not isinstance(prompt_learner, PromptLearner) or prompt_learner.num_classes != num_classes
    ):
        raise ValueError(
            f"`prompt_learner` must be a PromptLearner for {num_classes} classes; "
            f"received {prompt_learner!r}."
        )
    if isinstance(head, keras.layers.Dense) and head.use_bias:
        raise ValueError(
            "`head` must be a Dense layer without bias (`use_bias=False`): the logits are "
            "the logit scale times inner products with the head rows."
        )
    return num_classes


def _image_embedding_model(clip):
    """CLIP's normalised image embeddings: vision encoder, pooler, projection, L2 norm."""
    images = keras.Input(tuple(clip.vision_encoder.image_shape), name="images")
    x = clip.vision_encoder({"images": images})
    x = clip.vision_pooler(x)
    x = clip.vision_projection(x)
    x = keras.layers.UnitNormalization(name="normalize")(x)
    return keras.Model(images, x, name="clip_image_embedding")


def _coupled_l2(weight_decay):
    """`L2(weight_decay / 2)`: the gradient `weight_decay * w` of SGD's weight decay."""
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
        raise ValueError(f"`weight_decay` must be a number >= 0; received {weight_decay!r}.")
    if weight_decay < 0:
        raise ValueError(f"`weight_decay` must be >= 0; received {weight_decay!r}.")
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None
