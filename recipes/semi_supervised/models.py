"""Semi-supervised trainers on `CollapseClassifier`: supervised baseline, FixMatch, FreeMatch.

Each trainer is a `keras_nc.models.CollapseClassifier` (a backbone and a
linear `Dense` head) that overrides `call`, `compute_loss` and
`compute_metrics` only, never a per-backend `train_step`: `fit` works
unchanged (and compiled) on TensorFlow, JAX and PyTorch. Construction,
`build`, `extract_features`, the `jit_compile` rule and the configuration are
the base class's; the MIR/HDR regulariser is `keras_nc.losses.InformationRegularizer`
and the `mir`/`hdr` logs are `keras_nc.metrics.MIR`/`HDR`, fed by the base
class with the features and head rows of the labelled batch.

A training batch is `(x, y)` with `x` a dict

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

from keras_nc.deprecation import warn_renamed
from keras_nc.losses import InformationRegularizer
from keras_nc.metrics import HDR, MIR, CollapseMetric
from keras_nc.models import CollapseClassifier
from keras_nc.step import CollapseStep
from recipes.semi_supervised import algorithms

LABELED = "labeled"
UNLABELED_WEAK = "unlabeled_weak"
UNLABELED_STRONG = "unlabeled_strong"
UNLABELED_LABELS = "unlabeled_labels"
# FreeMatch's `fairness_sign`: the factor of `algorithms.saf_loss` in the loss.
FAIRNESS_SIGNS = {"paper": 1.0, "negated": -1.0}
# Former spelling -> current one; accepted with a `DeprecationWarning` for one release.
DEPRECATED_FAIRNESS_SIGNS = {"spec": "negated"}


def fairness_sign_name(fairness_sign, stacklevel=4):
    """The current name of a `fairness_sign` value; a former spelling warns.

    Args:
        fairness_sign: a key of `FAIRNESS_SIGNS` or of `DEPRECATED_FAIRNESS_SIGNS`.
        stacklevel: passed to `warnings.warn` (the caller to blame).

    Returns:
        The key of `FAIRNESS_SIGNS`; any other value is returned unchanged.

    Example:

    ```python
    fairness_sign_name("negated")  # "negated"
    ```
    """
    new = DEPRECATED_FAIRNESS_SIGNS.get(fairness_sign)
    if new is None:
        return fairness_sign
    old_text, new_text = f'fairness_sign="{fairness_sign}"', f'fairness_sign="{new}"'
    warn_renamed(old_text, new_text, stacklevel=stacklevel)
    return new


def _check_number(value, name, low=0.0, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a number; received {value!r}.")
    value = float(value)
    below = value <= low if low_open else value < low
    if below or (high is not None and value > high):
        bounds = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high else "")
        raise ValueError(f"`{name}` must be {bounds}; received {value!r}.")
    return value


def _logits(y_pred):
    """The logits of a forward pass (`CollapseClassifier` outputs a dict during fit/evaluate)."""
    return y_pred["logits"] if isinstance(y_pred, dict) else y_pred


class ConfidentSamplesStep(CollapseStep):
    """The `CollapseStep` of the confident unlabelled samples of a batch.

    Its sample pairing keeps only the samples where `mask` is 1
    (`algorithms.masked_information_ratios`: static shapes, the other rows and
    columns of the Gram matrices zeroed), so that
    `InformationRegularizer(...)(pseudo_labels, features=..., head_weights=...,
    step=ConfidentSamplesStep(...))` is the regulariser of the selected
    sub-batch. With fewer than two selected samples the ratios, hence the
    term, are 0. Only `sample_ratios` (what `InformationRegularizer` reads) is
    restricted to the selection.

    Args:
        pseudo_labels: `(n,)` integer pseudo-labels.
        features: `(n, d)` features (the strong views).
        head_weights: `(C, d)` head weights.
        mask: `(n,)` 0/1 selection (the confidence mask).

    Example:

    ```python
    rows = model.head_weights
    step = ConfidentSamplesStep(pseudo, strong_features, rows, mask)
    term = InformationRegularizer(0.5, 0.5)(pseudo, features=strong_features,
                                            head_weights=rows, step=step)
    ```
    """

    def __init__(self, pseudo_labels, features, head_weights, mask):
        super().__init__(pseudo_labels, features, head_weights)
        self.selection = (pseudo_labels, features, head_weights, mask)

    def sample_ratios(self, center, alpha):
        """`(MIR, HDR)` of the selected samples, `(0, 0)` with fewer than two."""
        labels, features, head_weights, mask = self.selection
        mir, hdr, valid = algorithms.masked_information_ratios(
            features, labels, head_weights, mask, alpha=alpha, center=center
        )
        return valid * mir, valid * hdr


@keras.saving.register_keras_serializable(package="keras_nc")
class SemiSupervisedModel(CollapseClassifier):
    """Supervised-only baseline and base class of the semi-supervised trainers.

    A `keras_nc.models.CollapseClassifier` trained on the labelled batch only
    (`x["labeled"]`, labels `y`): compiled loss (cross-entropy by default) plus
    the optional MIR/HDR regulariser of arXiv 2409.16767
    (`keras_nc.losses.InformationRegularizer(mir_weight, hdr_weight)`,
    sample-head pairing of the labelled batch), added by `compile`.
    Subclasses add an unsupervised term on the unlabelled views.

    Logged per step (epoch means): `loss`, `accuracy` (labelled batch),
    `sup_loss` (cross-entropy of the labelled batch), `mir`, `hdr`
    (`keras_nc.metrics.MIR`/`HDR` of the labelled batch, sample-head pairing)
    when `log_information` or the regulariser is on. Evaluation on plain
    images logs the compiled loss and metrics only.

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
        **kwargs: passed to `CollapseClassifier` (e.g. `name`).

    Attributes:
        regularizer: the `InformationRegularizer(mir_weight, hdr_weight)` of
            the labelled batch and (`unlabeled_information`) of the confident
            unlabelled samples.
        trackers: dict of the `keras.metrics.Mean` logs of training batches
            (`sup_loss`, and the subclasses' own).

    Example:

    ```python
    model = SemiSupervisedModel(backbone, num_classes=10)
    model.compile()
    model.fit(labelled_batches, steps_per_epoch=50, epochs=4)  # x = {"labeled": images}
    ```
    """

    algorithm = "supervised"
    uses_unlabeled = False
    training_logs = ("sup_loss",)

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
        regularizer = InformationRegularizer(mir_weight=mir_weight, hdr_weight=hdr_weight)
        super().__init__(backbone, num_classes, head=head, **kwargs)
        self.regularizer = regularizer
        self.unlabeled_information = bool(unlabeled_information)
        self.log_information = bool(log_information)

    @property
    def mir_weight(self):
        """Weight of the MIR reward (`regularizer.mir_weight`)."""
        return self.regularizer.mir_weight

    @property
    def hdr_weight(self):
        """Weight of the HDR penalty (`regularizer.hdr_weight`)."""
        return self.regularizer.hdr_weight

    @property
    def information_terms(self):
        """Whether the MIR/HDR regularisers are in the loss."""
        return bool(self.mir_weight or self.hdr_weight)

    def build(self, input_shape=None):
        if self.built:
            return
        if isinstance(input_shape, dict):
            input_shape = input_shape[LABELED]
        # Keras locks a model's state once built: the logs and the subclasses'
        # variables are created first.
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.training_logs}
        self._create_state(self.num_classes)
        super().build(input_shape)

    def _create_state(self, num_classes):
        """Creates the subclasses' variables (called by `build`)."""

    # ------------------------------------------------------------------ #
    # Forward pass
    # ------------------------------------------------------------------ #

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
        """Logits of plain images; of a training batch, `CollapseClassifier`'s outputs and more.

        A training batch gives a dict: `"logits"`, `"features"`,
        `"head_weights"` of the labelled batch (what `CollapseClassifier` hands
        to its losses and metrics), and, with unlabelled views,
        `"weak_logits"`, `"strong_logits"`, `"strong_features"`.
        """
        if not isinstance(inputs, dict):
            return super().call(inputs, training=training)
        views = self._views(inputs)
        sizes = [ops.shape(v)[0] for v in views]
        images = ops.concatenate(views, axis=0) if len(views) > 1 else views[0]
        features = self.extract_features(images, training=training)
        logits, head_weights = self.classify(features)
        n_lb = sizes[0]
        outputs = {
            "logits": logits[:n_lb],
            "features": features[:n_lb],
            "head_weights": head_weights,
        }
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
            loss: supervised loss of the labelled batch (or a list, summed);
                `"auto"`: sparse categorical cross-entropy from logits. The
                model's `regularizer` is added when `mir_weight` or
                `hdr_weight` is set (unless `loss` holds an
                `InformationRegularizer` already).
            metrics: metrics of the labelled batch (and of evaluation);
                `"auto"`: accuracy. `keras_nc.metrics.MIR()` and `HDR()` are
                added when `log_information` or the regulariser is on (unless
                metrics named `mir`/`hdr` are there already); like every
                collapse metric they log training batches only.
            **kwargs: passed to `CollapseClassifier.compile` (its
                `jit_compile="auto"` rule: `False` with TensorFlow on a CPU).
        """
        if optimizer == "auto":
            optimizer = keras.optimizers.SGD(
                learning_rate=0.03, momentum=0.9, nesterov=True, use_ema=True, ema_momentum=0.999
            )
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        losses = list(loss) if isinstance(loss, (list, tuple)) else [loss]
        if self.information_terms and not any(
            isinstance(item, InformationRegularizer) for item in losses
        ):
            losses.append(self.regularizer)
        metrics = list(metrics or [])
        if self.log_information or self.information_terms:
            names = {item if isinstance(item, str) else item.name for item in metrics}
            metrics += [metric for metric in (MIR(), HDR()) if metric.name not in names]
        # Evaluation on plain images feeds none of the collapse metrics: their logs are left out.
        self.collapse_metric_names = tuple(
            item.name for item in metrics if isinstance(item, CollapseMetric)
        )
        super().compile(optimizer=optimizer, loss=losses, metrics=metrics, **kwargs)

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

    def _track(self, name, value, sample_weight=None):
        value = ops.stop_gradient(value)
        if sample_weight is not None:
            sample_weight = ops.stop_gradient(sample_weight)
        self.trackers[name].update_state(value, sample_weight=sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(x, dict):
            # Plain images (evaluation): the compiled loss of the logits, as for any classifier.
            return super().compute_loss(x, y, _logits(y_pred), sample_weight, training=training)
        # Compiled loss (cross-entropy, the regulariser) of the labelled batch plus weight decay.
        total = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        sup = keras.losses.sparse_categorical_crossentropy(
            labels, y_pred["logits"], from_logits=True
        )
        self._track("sup_loss", ops.mean(sup))
        if self.uses_unlabeled:
            total = total + ops.cast(self._unlabeled_loss(x, y_pred), total.dtype)
        return total

    def _unlabeled_loss(self, x, y_pred):
        raise NotImplementedError

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(x, dict):  # a training batch: every log
            return super().compute_metrics(x, y, y_pred, sample_weight)
        # Evaluation: the losses and compiled metrics of the logits, not the training logs.
        results = super().compute_metrics(x, y, _logits(y_pred), sample_weight)
        left_out = set(self.training_logs) | set(getattr(self, "collapse_metric_names", ()))
        return {k: v for k, v in results.items() if k not in left_out}

    # ------------------------------------------------------------------ #
    # Serialisation
    # ------------------------------------------------------------------ #

    def get_config(self):
        return {
            **super().get_config(),
            "mir_weight": self.mir_weight,
            "hdr_weight": self.hdr_weight,
            "unlabeled_information": self.unlabeled_information,
            "log_information": self.log_information,
        }


class _PseudoLabelModel(SemiSupervisedModel):
    """Shared unlabelled term: masked cross-entropy of the strong view on hard pseudo-labels."""

    uses_unlabeled = True
    training_logs = (
        *SemiSupervisedModel.training_logs,
        "unsup_loss",
        "mask_ratio",
        "pseudo_accuracy",
        "threshold",
    )

    def __init__(self, backbone, num_classes, lambda_u=1.0, **kwargs):
        super().__init__(backbone, num_classes, **kwargs)
        self.lambda_u = _check_number(lambda_u, "lambda_u")

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
            features, head_weights = y_pred["strong_features"], y_pred["head_weights"]
            confident = ConfidentSamplesStep(pseudo, features, head_weights, mask)
            total = total + self.regularizer(
                pseudo, features=features, head_weights=head_weights, step=confident
            )
        self._track("unsup_loss", unsup)
        self._track("mask_ratio", ops.mean(mask))
        self._track("threshold", threshold)
        if isinstance(x, dict) and UNLABELED_LABELS in x:
            truth = ops.reshape(ops.cast(x[UNLABELED_LABELS], "int32"), (-1,))
            known = ops.cast(truth >= 0, mask.dtype)
            correct = ops.cast(ops.equal(pseudo, truth), mask.dtype)
            self._track("pseudo_accuracy", correct, sample_weight=mask * known)
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
        fairness_sign: `"paper"` (default): minimise `algorithms.saf_loss`,
            the sign of FreeMatch's paper (arXiv 2205.07246, `L_f = -H`) and
            USB's code; `"negated"`: minimise its opposite, the cross-entropy
            `H = -sum p log q` itself. The logged `fairness_loss` is the term
            minimised.
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
    training_logs = (*_PseudoLabelModel.training_logs, "fairness_loss")

    def __init__(
        self,
        backbone,
        num_classes,
        lambda_u=1.0,
        lambda_f=0.01,
        sat_momentum=0.999,
        fairness_sign="paper",
        **kwargs,
    ):
        super().__init__(backbone, num_classes, lambda_u=lambda_u, **kwargs)
        self.lambda_f = _check_number(lambda_f, "lambda_f")
        self.sat_momentum = _check_number(sat_momentum, "sat_momentum", 0.0, 1.0)
        if self.sat_momentum >= 1.0:
            raise ValueError(f"`sat_momentum` must be < 1; received {sat_momentum!r}.")
        fairness_sign = fairness_sign_name(fairness_sign)
        if fairness_sign not in FAIRNESS_SIGNS:
            raise ValueError(
                f"`fairness_sign` must be one of {tuple(FAIRNESS_SIGNS)}; "
                f"received {fairness_sign!r}."
            )
        self.fairness_sign = fairness_sign

    def _create_state(self, num_classes):
        uniform = keras.initializers.Constant(1.0 / num_classes)
        self.time_p = self.add_weight(shape=(), initializer=uniform, trainable=False, name="time_p")
        self.p_model = self.add_weight(
            shape=(num_classes,), initializer=uniform, trainable=False, name="p_model"
        )
        self.label_hist = self.add_weight(
            shape=(num_classes,), initializer=uniform, trainable=False, name="label_hist"
        )

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
        fairness = FAIRNESS_SIGNS[self.fairness_sign] * fairness
        self._track("fairness_loss", fairness)
        return self.lambda_f * fairness

    def get_config(self):
        return {
            **super().get_config(),
            "lambda_f": self.lambda_f,
            "sat_momentum": self.sat_momentum,
            "fairness_sign": self.fairness_sign,
        }


ALGORITHMS = {
    "supervised": SemiSupervisedModel,
    "fixmatch": FixMatch,
    "freematch": FreeMatch,
}
