"""`CLIPClassifier`: a keras-hub CLIP as a `CollapseClassifier` (arXiv 2409.16767).

The features are CLIP's L2-normalised image embeddings; the head rows are the
L2-normalised text embeddings of the class prompts; the logits are CLIP's logit
scale times their cosine, exactly CLIP's zero-shot classifier. Collapse metrics
(`MIR`, `HDR`, ...) and `CMALoss` receive these features and head rows, so CMA
aligns each class's image embeddings with its text embedding.

What is fine-tuned is a mode object (`recipes.clip.modes`): `PromptMode` (CoOp
prompt learning with a `PromptLearner`), `HeadMode` (a text-initialised linear
head) or `FullMode` (the head and the image encoder); `mode="prompt"`,
`"head"`, `"full"` name them. Images and class prompts go through keras-hub's
public `CLIPBackbone.get_vision_embeddings` and `get_text_embeddings`; the
prompt mode's text path is the one exception (docs/clip.md).

Example:

```python
from recipes.clip.classifier import CLIPClassifier

model = CLIPClassifier.from_preset(
    "clip_vit_base_patch16",  # or a local directory written by save_to_preset
    class_names=["cat", "dog"],
    mode="prompt",
)
```
"""

import keras
from keras import ops

from keras_nc.models import CollapseClassifier
from recipes.clip import modes as modes_lib
from recipes.clip.loading import (
    DEFAULT_TEMPLATES,
    int_lists,
    load_clip,
    pad_token_ids,
    text_embeddings,
    tokenize,
    unit_rows_numpy,
)
from recipes.registration import serializable

MODES = tuple(modes_lib.MODES)


