"""The collapse losses and metrics of a compiled `CollapseClassifier`, and how a step feeds them.

`compile` takes ordinary Keras losses and metrics (fed the logits) mixed with
collapse ones (`keras_nc.losses.CollapseLoss`, `keras_nc.metrics.CollapseMetric`,
fed labels, features and head weights). `split_compile_arguments` separates
them: Keras compiles the ordinary ones, and a `CollapseTerms` holds the
collapse ones, which the model's `compute_loss` and `compute_metrics` route
through `add_losses` and `update_state`, one `keras_nc.step.CollapseStep`
shared per step. Their values are listed in `model.metrics` through one
`CollapseMetrics` container, as Keras lists its compiled metrics.

Example:

>>> import keras
>>> from keras_nc.metrics import MIR
>>> loss, metrics, collapse_losses, collapse_metrics = split_compile_arguments(
...     "sparse_categorical_crossentropy", ["accuracy", MIR()])
>>> loss.get_config()["from_logits"], metrics, [m.name for m in collapse_metrics]
(True, ['accuracy'], ['mir'])
"""

import contextlib
import inspect
import re
import warnings

import keras
from keras import ops

from keras_nc import compat
from keras_nc.losses import CollapseLoss
from keras_nc.metrics import ClassStatistics, CollapseMetric
from keras_nc.step import CollapseStep


def split_compile_arguments(loss, metrics):
    """`(loss, metrics, collapse_losses, collapse_metrics)`: what Keras compiles, what it does not.

    Args:
        loss: a loss, or a list whose terms are summed; `"auto"`: sparse
            categorical cross-entropy from logits.
        metrics: a list of metrics; `"auto"`: accuracy.

    Returns:
        The ordinary loss for Keras (the sum of the ordinary terms, each read
        from logits; None without any), the ordinary metrics, and the lists of
        collapse losses and collapse metrics.
    """
    if isinstance(loss, str) and loss == "auto":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if isinstance(metrics, str) and metrics == "auto":
        # Keras resolves "accuracy" from the labels' shape at the first batch:
        # sparse labels (n,) or one-hot labels (n, C) alike.
        metrics = ["accuracy"]
    losses = list(loss) if isinstance(loss, (list, tuple)) else [loss]
    collapse_losses = [item for item in losses if isinstance(item, CollapseLoss)]
    plain_losses = [logits_loss(item) for item in losses if not isinstance(item, CollapseLoss)]
    metrics = list(metrics or [])
    _check_unique_names(metrics)
    collapse_metrics = [item for item in metrics if isinstance(item, CollapseMetric)]
    plain_metrics = [item for item in metrics if not isinstance(item, CollapseMetric)]
    plain_loss = None
    if len(plain_losses) == 1:
        plain_loss = plain_losses[0]
    elif plain_losses:
        plain_loss = _SumOfLosses(plain_losses)
    return plain_loss, plain_metrics, collapse_losses, collapse_metrics


def split_outputs(y_pred):
    """`(logits, features, head_weights)` of a step's outputs (features None when only logits)."""
    if isinstance(y_pred, dict):
        return y_pred["logits"], y_pred["features"], y_pred["head_weights"]
    return y_pred, None, None


