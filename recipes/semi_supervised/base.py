"""The base of the semi-supervised trainers: `SemiSupervisedModel`, the supervised baseline.

Each trainer is a `keras_nc.models.CollapseClassifier` (a backbone and a
linear `Dense` head) that overrides `call`, `compute_loss` and
`compute_metrics` only, never a per-backend `train_step`: `fit` works
unchanged (and compiled) on TensorFlow, JAX and PyTorch. The MIR/HDR
regulariser of arXiv 2409.16767 is `keras_nc.losses.InformationRegularizer`
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
work as for any classifier. FixMatch and FreeMatch are in
`recipes.semi_supervised.pseudo_label`.

The exponential moving average of the weights used for evaluation is Keras'
own: the default optimizer has `use_ema=True, ema_momentum=0.999`; pass
`keras.callbacks.SwapEMAWeights()` to `fit`/`evaluate` so that evaluation
uses the averaged weights (at the end of `fit` Keras writes the average into
the model).

Example:

```python
model = SemiSupervisedModel(backbone, num_classes=10)
model.compile()  # SGD 0.03, momentum 0.9, Nesterov, EMA 0.999; cross-entropy; accuracy
model.fit(labelled_batches, steps_per_epoch=50, epochs=4)  # x = {"labeled": images}
```
"""

import keras
from keras import ops

from keras_nc.losses import InformationRegularizer
from keras_nc.metrics import HDR, MIR, CollapseMetric
from keras_nc.models import CollapseClassifier
from recipes.registration import serializable

LABELED = "labeled"
UNLABELED_WEAK = "unlabeled_weak"
UNLABELED_STRONG = "unlabeled_strong"
UNLABELED_LABELS = "unlabeled_labels"


def logits_of(y_pred):
    """The logits of a forward pass (`CollapseClassifier` outputs a dict during fit/evaluate)."""
    return y_pred["logits"] if isinstance(y_pred, dict) else y_pred


@serializable("semi_supervised")
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
            return super().compute_loss(x, y, logits_of(y_pred), sample_weight, training=training)
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
        results = super().compute_metrics(x, y, logits_of(y_pred), sample_weight)
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
