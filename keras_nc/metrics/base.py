"""`CollapseMetric`: the protocol of metrics that read labels, features and head rows."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_nc import sharding
from keras_nc.metrics.sample_groups import SampleGroups
from keras_nc.ops.guards import features_tensor
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


DEFAULT_SAMPLE_SIZE = 128


def check_sample_size(sample_size):
    """`sample_size` if it is None or an integer >= 2, else a `ValueError` naming it."""
    if sample_size is None:
        return None
    if isinstance(sample_size, bool) or not isinstance(sample_size, (int, np.integer)):
        raise ValueError(
            f"`sample_size` must be None or an integer >= 2 (rows per estimate); "
            f"received {sample_size!r}."
        )
    if sample_size < 2:
        raise ValueError(
            f"`sample_size` must be at least 2 (a Gram matrix of one row has no geometry); "
            f"received {sample_size}."
        )
    return int(sample_size)


class BatchMeasure(CollapseMetric, keras.metrics.Mean):
    """A measure of a set of rows, averaged over the sets of an epoch.

    With `sample_size=m` (default 128) the measure is computed on consecutive
    groups of `m` rows gathered across the loader's batches (in metric state,
    `keras_nc.metrics.sample_groups`), and the result is the mean over the
    complete groups (weighted by their rows' sample weights): the value is a
    property of the metric, not of the loader's batch size. While no group is
    complete (an epoch of fewer than `m` rows), the result is the measure of
    the rows gathered so far; rows after the last complete group are left
    out. With `sample_size=None`, each batch is one set (the value then
    depends on the batch size), weighted by `batch_weight`. Subclasses
    implement `measure(step, features)`; `groups_rows = False` for a measure
    that reads no rows (the head's entropy).
    """

    groups_rows = True

    def __init__(self, sample_size=DEFAULT_SAMPLE_SIZE, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.sample_size = check_sample_size(sample_size)
        self.groups = None
        self._warned_per_device = False

    def measure(self, step, features):
        """The value (a scalar tensor) of the rows of a `CollapseStep`."""
        raise NotImplementedError

    @property
    def grouped(self):
        return self.sample_size is not None and self.groups_rows

    def build_for(self, num_classes, feature_dim):
        if self.grouped and self.groups is None:
            self.groups = SampleGroups(self, self.sample_size, feature_dim)
            self.completed = self.add_variable(
                shape=(), initializer="zeros", dtype="float32", name="groups_weight"
            )
            self.rest_value = self.add_variable(
                shape=(), initializer="zeros", dtype=self.dtype, name="rest_value"
            )

    def update_from_step(self, step, logits=None):
        features = ops.convert_to_tensor(step.features)
        apart = step.per_device or sharding.replicas_in_sync() > 1
        if self.grouped and apart and not self._warned_per_device:
            self._warned_per_device = True
            warnings.warn(
                f"{self.name}: `sample_size={self.sample_size}` gathers rows across batches "
                "in one buffer, which devices measured apart (`sample_scope='device'`, or "
                "the replicas of a `tf.distribute` strategy) do not share; the measure is "
                "taken on each batch's per-device rows instead, and its value depends on "
                "the batch size. Pass `sample_size=None` to silence this.",
                stacklevel=2,
            )
        if not self.grouped or apart:
            value = self.measure(step, features)
            weight = self.weight(features, step.sample_weight)
            keras.metrics.Mean.update_state(self, value, sample_weight=weight)
            return
        self.build_for(None, features.shape[-1])
        batch = step.batch() if self.needs_head else None
        n = ops.shape(features)[0]
        if batch is not None:
            features, labels, head = batch.features, batch.labels, batch.head
        else:
            labels, head = ops.zeros((n,), "int32"), None
        weights = step.sample_weight
        weights = ops.ones((n,), "float32") if weights is None else ops.cast(weights, "float32")
        if batch is not None and batch.ok is not None:
            # A compiled step found invalid values (sanitised by the guard):
            # NaN rows, so that every group they fall in measures NaN.
            features = ops.where(batch.ok, features, float("nan"))

        def measure(rows, row_labels, row_weights):
            return self.measure(CollapseStep(row_labels, rows, head, row_weights), rows)

        whole_batch = None
        if step.sample_weight is None and features.shape[0] == self.sample_size:
            # A batch of exactly one group: its value is the step's own (shared
            # with the losses and the other metrics) when the buffer is empty.
            def whole_batch():
                return self.measure(step, features)

        completed = self.completed.value
        # The rows gathered so far are measured too while no group is complete
        # (in the same loop as the groups: one trace of `measure`).
        total, count, rest = self.groups.add(
            features, labels, weights, measure, whole_batch, completed=completed
        )
        keras.metrics.Mean.update_state(
            self, total / ops.maximum(count, 1e-30), sample_weight=count
        )
        self.completed.assign(completed + count)
        if rest is not None:
            self.rest_value.assign(ops.cast(rest, self.dtype))

    def result(self):
        if self.grouped and self.groups is not None:
            return ops.where(
                self.completed.value > 0, keras.metrics.Mean.result(self), self.rest_value.value
            )
        return keras.metrics.Mean.result(self)

    def reset_state(self):
        keras.metrics.Mean.reset_state(self)
        if self.groups is not None:
            self.groups.reset()
            self.completed.assign(0.0)
            self.rest_value.assign(ops.zeros((), self.dtype))

    def weight(self, features, sample_weight):
        """A batch's weight in the mean without `sample_size` (`batch_weight`)."""
        return batch_weight(features, sample_weight)

    def get_config(self):
        return {**super().get_config(), "sample_size": self.sample_size}