class CollapseTerms:
    """The collapse losses and metrics of one `compile`, with their shared state and container.

    Metrics that read class statistics (`NC1`, `MIR(pairing="class")`, ...)
    share one `ClassStatistics` accumulator, so a step adds its batch once and
    the epoch measures are computed once; each collapse loss's term is logged
    as `<loss name>_loss`, as Keras logs the terms of a multi-output loss.

    Args:
        losses: the `CollapseLoss` instances.
        metrics: the `CollapseMetric` instances.
        num_classes: number of classes `C`.
        read_head_weights: callable returning the model's current head weights
            `(C, d)`, which the class statistics read at the end of an epoch.
    """

    def __init__(self, losses=(), metrics=(), num_classes=None, read_head_weights=None):
        self.losses = list(losses)
        self.metrics = list(metrics)
        readers = [m for m in self.metrics if getattr(m, "uses_class_statistics", False)]
        self.statistics = None
        if readers:
            self.statistics = ClassStatistics(
                num_classes,
                second_moment=any(m.needs_second_moment for m in readers),
                name="class_statistics",
            )
            self.statistics.read_head_from(read_head_weights)
            for metric in readers:
                metric.share_statistics(self.statistics)
        self.loss_trackers = [keras.metrics.Mean(name=f"{item.name}_loss") for item in losses]
        for tracker in self.loss_trackers:
            compat.set_metric_direction(tracker, "down")
        self.container = None
        if self.metrics or self.loss_trackers:
            statistics = [self.statistics] if self.statistics is not None else []
            self.container = CollapseMetrics(statistics + self.loss_trackers + self.metrics)

    def __bool__(self):
        return bool(self.losses or self.metrics)

    def build(self, num_classes, feature_dim):
        """Sizes the collapse metrics' state `(C, d)` (before any step is traced)."""
        for metric in self.metrics:
            metric.build_for(num_classes, feature_dim)

    def add_losses(self, y, y_pred, sample_weight, total, sample_scope="global"):
        """`total` plus the collapse losses of the step's outputs `y_pred`.

        The terms and the step's shared values are handed on to `update_state`
        through `y_pred` (keys `collapse_loss_terms`, `collapse_cache`): the only
        path out of JAX's differentiated function (its aux output).
        """
        _, features, head_weights = split_outputs(y_pred)
        if not self.losses or features is None:
            return total
        step = CollapseStep(y, features, head_weights, sample_weight, sample_scope=sample_scope)
        terms = [
            loss(
                y,
                features=features,
                head_weights=head_weights,
                sample_weight=sample_weight,
                step=step,
            )
            for loss in self.losses
        ]
        y_pred["collapse_cache"] = step.cache
        y_pred["collapse_loss_terms"] = [ops.cast(term, "float32") for term in terms]
        extra = terms[0]
        for term in terms[1:]:
            extra = extra + term
        return extra if total is None else total + ops.cast(extra, total.dtype)

    def update_state(self, y, y_pred, sample_weight=None, sample_scope="global"):
        """Updates the loss-term trackers and the collapse metrics with one step's outputs."""
        logits, features, head_weights = split_outputs(y_pred)
        terms = y_pred.get("collapse_loss_terms") if isinstance(y_pred, dict) else None
        if terms is not None:
            rows = ops.cast(ops.shape(logits)[0], "float32")
            for tracker, term in zip(self.loss_trackers, terms, strict=True):
                tracker.update_state(term, sample_weight=rows)
        if features is None or not self.metrics:
            return
        # Shared by the metrics, with what the losses computed this step.
        cache = y_pred.get("collapse_cache")
        step = CollapseStep(
            y, features, head_weights, sample_weight, cache=cache, sample_scope=sample_scope
        )
        inputs = {"features": features, "head_weights": head_weights, "logits": logits}
        for metric in self.metrics:
            metric.update_state(y, sample_weight=sample_weight, step=step, **inputs)

    def in_step(self):
        """A context for reading results inside a step: the epoch measures report their last value.

        Keras reads the results again outside the step at the end of the epoch
        (and of `evaluate`), where they are computed once from the whole epoch.
        """
        if self.statistics is None:
            return contextlib.nullcontext()
        return self.statistics.deferred()


class CollapseMetrics(compat.MetricsList):
    """The collapse metrics and loss-term trackers of a `CollapseClassifier`, as one container.

    Listed in `model.metrics` like Keras' own compiled metrics, so that Keras'
    callbacks read each metric's direction (`EarlyStopping(monitor="val_mir")`
    in `mode="auto"`) and `model.metrics_names` lists their names. Updated by
    the model's `compute_metrics`, never by Keras.
    """

    def __init__(self, metrics, name="collapse_metrics"):
        super().__init__(metrics, name=name)
        for metric in metrics:
            direction = getattr(metric, "direction", None)
            if direction is not None:
                compat.set_metric_direction(metric, direction)

    def update_state(self, *args, **kwargs):
        raise NotImplementedError("CollapseClassifier.compute_metrics updates these metrics.")

    def result(self):
        results = {}
        for metric in self.metrics:
            value = metric.result()
            if isinstance(value, dict):
                results.update(value)
            else:
                results[metric.name] = value
        return results


