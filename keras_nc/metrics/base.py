"""`CollapseMetric`: the protocol of metrics that read labels, features and head rows."""

import keras
from keras import ops

from keras_nc.ops._guards import features_tensor
from keras_nc.step import CollapseStep


class CollapseMetric:
    """Mixin of the metrics that read labels, features and head rows, not predictions.

    `keras_nc.models.CollapseClassifier` recognises its subclasses in
    `compile(metrics=[...])` and calls

    ```python
    metric.update_state(y_true, features=z, head_weights=w, logits=logits,
                        sample_weight=sample_weight, step=step)
    ```

    with the step's shared `keras_nc.step.CollapseStep`; in a custom loop call
    `metric.update_state(y_true, features=z, head_weights=w)` (`w`: the
    `(C, d)` head rows, a `Dense` kernel transposed). A plain `keras.Model`
    passes predictions instead (`update_state(y_true, y_pred)`), which these
    metrics cannot use: they raise an error saying so.

    Attributes:
        uses_class_statistics: whether the metric reads a `ClassStatistics`
            accumulator (which `CollapseClassifier` shares among its metrics).
        needs_second_moment: whether that accumulator needs the `d x d`
            second moment (NC1).
        direction: `"up"` when higher values are better (MIR, class MIR,
            NCC agreement, RankMe), `"down"` when lower are (HDR, matrix
            entropy, NC1, CDNV, ETF error, equinorm, self-duality, CMA).
            Keras' `EarlyStopping`, `ModelCheckpoint` and `ReduceLROnPlateau`
            read it in their default `mode="auto"`.
    """

    uses_class_statistics = False
    needs_second_moment = False
    needs_head = True
    direction = None

    def update_state(
        self,
        y_true,
        y_pred=None,
        sample_weight=None,
        *,
        features=None,
        head_weights=None,
        logits=None,
        step=None,
    ):
        """Adds a batch: `update_state(y_true, features=z, head_weights=w)` (see the class)."""
        step = self.collapse_step(y_true, y_pred, features, head_weights, sample_weight, step)
        self.update_from_step(step, logits)

    def update_from_step(self, step, logits=None):
        """Adds the batch of a `CollapseStep` (subclasses implement it)."""
        raise NotImplementedError

    def build_for(self, num_classes, feature_dim):
        """Creates size-dependent state (no-op unless the metric accumulates per class)."""

    def collapse_step(self, y_true, y_pred, features, head_weights, sample_weight, step):
        """The `CollapseStep` to read: `step`, or one built from the arguments."""
        name = type(self).__name__
        if y_pred is not None or features is None:
            raise ValueError(
                f"{name} reads the features and head rows of a classifier, not its predictions "
                "(it received `y_pred`): use it in `keras_nc.models.CollapseClassifier`'s "
                "`compile(metrics=[...])` (wrap a functional model with "
                "`CollapseClassifier.from_model(model)`), or call "
                f"`update_state(y_true, features=..., head_weights=...)`."
            )
        if self.needs_head and head_weights is None:
            raise ValueError(
                f"{name} needs `head_weights`, the (num_classes, d) classifier rows (a Dense "
                "kernel transposed); `keras_nc.models.CollapseClassifier` passes them."
            )
        features_tensor(features)  # (n, d), whatever reads it next
        if step is not None:
            return step
        return CollapseStep(y_true, features, head_weights, sample_weight)


def batch_weight(features, sample_weight):
    """Weight of a batch in the epoch mean of a per-batch measure.

    The batch size (the sum of the sample weights), or 0 for a batch of fewer
    than two samples: a Gram matrix of one sample carries no geometry (its
    entropies are 0 and MIR/HDR their degenerate 0), so a ragged last batch of
    one sample neither crashes nor pulls the epoch mean towards 0.
    """
    n = ops.shape(features)[0]
    if sample_weight is not None:
        weight = ops.sum(ops.cast(sample_weight, "float32"))
    else:
        weight = ops.cast(n, "float32")
    return ops.where(ops.cast(n, "float32") >= 2.0, weight, 0.0)


class BatchMeasure(CollapseMetric, keras.metrics.Mean):
    """A per-batch collapse measure averaged over the batches of an epoch.

    A `keras.metrics.Mean` of `measure(step)` weighted by `batch_weight` (the
    batch size; 0 for a batch of fewer than two samples). Subclasses implement
    `measure(step, features)`.
    """

    def measure(self, step, features):
        """The batch's value (a scalar tensor) from its `CollapseStep`."""
        raise NotImplementedError

    def update_from_step(self, step, logits=None):
        features = ops.convert_to_tensor(step.features)
        value = self.measure(step, features)
        weight = self.weight(features, step.sample_weight)
        keras.metrics.Mean.update_state(self, value, sample_weight=weight)

    def weight(self, features, sample_weight):
        """The batch's weight in the mean (`batch_weight`)."""
        return batch_weight(features, sample_weight)
