"""`ClassStatistics`: mergeable per-class sums of features, the state of the class measures.

Why one module: the class's state variables, their update and the views the
measures read belong together (a Keras `Metric`); adding a batch's sums lives
in `keras_nc.metrics.accumulate`. Its length is mostly the class docstring.
"""

import contextlib
import itertools

import keras
from keras import ops

from keras_nc.compat import distribute
from keras_nc.deprecation import renamed_property
from keras_nc.metrics import accumulate
from keras_nc.metrics.base import CollapseMetric
from keras_nc.ops import statistics as nc_statistics
from keras_nc.ops.guards import (
    features_tensor,
    is_concrete,
    labelled_batch,
    statistics_dtype,
    values_raise,
)


class ClassStatistics(CollapseMetric, keras.metrics.Metric):
    """Mergeable per-class sums of the features seen since the last reset.

    The state behind the class-statistics metrics (`NC1`, `CDNV`, `ETFError`,
    `Equinorm`, `SelfDuality`, `NCCAgreement`, `MIR`/`HDR` with
    `pairing="class"`): per-class counts, feature sums and squared norms, the
    `d x d` second moment when NC1 needs it, and the last head weights. Sums of
    batches (or of devices) are the statistics of the concatenated data.

    `CollapseClassifier.compile` creates one and shares it among all such
    metrics of the model, so a training step adds its batch once however many
    class metrics there are: one scatter-add of `[w, w ||y||^2, w y]` into the
    state (cost `n d`, in place where the backend allows it), plus the second
    moment: its upper block triangle only (`moment_blocks` blocks of columns,
    `(k + 1) / 2k` of the `n d^2` of the full product; see
    `keras_nc.ops.statistics.class_sum_terms`), read back as the symmetric
    `d x d` matrix (`moment`). It adds nothing to the logs (`result()` is an
    empty dict). Standalone metrics own one each.

    **Shifted sums.** The sums are of `y = z - p`, `p` a pivot: the mean of
    the first batch after a reset (the mean over all replicas' first batches
    under `tf.distribute`). The measures are translation-invariant, and
    features that share a common part much larger than their spread (ReLU
    features, all positive) would otherwise lose it to cancellation: raw
    second moments and squared norms carry `offset**2`, of which NC1 and CDNV
    keep the within-class part only. `statistics()` returns the shifted sums,
    `sums` the raw ones. The error bound is on the Performance page
    ("Precision of the class statistics").

    The state is float64 where the backend has it (TensorFlow, PyTorch; JAX
    with `jax_enable_x64`): sums of features of any finite float32 magnitude
    fit. A float32 state (JAX by default) holds the statistics of
    `y * 2**-e`, `e` the largest batch scale seen so far
    (`keras_nc.ops.scale_exponent`), rescaling by powers of two (exact) when a
    larger batch arrives; every measure is scale-invariant, so the values are
    those of the features. (A float32 state assumes one program over the
    global batch, as JAX's `DataParallel` runs it; under TensorFlow's
    `MirroredStrategy` use the default float64 state.)

    Args:
        num_classes: optional number of classes `C` (else set by
            `build_for` or from the head rows of the first update).
        feature_dim: optional feature width `d`.
        second_moment: also accumulate the `d x d` second moment (NC1).
        moment_blocks: the number of column blocks `k` of the second moment
            (its upper block triangle is accumulated); `None` (default): one
            per 128 features, at most 4 (1 below `d = 256`).
        name: metric name.
        dtype: dtype of the state.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_nc.metrics import ClassStatistics
    >>> stats = ClassStatistics(num_classes=3, feature_dim=2)
    >>> stats.update_state(np.array([0, 1, 1]), features=np.ones((3, 2), "float32"))
    >>> counts = keras.ops.convert_to_numpy(stats.statistics()["counts"])
    >>> int(counts[1]), int(counts.sum())
    (2, 3)
    """

    needs_head = False

    def __init__(
        self,
        num_classes=None,
        feature_dim=None,
        second_moment=False,
        name="class_statistics",
        dtype=None,
        moment_blocks=None,
    ):
        super().__init__(name=name, dtype=dtype or statistics_dtype())
        self.num_classes, self.feature_dim = num_classes, feature_dim
        self.second_moment = bool(second_moment)
        valid = isinstance(moment_blocks, int) and not isinstance(moment_blocks, bool)
        if moment_blocks is not None and not (valid and moment_blocks >= 1):
            raise ValueError(f"`moment_blocks` must be a positive int; received {moment_blocks!r}.")
        self.moment_blocks = moment_blocks
        self.built_for = False
        self.deferring = False
        self.head_source = None
        self._memo = (None, {})
        self._pivot_set = False  # an eager update set the pivot (reset clears it)
        if num_classes is not None and feature_dim is not None:
            self.build_for(num_classes, feature_dim)

    def build_for(self, num_classes, feature_dim):
        """Creates the `(C, d + 2)`, `(d,)` (and `(d, d)`) state variables once."""
        if self.built_for:
            if (num_classes, feature_dim) != (self.num_classes, self.feature_dim):
                raise ValueError(
                    f"{self.name} was built for num_classes={self.num_classes}, "
                    f"feature_dim={self.feature_dim}; received {num_classes}, {feature_dim}."
                )
            return
        self.num_classes, self.feature_dim = int(num_classes), int(feature_dim)
        c, d = self.num_classes, self.feature_dim
        # Columns: count, sum of squared norms, feature sums (one update a step),
        # all of the features minus the pivot.
        dtype = self.dtype
        self.per_class = self.add_variable(
            shape=(c, d + 2), initializer="zeros", dtype=dtype, name="per_class"
        )
        self.moment_rows = []
        if self.second_moment:
            # The upper block triangle of the symmetric moment, one block row a
            # variable (`moment` assembles the whole): each step adds to it in place.
            blocks = self.moment_blocks or max(1, min(4, d // 128))
            bounds = nc_statistics.moment_block_bounds(d, blocks)
            self.moment_bounds = bounds
            for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
                name = "second_moment" if len(bounds) == 2 else f"second_moment_{i}"
                self.moment_rows.append(
                    self.add_variable(
                        shape=(stop - start, d - start), initializer="zeros", dtype=dtype, name=name
                    )
                )
        # The pivot: the first batch's mean, subtracted from every batch. Every
        # replica holds the same one (`_pivot_of`), so read the first.
        self.pivot = self.add_variable(
            shape=(d,), initializer="zeros", dtype=dtype, name="pivot",
            aggregation="only_first_replica",
        )  # fmt: skip
        self.pivoted = self.add_variable(
            shape=(), initializer="zeros", dtype=dtype, name="pivoted",
            aggregation="only_first_replica",
        )  # fmt: skip
        self.exponent = None
        if self.dtype != "float64":
            # Float32 state holds statistics of (features - pivot) * 2**-exponent
            # (the largest batch scale seen): no overflow for any finite features.
            self.exponent = self.add_variable(
                shape=(),
                initializer=keras.initializers.Constant(-1000.0),
                dtype=dtype,
                name="exponent",
                aggregation="only_first_replica",
            )
        # Every replica assigns the same rows: read the first, not their sum.
        self.last_head_weights = self.add_variable(
            shape=(c, d),
            initializer="zeros",
            dtype=dtype,
            name="head",
            aggregation="only_first_replica",
        )
        self.built_for = True

    @property
    def moment(self):
        """`(d, d)` second moment of the features minus the pivot (when accumulated)."""
        if not self.second_moment:
            raise AttributeError(f"{self.name} does not accumulate the second moment.")
        return nc_statistics.moment_from_block_rows([v.value for v in self.moment_rows])

    @property
    def counts(self):
        """`(C,)` per-class counts (sums of sample weights)."""
        return self.per_class[:, 0]

    @property
    def sq_norms(self):
        """`(C,)` per-class sums of squared norms of the features minus the pivot."""
        return self.per_class[:, 1]

    @property
    def shifted_sums(self):
        """`(C, d)` per-class sums of the features minus the pivot (`pivot`)."""
        return self.per_class[:, 2:]

    @property
    def sums(self):
        """`(C, d)` per-class feature sums (`shifted_sums` plus the counts times the pivot)."""
        pivot = self.pivot.value
        if self.exponent is not None:  # the state's units: 2**exponent
            scale = accumulate.pow2(-self.exponent.value)
            pivot = ops.where(self.pivoted.value > 0, pivot * scale, 0.0)
        return self.shifted_sums + ops.expand_dims(self.counts, -1) * ops.expand_dims(pivot, 0)

    @property
    def head_weights(self):
        """`(C, d)` head weights: the model's current ones, or those of the last update."""
        if self.head_source is not None:
            return self.head_source()
        return self.last_head_weights

    head = renamed_property("head", "head_weights")
    head_rows = renamed_property("head_rows", "last_head_weights")

    def read_head_from(self, head_source):
        """Reads the head rows from `head_source()` when needed instead of storing them.

        `CollapseClassifier` passes its head (a `(C, d)` view of the kernel), so
        that a step does not copy `C x d` rows into the state.
        """
        self.head_source = head_source

    def update_from_step(self, step, logits=None):
        features, head_weights = ops.convert_to_tensor(step.features), step.head_weights
        if not self.built_for:
            num_classes = self.num_classes
            if num_classes is None and head_weights is not None:
                num_classes = ops.convert_to_tensor(head_weights).shape[0]
            if num_classes is None:
                raise ValueError(
                    f"{self.name} needs `num_classes` (or `head_weights`) to size its state."
                )
            self.build_for(num_classes, features.shape[-1])
        pivot = self._pivot_of(features)
        terms = nc_statistics.class_sum_terms(
            features, step.y_true, self.num_classes, pivot, step.sample_weight,
            second_moment=self.second_moment, dtype=self.dtype, labels_name="y_true",
            moment_blocks=len(self.moment_rows) or None,
        )  # fmt: skip
        accumulate.add_class_terms(self, terms)
        if head_weights is not None and self.head_source is None:
            if values_raise(features):  # a standalone metric's head rows, checked eagerly
                labelled_batch(features, step.y_true, head_weights, labels_name="y_true")
            self.last_head_weights.assign(ops.cast(head_weights, self.dtype))

    def _pivot_of(self, features):
        """The pivot: the first batch's mean (the same on every replica), then kept.

        Traced, a `where` on the `pivoted` flag picks it; eager steps after
        the first read the variable and nothing else (`_pivot_set`).
        """
        features = features_tensor(features)
        eager = is_concrete(features)
        if eager and self._pivot_set:
            return self.pivot.value
        mean = distribute.mean_over_replicas(ops.mean(ops.stop_gradient(features), axis=0))
        first = self.pivoted.value == 0
        pivot = ops.where(first, ops.cast(mean, self.dtype), self.pivot.value)
        self.pivot.assign(pivot)
        self.pivoted.assign(ops.ones((), self.dtype))
        self._pivot_set = eager
        return pivot

    def statistics(self):
        """The accumulated sums of the features minus the pivot, as `class_statistics` names them.

        What the translation-invariant measures read (`neural_collapse_measures`,
        the centred class pairing): the same values as the raw sums would give,
        without their cancellation (see the class docstring). `sums` holds the
        raw per-class sums.
        """
        stats = {"counts": self.counts, "sums": self.shifted_sums, "sq_norms": self.sq_norms}
        if self.second_moment:
            stats["second_moment"] = self.moment
        return stats

    def result(self):
        return {}

    def reset_state(self):
        if self.built_for:
            for variable in self.variables:
                variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))
            self._memo = (None, {})
            self._pivot_set = False
            if self.exponent is not None:
                self.exponent.assign(-1000.0)

    @property
    def means_exponent(self):
        """`e` when the state holds statistics of `features * 2**-e` (float32 state), else None."""
        return None if self.exponent is None else self.exponent.value

    @contextlib.contextmanager
    def deferred(self):
        """Within this context the epoch measures return their last value (no computation).

        `CollapseClassifier` reads its metrics' results inside every training
        step (Keras logs them); the measures of the whole epoch are computed
        when the results are read outside a step: at the end of the epoch and
        of `evaluate`.
        """
        previous, self.deferring = self.deferring, True
        try:
            yield
        finally:
            self.deferring = previous

    def epoch_value(self, key, compute):
        """`compute()` once per state of the statistics (memoised across metrics).

        Eager reads only: several metrics sharing these statistics then run
        one computation at the end of an epoch.
        """
        if not is_concrete(self.per_class.value):
            return compute()
        parts = [self.per_class, self.head_weights, *self.moment_rows]
        fingerprint = tuple(ops.convert_to_numpy(ops.sum(p)).item() for p in parts)
        fingerprint += (ops.convert_to_numpy(self.counts).tobytes(),)
        if self._memo[0] != fingerprint:
            self._memo = (fingerprint, {})
        if key not in self._memo[1]:
            self._memo[1][key] = compute()
        return self._memo[1][key]

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "feature_dim": self.feature_dim,
            "second_moment": self.second_moment,
            "moment_blocks": self.moment_blocks,
        }