def metric_names(metrics):
    """The names of the values `evaluate()` returns for `metrics` (containers flattened)."""
    names = []
    for metric in metrics:
        if isinstance(metric, (compat.CompileMetrics, compat.MetricsList)):
            names += [m.name for m in metric.metrics if not isinstance(m, ClassStatistics)]
        else:
            names.append(metric.name)
    return names


def _snake_case(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# Keras' loss classes that read logits with `from_logits=True`, by function name.
_LOGITS_LOSSES = {
    _snake_case(name): getattr(keras.losses, name)
    for name in dir(keras.losses)
    if name[:1].isupper()
    and isinstance(getattr(keras.losses, name), type)
    and "from_logits" in inspect.signature(getattr(keras.losses, name).__init__).parameters
}


def logits_loss(loss):
    """A loss of the classifier's logits: strings resolved with `from_logits=True`.

    `CollapseClassifier` outputs logits. A string names a Keras loss whose
    default reads probabilities; it is resolved, as `keras.losses.get` would,
    with `from_logits=True`, or refused when that loss has no logits form. A loss
    object is used as given, with a warning when it says `from_logits=False`.
    """
    if loss is None:
        raise ValueError("`loss` entries must be losses; received None.")
    if isinstance(loss, str):
        resolved = keras.losses.get(loss)
        function = getattr(resolved, "fn", resolved)
        loss_class = _LOGITS_LOSSES.get(getattr(function, "__name__", ""))
        if loss_class is None:
            raise ValueError(
                f"`loss={loss!r}` reads probabilities or values, but a CollapseClassifier "
                "outputs logits. Use a cross-entropy (`'sparse_categorical_crossentropy'`, "
                "`'categorical_crossentropy'`, ... are resolved with `from_logits=True`), or "
                "pass a loss object to apply it to the logits on purpose."
            )
        return loss_class(from_logits=True)
    config = loss.get_config() if isinstance(loss, keras.losses.Loss) else {}
    if config.get("from_logits") is False:
        warnings.warn(
            f"The loss {loss.name!r} has `from_logits=False`, but a CollapseClassifier "
            "outputs logits: pass `from_logits=True` (the loss reads the logits as "
            "probabilities otherwise).",
            stacklevel=4,
        )
    return loss


def _check_unique_names(metrics):
    """Two metrics with one name would log one value: refuse them with a clear error."""
    names = [item if isinstance(item, str) else getattr(item, "name", None) for item in metrics]
    seen, repeated = set(), []
    for name in names:
        if name is not None and name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise ValueError(
            f"`metrics` holds several metrics named {repeated}: only one value per name "
            "would be logged. Give them distinct names, e.g. "
            '`MIR(pairing="class", name="mir_class")`.'
        )


@keras.saving.register_keras_serializable(package="keras_nc")
class _SumOfLosses(keras.losses.Loss):
    """Sum of ordinary Keras losses on the same `(y, logits)`.

    Sums the per-sample values of the terms, so sample weights and the
    reduction apply once, to the sum.
    """

    def __init__(self, losses, name="sum_of_losses", **kwargs):
        super().__init__(name=name, **kwargs)
        self.losses = [keras.losses.get(item) for item in losses]

    def call(self, y_true, y_pred):
        total = None
        for loss in self.losses:
            per_sample = loss.call if isinstance(loss, keras.losses.Loss) else loss
            value = per_sample(y_true, y_pred)
            total = value if total is None else total + value
        return total

    def get_config(self):
        return {
            "name": self.name,
            "losses": [keras.saving.serialize_keras_object(item) for item in self.losses],
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["losses"] = [keras.saving.deserialize_keras_object(c) for c in config["losses"]]
        return cls(**config)
