"""Semi-supervised trainers as Keras models: supervised baseline, FixMatch, FreeMatch.

Each trainer is a `keras.Model` (a backbone and a linear `Dense` head) that
overrides `call`, `compute_loss` and `compute_metrics` only, never a
per-backend `train_step`: `fit` works unchanged (and compiled) on TensorFlow,
JAX and PyTorch. A training batch is `(x, y)` with `x` a dict

- `"labeled"`: `(B, H, W, C)` weak views of the labelled images (labels `y`),
- `"unlabeled_weak"`, `"unlabeled_strong"`: `(uratio * B, H, W, C)` weak and
  strong views of the same unlabelled images,
- `"unlabeled_labels"` (optional): their true labels, `-1` where unknown, used
  only to log the pseudo-label accuracy;

the three image batches go through the network as one concatenated batch (as
in USB). Given plain images, `call` returns logits: `predict` and `evaluate`
work as for any classifier.

The FreeMatch state (`time_p`, `p_model`, `label_hist`) lives in
non-trainable variables, saved with the model and restored on resume. The
exponential moving average of the weights used for evaluation is Keras' own:
the default optimizer has `use_ema=True, ema_momentum=0.999`; pass
`keras.callbacks.SwapEMAWeights()` to `fit`/`evaluate` so that evaluation
uses the averaged weights (at the end of `fit` Keras writes the average into
the model).

Example:

```python
backbone = build_backbone("wrn28_2", input_shape=(28, 28, 1), width=0.25)
model = FreeMatch(backbone, num_classes=10)
model.compile()  # SGD 0.03, momentum 0.9, Nesterov, EMA 0.999; cross-entropy; accuracy
model.fit(train, steps_per_epoch=100, epochs=10, validation_data=test,
          callbacks=[keras.callbacks.SwapEMAWeights()])
```
"""

import keras
from keras import ops

from keras_nc import ops as nc_ops
from recipes.semi_supervised import algorithms

LABELED = "labeled"
UNLABELED_WEAK = "unlabeled_weak"
UNLABELED_STRONG = "unlabeled_strong"
UNLABELED_LABELS = "unlabeled_labels"


def _check_number(value, name, low=0.0, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a number; received {value!r}.")
    value = float(value)
    below = value <= low if low_open else value < low
    if below or (high is not None and value > high):
        bounds = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high else "")
        raise ValueError(f"`{name}` must be {bounds}; received {value!r}.")
    return value


def _tensorflow_on_cpu():
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU")


