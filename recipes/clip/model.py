"""`CLIPClassifier`: a keras-hub CLIP as a `CollapseClassifier`, and the preset loader.

The features are CLIP's L2-normalised image embeddings; the head rows are the
L2-normalised text embeddings of the class prompts; the logits are CLIP's logit
scale times their cosine, exactly CLIP's zero-shot classifier. Collapse metrics
(`MIR`, `HDR`, ...) and `CMALoss` receive these features and head rows, so CMA
aligns each class's image embeddings with its text embedding (SPEC 2.8).

Three fine-tuning modes:

- `"prompt"`: CoOp prompt learning. `M` learnable context vectors replace the
  words of the prompt, the class name follows them (`[SOS] ctx_1 .. ctx_M
  name . [EOS]`), both encoders are frozen and the head rows are recomputed
  from the context through the frozen text encoder in every forward pass.
- `"head"`: a linear head initialised with the zero-shot text embeddings, the
  encoders frozen (a linear probe with a text-initialised head).
- `"full"`: as `"head"` with the image encoder (and its projection) trainable.

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


@keras.saving.register_keras_serializable(package="keras_nc")
class CLIPClassifier(CollapseClassifier):
    """A keras-hub CLIP fine-tuned as a `CollapseClassifier` (zero-shot, prompt, head, full).

    Features `z_i` are the L2-normalised CLIP image embeddings, head rows
    `t_c` the text embeddings of the class prompts and the logits
    `exp(logit_scale) * <z_i, t_c>` with CLIP's (frozen) logit scale. At
    construction the model is CLIP's zero-shot classifier with the prompt
    templates (their normalised embeddings averaged per class, then
    renormalised), except in `"prompt"` mode with a random context.

    - `mode="prompt"` (CoOp): `context_length` learnable context vectors in
      the token-embedding space, the class name after them; the text
      embeddings are recomputed from the context through the frozen text
      encoder in every forward pass (gradients reach the context only).
      `model.head` is then frozen and holds a snapshot of those embeddings
      (for tools that read `head.kernel`, such as `CollapseMonitor`); call
      `refresh_head()` to update it.
    - `mode="head"`: `model.head` is a bias-free `Dense` whose kernel starts
      as the normalised zero-shot text embeddings, applied to the normalised
      image embeddings; only the head trains. No bias, so that the logits stay
      scaled inner products with the head rows (a zero-initialised bias would
      also start at zero-shot, but is not a class anchor).
    - `mode="full"`: as `"head"`, with the image encoder and its projection
      trainable too (the text encoder and the logit scale stay frozen).

    Build it with `CLIPClassifier.from_preset`, which tokenises the prompts.

    Args:
        clip: a `keras_hub.models.CLIPBackbone`.
        prompt_token_ids: the tokenised prompts, one list per template, each a
            list of `C` token-id lists `[SOS] ... [EOS]` (the templates filled
            with the class names).
        class_token_ids: for `"prompt"` mode, the `C` token-id lists of the
            class names followed by `"."` (no start or end token).
        mode: `"prompt"`, `"head"` or `"full"`.
        context_length: number `M` of context vectors (prompt mode) when
            `context_init_ids` is `None`.
        context_init_ids: optional token ids (no start or end token) whose
            embeddings initialise the context (CoOp's "a photo of a"); their
            number is then the context length. `None`: random normal
            (standard deviation 0.02), seeded by `seed`.
        class_names: optional class names (kept in the config).
        seed: seed of the random context.
        weight_decay: coupled L2 weight decay of the trained context (prompt
            mode) or head (head and full modes): a penalty
            `weight_decay / 2 * ||w||^2` whose gradient `weight_decay * w` is
            what PyTorch's `SGD(weight_decay=...)` adds (CoOp: 5e-4). The
            image encoder in full mode is not penalised here (use AdamW's
            decoupled decay).
        initialize: compute the zero-shot head (and context) from the text
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
    model.fit(images, labels, epochs=10)  # images already through the image converter
    ```
    """

    def __init__(
        self,
        clip,
        prompt_token_ids,
        class_token_ids=None,
        mode="head",
        context_length=16,
        context_init_ids=None,
        class_names=None,
        seed=None,
        weight_decay=0.0,
        initialize=True,
        **kwargs,
    ):
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}; received {mode!r}.")
        prompts = _int_lists(prompt_token_ids, "prompt_token_ids", 3)
        if not prompts or any(len(group) != len(prompts[0]) for group in prompts):
            raise ValueError(
                "`prompt_token_ids` must be a non-empty list (one per template) of lists of "
                "token ids, the same number of classes in each."
            )
        num_classes = len(prompts[0])
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"`class_names` has {len(class_names)} names for {num_classes} classes."
            )
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
            raise ValueError(f"`weight_decay` must be a number >= 0; received {weight_decay!r}.")
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0; received {weight_decay!r}.")
        weight_decay = float(weight_decay)
        context_init = None
        if mode == "prompt":
            if class_token_ids is None:
                raise ValueError("`class_token_ids` is needed in `mode='prompt'`.")
            class_token_ids = _int_lists(class_token_ids, "class_token_ids", 2)
            if len(class_token_ids) != num_classes:
                raise ValueError(
                    f"`class_token_ids` has {len(class_token_ids)} rows for {num_classes} classes."
                )
            if context_init_ids is not None:
                context_init = [int(i) for i in context_init_ids]
                context_length = len(context_init)
            if isinstance(context_length, bool) or not isinstance(context_length, int):
                raise ValueError(f"`context_length` must be an integer; got {context_length!r}.")
            if context_length < 1:
                raise ValueError(f"`context_length` must be >= 1; received {context_length}.")

        image_shape = tuple(clip.vision_encoder.image_shape)
        images = keras.Input(image_shape, name="images")
        x = clip.vision_encoder({"images": images})
        x = clip.vision_pooler(x)
        x = clip.vision_projection(x)
        x = keras.layers.UnitNormalization(name="normalize")(x)
        image_model = keras.Model(images, x, name="clip_image_embedding")
        regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
        head = keras.layers.Dense(
            num_classes,
            use_bias=False,
            kernel_regularizer=regularizer if mode != "prompt" else None,
            name="head",
        )
        text_encoder = clip.text_encoder
        context_length = int(context_length) if mode == "prompt" else None
        # Plain (untracked) settings; `clip` and the context are tracked in `build`,
        # which the parent constructor calls (Keras locks the state after it).
        settings = {
            "mode": mode,
            "prompt_token_ids": prompts,
            "class_token_ids": class_token_ids,
            "context_length": context_length,
            "context_init_ids": context_init,
            "class_names": None if class_names is None else [str(c) for c in class_names],
            "seed": seed,
            "weight_decay": weight_decay,
            "_pending_clip": clip,
        }
        for key, value in settings.items():
            object.__setattr__(self, key, value)
        if mode == "prompt":
            # The prompts carry the tokenizer's start and end ids: [SOS] ... [EOS].
            prompt_ids, eos_index = self._prompt_template(
                class_token_ids,
                context_length,
                prompts[0][0][0],
                prompts[0][0][-1],
                int(text_encoder.max_sequence_length),
            )
            object.__setattr__(self, "_prompt_ids", prompt_ids)
            object.__setattr__(self, "_eos_index", eos_index)
        super().__init__(image_model, num_classes, head=head, **kwargs)

        self._set_trainable()
        object.__setattr__(self, "zero_shot_embeddings", None)
        if initialize:
            object.__setattr__(self, "zero_shot_embeddings", self.zero_shot_text_embeddings())
            if mode == "prompt":
                if context_init is not None:
                    table = text_encoder.embedding.token_embedding.embeddings
                    self.context.assign(ops.take(table, np.asarray(context_init), axis=0))
                self.refresh_head()
            else:
                self.head.kernel.assign(self.zero_shot_embeddings.T.astype(self.head.kernel.dtype))

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
        **kwargs,
    ):
        """Builds the classifier from a keras-hub preset name or local preset directory.

        Args:
            preset: `"clip_vit_base_patch16"`, ... (needs internet), or a local
                directory written by `save_to_preset` (see `load_clip`).
            class_names: the class names, in label order.
            mode: `"prompt"`, `"head"` or `"full"`.
            templates: prompt templates with one `{}` for the class name; the
                zero-shot head averages their normalised text embeddings.
            context_length: learnable context vectors (prompt mode, random init).
            context_init: optional text (e.g. `"a photo of a"`) initialising the
                context with its token embeddings (prompt mode; its number of
                tokens is then the context length).
            seed: seed of the random context.
            **kwargs: passed to the constructor (e.g. `name`).

        Returns:
            A `CLIPClassifier`; `model.image_converter` is the preset's
            `CLIPImageConverter` (not part of the model: apply it to the images).

        Example:

        ```python
        model = CLIPClassifier.from_preset("/data/clip_b16", ["cat", "dog"], mode="prompt",
                                           context_init="a photo of a")
        ```
        """
        clip, tokenizer, converter = load_clip(preset)
        model = cls.from_backbone(
            clip,
            tokenizer,
            class_names,
            mode=mode,
            templates=templates,
            context_length=context_length,
            context_init=context_init,
            seed=seed,
            **kwargs,
        )
        object.__setattr__(model, "image_converter", converter)  # preprocessing, not a layer
        return model

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
        **kwargs,
    ):
        """As `from_preset`, from a `CLIPBackbone` and a `CLIPTokenizer` already built."""
        class_names = [str(name) for name in class_names]
        if len(class_names) < 2:
            raise ValueError(f"`class_names` must name at least 2 classes; got {class_names!r}.")
        templates = [templates] if isinstance(templates, str) else list(templates)
        if not templates or any(not isinstance(t, str) or t.count("{}") != 1 for t in templates):
            raise ValueError(
                "`templates` must be strings with one `{}` for the class name; received "
                f"{templates!r}."
            )
        max_length = int(clip.text_encoder.max_sequence_length)
        prompts = [
            tokenize(tokenizer, [t.format(c) for c in class_names], max_length=max_length)
            for t in templates
        ]
        class_ids, init_ids = None, None
        if mode == "prompt":
            class_ids = tokenize(tokenizer, [f"{c}." for c in class_names], False)
            if context_init:
                init_ids = tokenize(tokenizer, [context_init], False)[0]
        return cls(
            clip,
            prompts,
            class_token_ids=class_ids,
            mode=mode,
            context_length=context_length,
            context_init_ids=init_ids,
            class_names=class_names,
            seed=seed,
            **kwargs,
        )

    # ------------------------------------------------------------------ #

    @staticmethod
    def _prompt_template(class_token_ids, context_length, start, end, max_length):
        """Token ids `[SOS] x*M name . [EOS] pad...` `(C, L)` and the EOS positions `(C,)`.

        The `M` placeholders (id 0) are replaced by the context vectors; CLIP's
        text pooler would find the end token by argmax (it has the largest id),
        here its positions are known.
        """
        room = max_length - 2 - context_length
        if room < 1:
            raise ValueError(
                f"`context_length` {context_length} leaves no room for the class name in the "
                f"text encoder's {max_length} tokens."
            )
        rows = [[start, *[0] * context_length, *ids[:room], end] for ids in class_token_ids]
        padded = pad_token_ids(rows)
        return padded, np.asarray([len(row) - 1 for row in rows], dtype="int32")

    def build(self, input_shape=None):
        if self.built:
            return
        clip = self.__dict__.pop("_pending_clip", None)
        if clip is not None:
            self.clip = clip
        if self.mode == "prompt":
            width = int(self.clip.text_encoder.embedding.token_embedding.output_dim)
            self.context = self.add_weight(
                shape=(self.context_length, width),
                initializer=keras.initializers.RandomNormal(stddev=0.02, seed=self.seed),
                regularizer=(
                    keras.regularizers.L2(self.weight_decay / 2) if self.weight_decay else None
                ),
                name="context",
            )
        else:
            self.context = None
        super().build(input_shape)

    def _set_trainable(self):
        clip = self.clip
        clip.trainable = False
        if self.mode == "full":
            clip.vision_encoder.trainable = True
            clip.vision_projection.trainable = True
        self.head.trainable = self.mode in ("head", "full")

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

    def prompt_text_embeddings(self):
        """Normalised text embeddings `(C, d)` of the learned prompts (prompt mode; a tensor)."""
        if self.mode != "prompt":
            raise ValueError("`prompt_text_embeddings` needs `mode='prompt'`.")
        encoder = self.clip.text_encoder
        ids = ops.convert_to_tensor(self._prompt_ids)
        tokens = encoder.embedding.token_embedding(ids)  # (C, L, e)
        num_classes = self._prompt_ids.shape[0]
        context = ops.broadcast_to(
            ops.expand_dims(ops.cast(self.context, tokens.dtype), 0),
            (num_classes, self.context_length, tokens.shape[-1]),
        )
        x = ops.concatenate([tokens[:, :1], context, tokens[:, 1 + self.context_length :]], axis=1)
        x = x + encoder.embedding.position_embedding(x)
        for block in encoder.encoder_layers:
            x = block(x)
        x = encoder.layer_norm(x)
        eos = ops.convert_to_tensor(self._eos_index.reshape(-1, 1, 1))
        pooled = ops.squeeze(ops.take_along_axis(x, eos, axis=1), axis=1)
        embeddings = self.clip.text_projection(pooled)
        return embeddings / ops.sqrt(
            ops.maximum(ops.sum(ops.square(embeddings), axis=-1, keepdims=True), 1e-12)
        )

    def head_rows(self):
        """The current head rows `(C, d)` (tensor): prompt embeddings or the head kernel."""
        if self.mode == "prompt":
            return self.prompt_text_embeddings()
        return ops.transpose(self.head.kernel)

    def refresh_head(self):
        """Copies the learned prompts' text embeddings into `head.kernel` (prompt mode)."""
        if self.mode == "prompt":
            rows = ops.convert_to_numpy(self.prompt_text_embeddings())
            self.head.kernel.assign(rows.T.astype(self.head.kernel.dtype))

    def call(self, inputs, training=None):
        features = self.extract_features(inputs, training=training)
        scale = ops.cast(self.logit_scale, features.dtype)
        if self.mode == "prompt":
            head_weights = ops.cast(self.prompt_text_embeddings(), features.dtype)
            logits = scale * ops.matmul(features, ops.transpose(head_weights))
        else:
            head_weights = ops.transpose(self.head.kernel)
            logits = scale * self.head(features)
        if self._collapse_outputs:
            return {"logits": logits, "features": features, "head_weights": head_weights}
        return logits

    # ------------------------------------------------------------------ #

    def get_config(self):
        base = keras.Model.get_config(self)
        base = {key: base[key] for key in ("name", "trainable", "dtype") if key in base}
        return {
            **base,
            "clip": keras.saving.serialize_keras_object(self.clip),
            "prompt_token_ids": self.prompt_token_ids,
            "class_token_ids": self.class_token_ids,
            "mode": self.mode,
            "context_length": self.context_length or 16,
            "context_init_ids": self.context_init_ids,
            "class_names": self.class_names,
            "seed": self.seed,
            "weight_decay": self.weight_decay,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["clip"] = keras.saving.deserialize_keras_object(config["clip"])
        return cls(initialize=False, **config)