@serializable("clip")
class CLIPClassifier(CollapseClassifier):
    """A keras-hub CLIP fine-tuned as a `CollapseClassifier` (zero-shot, prompt, head, full).

    Features `z_i` are the L2-normalised CLIP image embeddings
    (`clip.get_vision_embeddings`), head rows `t_c` the text embeddings of the
    class prompts and the logits `exp(logit_scale) * <z_i, t_c>` with CLIP's
    (frozen) logit scale. At construction the model is CLIP's zero-shot
    classifier with the prompt templates (their normalised embeddings from
    `clip.get_text_embeddings`, averaged per class, then renormalised), in
    the bias-free `head`. The mode then decides what trains and where the
    head rows come from (`recipes.clip.modes`; docs/clip.md).

    Usually built with `CLIPClassifier.from_preset` (or `from_backbone`),
    which tokenises the prompts and maps `mode="prompt"`, `"head"`, `"full"`
    to the mode objects.

    Args:
        clip: a `keras_hub.models.CLIPBackbone`.
        prompt_token_ids: the tokenised prompts, one list per template, each a
            list of `C` token-id lists `[SOS] ... [EOS]` (the templates filled
            with the class names): the zero-shot head.
        mode: a mode object (`PromptMode(learner)`, `HeadMode()`,
            `FullMode()`) or the name `"head"` or `"full"` (`"prompt"` needs
            a `PromptLearner`: pass `PromptMode`, or use `from_preset`).
        head: optional bias-free `keras.layers.Dense(C, use_bias=False)`
            (e.g. with a `kernel_regularizer`); default: the mode's.
        class_names: optional class names (kept in the config).
        image_converter: optional `keras_hub.layers.CLIPImageConverter`, the
            preprocessing the images need (kept in the config, not applied by
            the model: apply it to the images, as the recipe's pipelines do).
        initialize: compute the zero-shot head (and the context) from the text
            encoder now. `from_config` passes `False`: the weights then come
            from the saved file.
        **kwargs: passed to `keras.Model` (e.g. `name`). The arguments of
            keras-nc 0.2.0, `prompt_learner=` and `train_image_encoder=`,
            still work, with a `DeprecationWarning`.

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
        mode="head",
        head=None,
        class_names=None,
        image_converter=None,
        initialize=True,
        **kwargs,
    ):
        mode = modes_lib.instance(mode, kwargs)
        prompts = int_lists(prompt_token_ids, "prompt_token_ids", 3)
        num_classes = _check_parts(prompts, class_names, head)
        mode.check(num_classes)
        head = mode.default_head(num_classes) if head is None else head
        # Plain (untracked) settings. `clip` and the prompt learner are tracked in
        # `build`, which the parent constructor calls (Keras locks the state after it).
        settings = {
            "prompt_token_ids": prompts,
            "tuning_mode": mode,
            "class_names": None if class_names is None else [str(c) for c in class_names],
            "image_converter": image_converter,  # preprocessing: not a layer of the model
            "zero_shot_embeddings": None,
            "_pending_layers": {"clip": clip, "prompt_learner": mode.prompt_learner},
        }
        for key, value in settings.items():
            object.__setattr__(self, key, value)
        super().__init__(_image_embedding_model(clip), num_classes, head=head, **kwargs)
        mode.set_trainable(self)
        if initialize:
            zero_shot = self.zero_shot_text_embeddings()
            object.__setattr__(self, "zero_shot_embeddings", zero_shot)
            self.head.kernel.assign(zero_shot.T.astype(self.head.kernel.dtype))
            mode.initialize(self)

    @classmethod
    def from_preset(cls, preset, class_names, mode="head", **kwargs):
        """Builds the classifier from a keras-hub preset name or local preset directory.

        Args:
            preset: `"clip_vit_base_patch16"`, ... (needs internet), or a local
                directory written by `save_to_preset` (see `load_clip`).
            class_names: the class names, in label order.
            mode: `"prompt"`, `"head"` or `"full"` (or a mode object).
            **kwargs: as `from_backbone` (`templates`, `context_length`,
                `context_init`, `seed`, `weight_decay`, constructor arguments).

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
        kwargs.setdefault("image_converter", converter)
        return cls.from_backbone(clip, tokenizer, class_names, mode=mode, **kwargs)

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

        Args:
            clip, tokenizer: keras-hub's `CLIPBackbone` and `CLIPTokenizer`.
            class_names: the class names, in label order (at least 2).
            mode: `"prompt"` (a `PromptLearner`), `"head"` (a linear head on
                the frozen encoders), `"full"` (the head and the image
                encoder trained), or a mode object.
            templates: prompt templates with one `{}` for the class name; the
                zero-shot head averages their normalised text embeddings.
            context_length, context_init, seed: the prompt mode's context
                (`PromptMode.from_tokenizer`).
            weight_decay: coupled L2 weight decay of the trained head rows: a
                penalty `weight_decay / 2 * ||w||^2` on the context (prompt
                mode) or the head kernel, whose gradient `weight_decay * w` is
                what PyTorch's `SGD(weight_decay=...)` adds (CoOp: 5e-4). The
                image encoder in full mode is not penalised here (use AdamW's
                decoupled decay). A `head` given in `kwargs` keeps its own.
            **kwargs: passed to the constructor (`image_converter`, `head`, `name`).
        """
        class_names = [str(name) for name in class_names]
        if len(class_names) < 2:
            raise ValueError(f"`class_names` must name at least 2 classes; got {class_names!r}.")
        templates = [templates] if isinstance(templates, str) else list(templates)
        if not templates or any(not isinstance(t, str) or t.count("{}") != 1 for t in templates):
            raise ValueError(
                "`templates` must be strings with one `{}` for the class name; received "
                f"{templates!r}."
            )
        mode, regularizer = modes_lib.get(mode), _coupled_l2(weight_decay)
        max_length = int(clip.text_encoder.max_sequence_length)
        if isinstance(mode, type):
            options = {"context_length": context_length, "context_init": context_init}
            mode = mode.from_tokenizer(
                tokenizer, class_names, max_length, regularizer, seed=seed, **options
            )
        if kwargs.get("head") is None:
            kwargs["head"] = mode.default_head(len(class_names), regularizer)
        prompts = [
            tokenize(tokenizer, [t.format(c) for c in class_names], max_length=max_length)
            for t in templates
        ]
        return cls(clip, prompts, mode=mode, class_names=class_names, **kwargs)

    def build(self, input_shape=None):
        if self.built:
            return
        for name, layer in self.__dict__.pop("_pending_layers", {}).items():
            setattr(self, name, layer)
        self.tuning_mode.build(self)
        super().build(input_shape)

    @property
    def mode(self):
        """The mode's name: `"prompt"`, `"head"` or `"full"` (`tuning_mode` is the object)."""
        return self.tuning_mode.name

    @property
    def train_image_encoder(self):
        """Whether the image encoder and its projection train (full mode)."""
        return self.tuning_mode.trains_image_encoder

    @property
    def logit_scale(self):
        """CLIP's logit scale `exp(clip_head.logit_scale)` (a tensor; frozen)."""
        return ops.exp(self.clip.clip_head.logit_scale)

    def zero_shot_text_embeddings(self):
        """Normalised zero-shot class embeddings `(C, d)` (NumPy float64) from the templates.

        Each template's normalised text embeddings (`clip.get_text_embeddings`),
        averaged over templates and renormalised (CLIP's prompt ensembling). A
        new model keeps them in `zero_shot_embeddings` (`None` on a model
        loaded from a file: call this).
        """
        total = sum(text_embeddings(self.clip, pad_token_ids(g)) for g in self.prompt_token_ids)
        return unit_rows_numpy(total)

    @property
    def head_weights(self):
        """The current head rows `(C, d)` (a tensor), from the mode.

        Prompt mode: the text embeddings of the learned prompts; head and full
        modes: the head kernel's transpose.
        """
        return self.tuning_mode.head_weights(self)

    def classify(self, features):
        """CLIP's logits `exp(logit_scale) * <z_i, t_c>` and the head rows `t_c`."""
        rows = ops.cast(self.head_weights, features.dtype)
        scale = ops.cast(self.logit_scale, features.dtype)
        return scale * ops.matmul(features, ops.transpose(rows)), rows

    def refresh_head(self):
        """Copies `head_weights` into `head.kernel` (prompt mode: the learned prompts)."""
        rows = ops.convert_to_numpy(self.head_weights)
        self.head.kernel.assign(rows.T.astype(self.head.kernel.dtype))

    def get_config(self):
        config = super().get_config()
        # The backbone is CLIP's image tower and the number of classes that of the
        # prompts: both are rebuilt from `clip` and `prompt_token_ids`.
        del config["backbone"], config["num_classes"]
        return {
            **config,
            "clip": keras.saving.serialize_keras_object(self.clip),
            "prompt_token_ids": self.prompt_token_ids,
            "mode": keras.saving.serialize_keras_object(self.tuning_mode),
            "class_names": self.class_names,
            "image_converter": keras.saving.serialize_keras_object(self.image_converter),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("clip", "head", "image_converter", "mode", "prompt_learner"):
            if key in config:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if "mode" not in config:  # keras-nc 0.2.0: `prompt_learner`, `train_image_encoder`
            config["mode"] = modes_lib.from_arguments(
                config.pop("prompt_learner", None), config.pop("train_image_encoder", False)
            )
        return cls(initialize=False, **config)


def _check_parts(prompts, class_names, head):
    """Validates `CLIPClassifier`'s arguments; returns the number of classes."""
    if not prompts or any(len(group) != len(prompts[0]) for group in prompts):
        raise ValueError(
            "`prompt_token_ids` must be a non-empty list (one per template) of lists of "
            "token ids, the same number of classes in each."
        )
    num_classes = len(prompts[0])
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"`class_names` has {len(class_names)} names for {num_classes} classes.")
    if isinstance(head, keras.layers.Dense) and head.use_bias:
        raise ValueError(
            "`head` must be a Dense layer without bias (`use_bias=False`): the logits are "
            "the logit scale times inner products with the head rows."
        )
    return num_classes


def _image_embedding_model(clip):
    """CLIP's normalised image embeddings: `clip.get_vision_embeddings`, then the L2 norm."""
    images = keras.Input(tuple(clip.vision_encoder.image_shape), name="images")
    x = keras.layers.UnitNormalization(name="normalize")(clip.get_vision_embeddings(images))
    return keras.Model(images, x, name="clip_image_embedding")


def _coupled_l2(weight_decay):
    """`L2(weight_decay / 2)`: the gradient `weight_decay * w` of SGD's weight decay."""
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
        raise ValueError(f"`weight_decay` must be a number >= 0; received {weight_decay!r}.")
    if weight_decay < 0:
        raise ValueError(f"`weight_decay` must be >= 0; received {weight_decay!r}.")
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None
