"""Metrics that read a `ClassStatistics` accumulator, and those computed once per epoch from it."""

import keras
from keras import ops

from keras_nc import compat
from keras_nc.compat import metrics as compat_metrics
from keras_nc.compat.training import untracked_setattr
from keras_nc.metrics.base import CollapseMetric
from keras_nc.metrics.class_statistics import ClassStatistics
from keras_nc.ops.guards import is_concrete


class StatisticsReader(CollapseMetric, keras.metrics.Metric):
    """A metric reading a `ClassStatistics` accumulator: its own, or one shared in a model.

    Standalone, the metric owns (and Keras tracks) its accumulator.
    `CollapseClassifier.compile` shares one accumulator among all its readers
    (`share_statistics`): a step then adds its batch once, and the model, not
    the reader, holds the shared variables.
    """

    uses_class_statistics = True
    needs_head = False
    direction = "down"

    def __init__(self, num_classes=None, feature_dim=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.statistics = ClassStatistics(
            num_classes, feature_dim, self.needs_second_moment, name=f"{self.name}_statistics"
        )
        self.owns_statistics = True

    @property
    def num_classes(self):
        return self.statistics.num_classes

    @property
    def feature_dim(self):
        return self.statistics.feature_dim

    def share_statistics(self, statistics):
        """Reads (and updates) `statistics` instead of its own; `CollapseClassifier` calls it."""
        if self.needs_second_moment and not statistics.second_moment:
            raise ValueError(f"{self.name} needs statistics with `second_moment=True`.")
        if self.owns_statistics:
            # Keras' tracker would list the shared variables under this metric too.
            compat_metrics.untrack(self, self.statistics)
        untracked_setattr(self, "statistics", statistics)
        self.owns_statistics = False

    def build_for(self, num_classes, feature_dim):
        self.statistics.build_for(num_classes, feature_dim)

    def update_from_step(self, step, logits=None):
        step.update_statistics(self.statistics)

    def reset_state(self):
        """Resets the accumulator (when owned); a measure's last value is kept."""
        if self.owns_statistics:
            self.statistics.reset_state()

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "feature_dim": self.feature_dim,
        }


class EpochMeasure(StatisticsReader):
    """A measure of the whole epoch's class statistics, computed when read outside a step.

    Inside `CollapseClassifier`'s training and test steps the result is the
    value computed at the previous read outside a step (the last epoch's; NaN
    before the first), so the factorisations run once per epoch and once per
    `evaluate`, not once per step and metric. Read directly (a custom loop,
    the end of an epoch), the value is exact for the data seen so far.
    Subclasses implement `compute(statistics)`.
    """

    def __init__(self, num_classes=None, feature_dim=None, name=None, dtype=None):
        super().__init__(num_classes, feature_dim, name=name, dtype=dtype)
        # "No value yet" is a flag, not a NaN initial value: a multi-process JAX
        # run checks that a variable's initial value is equal on every process,
        # and NaN != NaN fails that check.
        self.last_result = self.add_variable(
            shape=(), initializer="zeros", name="last_result", aggregation="only_first_replica"
        )
        self.has_result = self.add_variable(
            shape=(), initializer="zeros", name="has_result", aggregation="only_first_replica"
        )

    def compute(self, statistics):
        """The measure from a built `ClassStatistics` (a scalar tensor)."""
        raise NotImplementedError

    def _last_value(self):
        """The last computed value (NaN before the first), as `result()` reports it in a step.

        Eager PyTorch steps (`fit` without `jit_compile`) reuse one tensor as
        long as the variables are not assigned (their version counters say
        so): no operation a step, where the `where` would cost one dispatch.
        """
        last, has = self.last_result.value, self.has_result.value
        token = (compat.eager_version(last), compat.eager_version(has))
        if None in token:
            token = None
        else:
            cached = getattr(self, "_last_value_cache", None)
            if cached is not None and cached[0] == token:
                return cached[1]
        value = ops.where(has > 0, last, float("nan"))
        if token is not None:
            untracked_setattr(self, "_last_value_cache", (token, value))
        return value

    def result(self):
        statistics = self.statistics
        if statistics.deferring:
            return self._last_value()
        if not statistics.built_for:
            return ops.zeros((), dtype=self.dtype)
        value = ops.cast(self.compute(statistics), self.dtype)
        if is_concrete(value):
            # A copy: `value` may be memoised by the statistics (`epoch_value`),
            # and JAX steps donate the variable's buffer, deleting the memo's.
            self.last_result.assign(ops.copy(value))
            self.has_result.assign(1.0)
        return value