@keras.saving.register_keras_serializable(package="keras_nc")
class SemiSupervisedModel(keras.Model):
    """Supervised-only baseline and base class of the semi-supervised trainers.

    Trains on the labelled batch only (`x["labeled"]`, labels `y`): compiled
    loss (cross-entropy by default) plus the optional MIR/HDR regularisers of
    SPEC 2.7 (`-mir_weight * MIR + hdr_weight * HDR`, sample-head pairing of
    the labelled batch, from `keras_nc.ops`). Subclasses add an unsupervised
    term on the unlabelled views.

    Logged per step (epoch means): `loss`, `accuracy` (labelled batch),
    `sup_loss` (cross-entropy of the labelled batch), `mir`, `hdr` (labelled
    batch, sample-head pairing) when `log_information`.

    Args:
        backbone: a Keras model from images to features `(n, d)` (or feature
            maps, globally average-pooled).
        num_classes: number of classes `C >= 2`.
        head: optional `keras.layers.Dense(num_classes)` head (default: a new
            one named `"head"`).
        mir_weight: weight of the MIR reward, `>= 0` (default 0: off).
        hdr_weight: weight of the HDR penalty, `>= 0` (default 0: off).
        unlabeled_information: also apply the MIR/HDR terms to the confident
            unlabelled samples (strong-view features, pseudo-labels; only in
            the semi-supervised subclasses).
        log_information: log `mir` and `hdr` of the labelled batch (one small
            eigendecomposition per step).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    ```python
    model = SemiSupervisedModel(backbone, num_classes=10)
    model.compile()
    model.fit(labelled_batches, steps_per_epoch=50, epochs=4)  # x = {"labeled": images}
    ```
    """

    algorithm = "supervised"
    uses_unlabeled = False

    def __init__(
        self,
        backbone,
        num_classes,
        head=None,
        mir_weight=0.0,
        hdr_weight=0.0,
        unlabeled_information=False,
        log_information=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2; received {num_classes!r}.")
        if not isinstance(backbone, keras.layers.Layer):
            raise ValueError(f"`backbone` must be a Keras model or layer; received {backbone!r}.")
        if head is None:
            head = keras.layers.Dense(num_classes, name="head")
        if not isinstance(head, keras.layers.Dense) or head.units != num_classes:
            raise ValueError(
                f"`head` must be a keras.layers.Dense with num_classes={num_classes} units; "
                f"received {head!r}."
            )
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.mir_weight = _check_number(mir_weight, "mir_weight")
        self.hdr_weight = _check_number(hdr_weight, "hdr_weight")
        self.unlabeled_information = bool(unlabeled_information)
        self.log_information = bool(log_information)
        self.sup_loss_tracker = keras.metrics.Mean(name="sup_loss")
        if self.log_information or self.information_terms:
            self.mir_tracker = keras.metrics.Mean(name="mir")
            self.hdr_tracker = keras.metrics.Mean(name="hdr")
        self._create_state(num_classes)  # before `build`, which locks the state
        inputs = getattr(backbone, "inputs", None)
        if inputs and len(inputs) == 1:
            self.build(tuple(inputs[0].shape))

    def _create_state(self, num_classes):
        """Creates the subclasses' variables and metrics (called before `build`)."""

    @property
    def information_terms(self):
        """Whether the MIR/HDR regularisers are in the loss."""
        return bool(self.mir_weight or self.hdr_weight)

    # ------------------------------------------------------------------ #
    # Forward pass
    # ------------------------------------------------------------------ #

    def build(self, input_shape=None):
        if self.built:
            return
        if isinstance(input_shape, dict):
            input_shape = input_shape[LABELED]
        if input_shape is not None and not getattr(self.backbone, "built", True):
            self.backbone.build(input_shape)
        if not self.head.built:
            outputs = getattr(self.backbone, "outputs", None)
            if outputs:
                shape = tuple(outputs[0].shape)
            else:
                shape = tuple(self.backbone.compute_output_shape(input_shape))
            self.head.build((shape[0], shape[-1]))
        self.built = True

    def extract_features(self, images, training=False):
        """Pooled backbone features `(n, d)`."""
        features = self.backbone(images, training=training)
        if len(features.shape) > 2:
            features = ops.mean(features, axis=tuple(range(1, len(features.shape) - 1)))
        return features

    def _views(self, inputs):
        if not isinstance(inputs, dict) or LABELED not in inputs:
            raise ValueError(
                f"Training batches of {type(self).__name__} must be dicts with a {LABELED!r} "
                f"entry; received {type(inputs).__name__}."
            )
        views = [inputs[LABELED]]
        if self.uses_unlabeled:
            missing = [k for k in (UNLABELED_WEAK, UNLABELED_STRONG) if k not in inputs]
            if missing:
                raise ValueError(
                    f"{type(self).__name__} needs {UNLABELED_WEAK!r} and {UNLABELED_STRONG!r} "
                    f"in its training batches; missing {missing}."
                )
            views += [inputs[UNLABELED_WEAK], inputs[UNLABELED_STRONG]]
        return views

    def call(self, inputs, training=None):
        if not isinstance(inputs, dict):
            return self.head(self.extract_features(inputs, training=training))
        views = self._views(inputs)
        sizes = [ops.shape(v)[0] for v in views]
        images = ops.concatenate(views, axis=0) if len(views) > 1 else views[0]
        features = self.extract_features(images, training=training)
        logits = self.head(features)
        n_lb = sizes[0]
        outputs = {"labeled_logits": logits[:n_lb], "labeled_features": features[:n_lb]}
        if len(views) > 1:
            n_u = sizes[1]
            outputs["weak_logits"] = logits[n_lb : n_lb + n_u]
            outputs["strong_logits"] = logits[n_lb + n_u :]
            outputs["strong_features"] = features[n_lb + n_u :]
        return outputs

    def compute_output_spec(self, inputs, training=None):
        # Keras builds compiled losses and metrics from the symbolic output:
        # they see the logits of the labelled batch.
        if isinstance(inputs, dict):
            inputs = inputs[LABELED]
        return super().compute_output_spec(inputs, training=training)

    # ------------------------------------------------------------------ #
    # Compilation, loss and metrics
    # ------------------------------------------------------------------ #

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Configures the model for training, with USB's defaults.

        Args:
            optimizer: `"auto"`: SGD, learning rate 0.03, momentum 0.9,
                Nesterov, with an exponential moving average of the weights
                (`use_ema=True, ema_momentum=0.999`) for evaluation (use
                `keras.callbacks.SwapEMAWeights`). Or any Keras optimizer.
            loss: supervised loss of the labelled batch; `"auto"`: sparse
                categorical cross-entropy from logits.
            metrics: metrics of the labelled batch (and of evaluation);
                `"auto"`: accuracy.
            **kwargs: passed to `keras.Model.compile`. With TensorFlow on a CPU
                and MIR/HDR computed, `jit_compile="auto"` means `False`
                (XLA's CPU `eigh` is slow; see the Performance page).
        """
        if optimizer == "auto":
            optimizer = keras.optimizers.SGD(
                learning_rate=0.03, momentum=0.9, nesterov=True, use_ema=True, ema_momentum=0.999
            )
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        information = self.log_information or self.information_terms
        if information and kwargs.get("jit_compile", "auto") == "auto" and _tensorflow_on_cpu():
            kwargs["jit_compile"] = False
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # Keras skips an overridden `compile` on load unless this is defined.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if hasattr(self, "optimizer") and self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`; the weights end as their average when the optimizer has `use_ema`.

        Keras' `finalize_variable_values` assigns the average to the weights at
        the end of `fit`; on JAX both variables then share one buffer, which
        the next compiled step would donate twice (a second `fit` fails). The
        weights are given their own copy here.
        """
        history = super().fit(*args, **kwargs)
        if getattr(getattr(self, "optimizer", None), "use_ema", False):
            for variable in self.trainable_variables:
                variable.assign(ops.copy(variable.value))
        return history

    def _information(self, features, labels):
        """`(mir, hdr)` of the sample-head pairing of a batch (keras_nc.ops)."""
        head_weights = ops.transpose(self.head.kernel)
        return nc_ops.sample_head_ratios(features, labels, head_weights, center=True)

    def _track(self, tracker, value, sample_weight=None):
        value = ops.stop_gradient(value)
        if sample_weight is not None:
            sample_weight = ops.stop_gradient(sample_weight)
        tracker.update_state(value, sample_weight=sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict):  # evaluation on plain images
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        logits = y_pred["labeled_logits"]
        # Compiled loss (cross-entropy) of the labelled batch plus weight decay.
        total = super().compute_loss(x, y, logits, sample_weight, training=training)
        labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        sup = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        self._track(self.sup_loss_tracker, ops.mean(sup))
        if self.log_information or self.information_terms:
            features = y_pred["labeled_features"]
            if not self.information_terms:
                features = ops.stop_gradient(features)
            mir, hdr = self._information(features, labels)
            if self.information_terms:
                total = total + ops.cast(self.hdr_weight * hdr - self.mir_weight * mir, total.dtype)
            self._track(self.mir_tracker, mir)
            self._track(self.hdr_tracker, hdr)
        if self.uses_unlabeled:
            total = total + ops.cast(self._unlabeled_loss(x, y_pred), total.dtype)
        return total

    def _unlabeled_loss(self, x, y_pred):
        raise NotImplementedError

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        training = isinstance(y_pred, dict)
        logits = y_pred["labeled_logits"] if training else y_pred
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, logits, sample_weight=sample_weight)
        results = self.get_metrics_result()
        if training:
            return results
        # Evaluation: the losses and compiled metrics, not the training trackers.
        own = {m.name for m in self._metrics}
        return {k: v for k, v in results.items() if k not in own}

    # ------------------------------------------------------------------ #
    # Serialisation
    # ------------------------------------------------------------------ #

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "head": keras.saving.serialize_keras_object(self.head),
            "mir_weight": self.mir_weight,
            "hdr_weight": self.hdr_weight,
            "unlabeled_information": self.unlabeled_information,
            "log_information": self.log_information,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        config["head"] = keras.saving.deserialize_keras_object(config["head"])
        return cls(**config)


class _PseudoLabelModel(SemiSupervisedModel):
    """Shared unlabelled term: masked cross-entropy of the strong view on hard pseudo-labels."""

    uses_unlabeled = True

    def __init__(self, backbone, num_classes, lambda_u=1.0, **kwargs):
        super().__init__(backbone, num_classes, **kwargs)
        self.lambda_u = _check_number(lambda_u, "lambda_u")

    def _create_state(self, num_classes):
        self.unsup_loss_tracker = keras.metrics.Mean(name="unsup_loss")
        self.mask_ratio_tracker = keras.metrics.Mean(name="mask_ratio")
        self.pseudo_accuracy_tracker = keras.metrics.Mean(name="pseudo_accuracy")
        self.threshold_tracker = keras.metrics.Mean(name="threshold")

    def _mask(self, probs):
        """`(mask, pseudo_labels, threshold, state)` of the weak-view probabilities."""
        raise NotImplementedError

    def _extra_loss(self, probs_strong, mask, state):
        return None

    def _unlabeled_loss(self, x, y_pred):
        probs = ops.softmax(ops.stop_gradient(y_pred["weak_logits"]), axis=-1)
        mask, pseudo, threshold, state = self._mask(probs)
        mask = ops.stop_gradient(mask)
        strong_logits = y_pred["strong_logits"]
        unsup = algorithms.masked_cross_entropy(strong_logits, pseudo, mask)
        total = self.lambda_u * unsup
        extra = self._extra_loss(ops.softmax(strong_logits, axis=-1), mask, state)
        if extra is not None:
            total = total + extra
        if self.unlabeled_information and self.information_terms:
            mir, hdr, valid = algorithms.masked_information_ratios(
                y_pred["strong_features"], pseudo, ops.transpose(self.head.kernel), mask
            )
            total = total + valid * (self.hdr_weight * hdr - self.mir_weight * mir)
        self._track(self.unsup_loss_tracker, unsup)
        self._track(self.mask_ratio_tracker, ops.mean(mask))
        self._track(self.threshold_tracker, threshold)
        if isinstance(x, dict) and UNLABELED_LABELS in x:
            truth = ops.reshape(ops.cast(x[UNLABELED_LABELS], "int32"), (-1,))
            known = ops.cast(truth >= 0, mask.dtype)
            correct = ops.cast(ops.equal(pseudo, truth), mask.dtype)
            self._track(self.pseudo_accuracy_tracker, correct, sample_weight=mask * known)
        return total

    def get_config(self):
        return {**super().get_config(), "lambda_u": self.lambda_u}


@keras.saving.register_keras_serializable(package="keras_nc")
class FixMatch(_PseudoLabelModel):
    """FixMatch (Sohn et al. 2020): fixed-threshold pseudo-labelling with weak/strong views.

    Per step: pseudo-labels `argmax p` of the weak view (no gradient), mask
    `max p >= threshold`, and `L = L_sup + lambda_u * mean(mask * CE(strong,
    pseudo))` (`algorithms.fixmatch_mask`, `algorithms.masked_cross_entropy`),
    plus the optional MIR/HDR terms.

    Logged besides the base class's: `unsup_loss`, `mask_ratio` (fraction of
    unlabelled samples above the threshold), `pseudo_accuracy` (accuracy of
    the masked pseudo-labels, where `x["unlabeled_labels"]` knows the truth),
    `threshold`.

    Args:
        backbone: see `SemiSupervisedModel`.
        num_classes: number of classes.
        threshold: confidence threshold in `(0, 1]` (default 0.95).
        lambda_u: weight of the unsupervised loss, `>= 0` (default 1).
        **kwargs: `head`, `mir_weight`, `hdr_weight`, `unlabeled_information`,
            `log_information`, `name`: see `SemiSupervisedModel`.

    Example:

    ```python
    model = FixMatch(backbone, num_classes=10, threshold=0.95)
    model.compile()
    model.fit(train, steps_per_epoch=100, epochs=10,
              callbacks=[keras.callbacks.SwapEMAWeights()])
    ```
    """

    algorithm = "fixmatch"

    def __init__(self, backbone, num_classes, threshold=0.95, lambda_u=1.0, **kwargs):
        super().__init__(backbone, num_classes, lambda_u=lambda_u, **kwargs)
        self.threshold = _check_number(threshold, "threshold", 0.0, 1.0, low_open=True)

    def _mask(self, probs):
        mask, pseudo = algorithms.fixmatch_mask(probs, self.threshold)
        return mask, pseudo, ops.convert_to_tensor(self.threshold, probs.dtype), None

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="keras_nc")
class FreeMatch(_PseudoLabelModel):
    """FreeMatch (Wang et al. 2023): self-adaptive thresholds and fairness.

    Per step, with weak-view probabilities `p` (no gradient): the SAT state
    is updated (`algorithms.sat_update`: EMA with momentum `sat_momentum` of
    `time_p`, `p_model`, `label_hist`), the mask is `max p >= time_p *
    (p_model / max p_model)[argmax p]` (`algorithms.sat_mask`), and

        L = L_sup + lambda_u * mean(mask * CE(strong, argmax p)) + lambda_f * L_f

    with the self-adaptive fairness loss `L_f` (`algorithms.saf_loss`) on
    the masked strong-view probabilities. The state starts at `1/C` and lives
    in non-trainable variables (`time_p`, `p_model`, `label_hist`): it is
    saved with the model and restored by `BackupAndRestore`.

    Logged besides FixMatch's: `fairness_loss`; `threshold` is the global
    `time_p`.

    Args:
        backbone: see `SemiSupervisedModel`.
        num_classes: number of classes.
        lambda_u: weight of the unsupervised loss, `>= 0` (default 1).
        lambda_f: weight of the fairness loss, `>= 0` (default 0.01; USB uses
            0.001 on CIFAR-10).
        sat_momentum: EMA momentum of the SAT state in `[0, 1)` (default 0.999).
        **kwargs: `head`, `mir_weight`, `hdr_weight`, `unlabeled_information`,
            `log_information`, `name`: see `SemiSupervisedModel`.

    Example:

    ```python
    model = FreeMatch(backbone, num_classes=10, lambda_f=0.01)
    model.compile()
    model.fit(train, steps_per_epoch=100, epochs=10)
    float(model.time_p.numpy())  # global self-adaptive threshold
    ```
    """

    algorithm = "freematch"

    def __init__(
        self, backbone, num_classes, lambda_u=1.0, lambda_f=0.01, sat_momentum=0.999, **kwargs
    ):
        super().__init__(backbone, num_classes, lambda_u=lambda_u, **kwargs)
        self.lambda_f = _check_number(lambda_f, "lambda_f")
        self.sat_momentum = _check_number(sat_momentum, "sat_momentum", 0.0, 1.0)
        if self.sat_momentum >= 1.0:
            raise ValueError(f"`sat_momentum` must be < 1; received {sat_momentum!r}.")

    def _create_state(self, num_classes):
        super()._create_state(num_classes)
        uniform = keras.initializers.Constant(1.0 / num_classes)
        self.time_p = self.add_weight(shape=(), initializer=uniform, trainable=False, name="time_p")
        self.p_model = self.add_weight(
            shape=(num_classes,), initializer=uniform, trainable=False, name="p_model"
        )
        self.label_hist = self.add_weight(
            shape=(num_classes,), initializer=uniform, trainable=False, name="label_hist"
        )
        self.fairness_tracker = keras.metrics.Mean(name="fairness_loss")

    def _mask(self, probs):
        time_p, p_model, label_hist = algorithms.sat_update(
            probs, self.time_p, self.p_model, self.label_hist, self.sat_momentum
        )
        self.time_p.assign(ops.cast(time_p, self.time_p.dtype))
        self.p_model.assign(ops.cast(p_model, self.p_model.dtype))
        self.label_hist.assign(ops.cast(label_hist, self.label_hist.dtype))
        mask, _ = algorithms.sat_mask(probs, time_p, p_model)
        pseudo = ops.cast(ops.argmax(probs, axis=-1), "int32")
        return mask, pseudo, time_p, (p_model, label_hist)

    def _extra_loss(self, probs_strong, mask, state):
        p_model, label_hist = state
        fairness = algorithms.saf_loss(probs_strong, mask, p_model, label_hist)
        self._track(self.fairness_tracker, fairness)
        return self.lambda_f * fairness

    def get_config(self):
        return {
            **super().get_config(),
            "lambda_f": self.lambda_f,
            "sat_momentum": self.sat_momentum,
        }


ALGORITHMS = {
    "supervised": SemiSupervisedModel,
    "fixmatch": FixMatch,
    "freematch": FreeMatch,
}
