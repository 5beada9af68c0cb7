"""`ClassStatistics`: mergeable per-class sums of features, the state of the class measures."""

import contextlib

import keras
from keras import ops

from keras_nc.metrics.base import CollapseMetric
from keras_nc.ops._guards import is_concrete, statistics_dtype


def _pow2(exponent):
    """`2 ** exponent` in the dtype of `exponent` (float64 stays float64 on every backend)."""
    return ops.power(ops.full_like(exponent, 2.0), exponent)


class ClassStatistics(CollapseMetric, keras.metrics.Metric):
    """Mergeable per-class sums of the features seen since the last reset.

    The state behind the class-statistics metrics (`NC1`, `CDNV`, `ETFError`,
    `Equinorm`, `SelfDuality`, `NCCAgreement`, `MIR`/`HDR` with
    `pairing="class"`): per-class counts, feature sums and squared norms, the
    `d x d` second moment when NC1 needs it, and the last head rows. Sums of
    batches (or of devices) are the statistics of the concatenated data.

    `CollapseClassifier.compile` creates one and shares it among all such
    metrics of the model, so a training step adds its batch once (a segment
    sum of cost `n d`, plus `n d^2` for the second moment) however many class
    metrics there are. It adds nothing to the logs (`result()` is an empty
    dict). Standalone metrics own one each.

    The state is float64 where the backend has it (TensorFlow, PyTorch; JAX
    with `jax_enable_x64`): sums of features of any finite float32 magnitude
    fit. A float32 state (JAX by default) holds the statistics of
    `features * 2**-e`, `e` the largest batch scale seen so far
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
    ):
        super().__init__(name=name, dtype=dtype or statistics_dtype())
        self.num_classes, self.feature_dim = num_classes, feature_dim
        self.second_moment = bool(second_moment)
        self.built_for = False
        self.deferring = False
        self.head_source = None
        self._memo = (None, {})
        if num_classes is not None and feature_dim is not None:
            self.build_for(num_classes, feature_dim)

    def build_for(self, num_classes, feature_dim):
        """Creates the `(C,)`, `(C, d)` (and `(d, d)`) state variables once."""
        if self.built_for:
            if (num_classes, feature_dim) != (self.num_classes, self.feature_dim):
                raise ValueError(
                    f"{self.name} was built for num_classes={self.num_classes}, "
                    f"feature_dim={self.feature_dim}; received {num_classes}, {feature_dim}."
                )
            return
        self.num_classes, self.feature_dim = int(num_classes), int(feature_dim)
        c, d = self.num_classes, self.feature_dim
        # Columns: count, sum of squared norms, feature sums (one update a step).
        dtype = self.dtype
        self.per_class = self.add_variable(
            shape=(c, d + 2), initializer="zeros", dtype=dtype, name="per_class"
        )
        if self.second_moment:
            self.moment = self.add_variable(
                shape=(d, d), initializer="zeros", dtype=dtype, name="second_moment"
            )
        self.exponent = None
        if self.dtype != "float64":
            # Float32 state holds statistics of features * 2**-exponent (the
            # largest batch scale seen): no overflow for any finite features.
            self.exponent = self.add_variable(
                shape=(),
                initializer=keras.initializers.Constant(-1000.0),
                dtype=dtype,
                name="exponent",
            )
        # Every replica assigns the same rows: read the first, not their sum.
        self.head_rows = self.add_variable(
            shape=(c, d),
            initializer="zeros",
            dtype=dtype,
            name="head",
            aggregation="only_first_replica",
        )
        self.built_for = True

    @property
    def counts(self):
        """`(C,)` per-class counts (sums of sample weights)."""
        return self.per_class[:, 0]

    @property
    def sq_norms(self):
        """`(C,)` per-class sums of squared feature norms."""
        return self.per_class[:, 1]

    @property
    def sums(self):
        """`(C, d)` per-class feature sums."""
        return self.per_class[:, 2:]

    @property
    def head(self):
        """`(C, d)` head rows: the model's current ones, or those of the last update."""
        if self.head_source is not None:
            return self.head_source()
        return self.head_rows

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
        self._add(step.class_statistics(self.num_classes, self.second_moment))
        if head_weights is not None and self.head_source is None:
            self.head_rows.assign(ops.cast(head_weights, self.dtype))

    def _add(self, stats):
        """Adds a batch's `class_statistics` (with `"exponent"`) to the state."""
        columns = [ops.expand_dims(stats["counts"], -1), ops.expand_dims(stats["sq_norms"], -1),
                   stats["sums"]]  # fmt: skip
        columns = ops.cast(ops.concatenate(columns, axis=-1), self.dtype)
        # The batch's statistics are those of features * 2**-e (no overflow in float32);
        # column powers: counts 0, squared norms 2, sums 1 (the second moment: 2).
        powers = ops.concatenate(
            [
                ops.convert_to_tensor([0.0, 2.0], self.dtype),
                ops.ones((self.feature_dim,), self.dtype),
            ]
        )
        batch_exponent = ops.cast(stats["exponent"], self.dtype)
        if self.exponent is None:  # float64 state: absolute units (2**(2e) fits for any float32 e)
            self.per_class.assign_add(columns * _pow2(powers * batch_exponent))
            if self.second_moment:
                moment = ops.cast(stats["second_moment"], self.dtype)
                self.moment.assign_add(moment * _pow2(2.0 * batch_exponent))
        else:  # float32 state: units of 2**exponent, the largest batch scale so far
            exponent = ops.maximum(self.exponent.value, batch_exponent)
            old, new = self.exponent.value - exponent, batch_exponent - exponent  # both <= 0
            self.per_class.assign(
                self.per_class.value * _pow2(powers * old) + columns * _pow2(powers * new)
            )
            if self.second_moment:
                moment = ops.cast(stats["second_moment"], self.dtype)
                self.moment.assign(self.moment.value * _pow2(2.0 * old) + moment * _pow2(2.0 * new))
            self.exponent.assign(exponent)

    def statistics(self):
        """The accumulated sums, as `keras_nc.ops.class_statistics` names them."""
        stats = {"counts": self.counts, "sums": self.sums, "sq_norms": self.sq_norms}
        if self.second_moment:
            stats["second_moment"] = self.moment
        return stats

    def result(self):
        return {}

    def reset_state(self):
        if self.built_for:
            for variable in self.variables:
                variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))
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
        parts = [self.per_class, self.head] + ([self.moment] if self.second_moment else [])
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
        }
