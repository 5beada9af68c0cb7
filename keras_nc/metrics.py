"""Keras metrics of Neural Collapse: matrix entropy, MIR, HDR and the classic NC measures.

Every metric here is a `keras.metrics.Metric` whose state is Keras metric
variables only, so it works in `model.fit` on every backend (JAX's stateless
trainer included) and in custom loops. They need features and head weights, not
only predictions: `keras_nc.models.CollapseClassifier` feeds them
automatically; in a custom loop call

```python
metric.update_state(y_true, features=z, head_weights=w)  # w: (C, d) = kernel.T
```

The mathematics lives in `keras_nc.ops`.
"""

import contextlib

import keras
from keras import ops

from keras_nc import ops as nc_ops
from keras_nc.step import CollapseStep

_PAIRINGS = ("sample", "class")


class CollapseMetric(keras.metrics.Metric):
    """Base class of the metrics that read labels, features and head weights.

    Subclasses implement `update_state(y_true, features, head_weights=None,
    logits=None, sample_weight=None, step=None)`; `step` is an optional
    `CollapseStep` shared by the metrics of one training step. `CollapseClassifier`
    recognises them by this base class and passes its features, head rows and
    logits.
    """

    def update_state(
        self, y_true, features, head_weights=None, logits=None, sample_weight=None, step=None
    ):
        raise NotImplementedError

    def build_for(self, num_classes, feature_dim):
        """Creates size-dependent state (no-op unless the metric accumulates per class)."""


def _check_y_true(y_true, num_classes, features):
    """Clear errors that name `y_true` (the ops, called next, name it `labels`)."""
    features = _features(features)
    nc_ops._check_labels(y_true, num_classes, name="y_true", num_samples=features.shape[0])


def _features(features):
    features = ops.convert_to_tensor(features)
    nc_ops._check_rank(features, "features", 2, "(n, d)")
    return features


def _head(head_weights, name):
    if head_weights is None:
        raise ValueError(
            f"`{name}` needs `head_weights`, the (num_classes, d) classifier rows "
            "(a Dense kernel transposed)."
        )
    return ops.convert_to_tensor(head_weights)


def _pow2(exponent):
    """`2 ** exponent` in the dtype of `exponent` (float64 stays float64 on every backend)."""
    return ops.power(ops.full_like(exponent, 2.0), exponent)


def _batch_weight(features, sample_weight):
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


def _normalized(entropy, n):
    """`entropy / log n`, 0 for `n < 2` (static or traced `n`)."""
    n = ops.cast(n, entropy.dtype)
    return ops.where(n >= 2.0, entropy / ops.log(ops.maximum(n, 2.0)), 0.0)


class _BatchMean(CollapseMetric):
    """A per-batch value averaged over batches, weighted by batch size."""

    def __init__(self, name, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def _accumulate(self, value, weight):
        value = ops.cast(value, self.dtype)
        weight = ops.cast(weight, self.dtype)
        self.total.assign_add(value * weight)
        self.count.assign_add(weight)

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package="keras_nc")
class MatrixEntropy(_BatchMean):
    """Matrix entropy of the batch features (or of the classifier head).

    `of="features"`: `H(K_Z)` of the cosine Gram of each batch's features
    (centred by the batch mean by default), computed on the `min(n, d)` side and
    averaged over the epoch's batches weighted by their size (a batch of fewer
    than two samples has no geometry and weight 0). `of="head"`:
    `H(Gram(W))` of the head rows, averaged over batches. At Neural Collapse
    both tend to `log(C - 1)` (`keras_nc.theory.entropy_at_collapse`).

    Args:
        of: `"features"` or `"head"`.
        center: centre the features by the batch mean (default `True`).
        alpha: entropy order (1: von Neumann; see `keras_nc.ops.matrix_entropy`).
        normalize: divide by `log n` (by `log C` for the head).
        name: metric name (default `"matrix_entropy"`; `"head_entropy"` for
            `of="head"`).
        dtype: metric dtype.

    Example:

    ```python
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=10)
    model.compile(metrics=["accuracy", keras_nc.metrics.MatrixEntropy()])
    ```
    """

    def __init__(
        self,
        of="features",
        center=True,
        alpha=1.0,
        normalize=False,
        name=None,
        dtype=None,
    ):
        if of not in ("features", "head"):
            raise ValueError(f'`of` must be "features" or "head"; received {of!r}.')
        name = name or ("matrix_entropy" if of == "features" else "head_entropy")
        super().__init__(name=name, dtype=dtype)
        self.of, self.center, self.alpha, self.normalize = of, bool(center), alpha, normalize
        nc_ops._check_alpha(alpha)

    def update_state(
        self, y_true, features, head_weights=None, logits=None, sample_weight=None, step=None
    ):
        if self.of == "head":
            head = _head(head_weights, "MatrixEntropy(of='head')")
            value = nc_ops.matrix_entropy(
                nc_ops.gram(head), alpha=self.alpha, normalize=self.normalize
            )
            self._accumulate(value, 1.0)
            return
        features = _features(features)
        step = step if step is not None else CollapseStep(y_true, features, head_weights)
        value = step.feature_entropy(self.center, self.alpha)
        if self.normalize:
            value = _normalized(value, nc_ops._num_rows(features))
        self._accumulate(value, _batch_weight(features, sample_weight))

    def get_config(self):
        return {
            **super().get_config(),
            "of": self.of,
            "center": self.center,
            "alpha": self.alpha,
            "normalize": self.normalize,
        }


@keras.saving.register_keras_serializable(package="keras_nc")
class ClassStatistics(keras.metrics.Metric):
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

    def __init__(
        self,
        num_classes=None,
        feature_dim=None,
        second_moment=False,
        name="class_statistics",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype or nc_ops._statistics_dtype())
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

    def update_state(self, y_true, features, head_weights=None, sample_weight=None, step=None):
        features = _features(features)
        if not self.built_for:
            num_classes = self.num_classes
            if num_classes is None and head_weights is not None:
                num_classes = ops.convert_to_tensor(head_weights).shape[0]
            if num_classes is None:
                raise ValueError(
                    f"{self.name} needs `num_classes` (or `head_weights`) to size its state."
                )
            self.build_for(num_classes, features.shape[-1])
        if step is None:
            step = CollapseStep(y_true, features, head_weights, sample_weight)
        stats = step.class_statistics(self.num_classes, self.second_moment)
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
        if head_weights is not None and self.head_source is None:
            self.head_rows.assign(ops.cast(head_weights, self.dtype))

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
        if not nc_ops._is_concrete(self.per_class.value):
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


class _UsesClassStatistics(CollapseMetric):
    """A metric reading `ClassStatistics`: its own, or one shared within a model."""

    needs_second_moment = False

    def __init__(self, num_classes=None, feature_dim=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        own = ClassStatistics(
            num_classes, feature_dim, self.needs_second_moment, name=f"{name}_statistics"
        )
        # Untracked: the variables are listed by `variables` while owned only.
        object.__setattr__(self, "_own_statistics", own)
        object.__setattr__(self, "_statistics", own)

    @property
    def statistics(self):
        """The `ClassStatistics` this metric reads."""
        return self._statistics

    @property
    def num_classes(self):
        return self._statistics.num_classes

    @property
    def feature_dim(self):
        return self._statistics.feature_dim

    def share_statistics(self, statistics):
        """Reads (and updates) `statistics` instead of its own; `CollapseClassifier` calls it."""
        if self.needs_second_moment and not statistics.second_moment:
            raise ValueError(f"{self.name} needs statistics with `second_moment=True`.")
        object.__setattr__(self, "_statistics", statistics)

    def build_for(self, num_classes, feature_dim):
        self._statistics.build_for(num_classes, feature_dim)

    @property
    def variables(self):
        variables = list(self._variables)
        if self._statistics is self._own_statistics:
            variables += self._own_statistics.variables
        return variables

    def update_state(
        self, y_true, features, head_weights=None, logits=None, sample_weight=None, step=None
    ):
        step = step if step is not None else CollapseStep(y_true, features, head_weights,
                                                          sample_weight)  # fmt: skip
        step.update_statistics(self._statistics)

    def reset_state(self):
        if self._statistics is self._own_statistics:
            self._own_statistics.reset_state()

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "feature_dim": self.feature_dim,
        }


class _EpochMeasure(_UsesClassStatistics):
    """A measure of the whole epoch's class statistics, computed when read outside a step.

    Inside `CollapseClassifier`'s training and test steps the result is the
    value computed at the previous read outside a step (the last epoch's; NaN
    before the first), so the factorisations run once per epoch and once per
    `evaluate`, not once per step and metric. Read directly (a custom loop,
    the end of an epoch), the value is exact for the data seen so far.
    """

    def __init__(self, num_classes=None, feature_dim=None, name=None, dtype=None):
        super().__init__(num_classes, feature_dim, name=name, dtype=dtype)
        self.last_result = self.add_variable(
            shape=(),
            initializer=keras.initializers.Constant(float("nan")),
            name="last_result",
            aggregation="only_first_replica",
        )

    def _compute(self, statistics):
        """The measure from a built `ClassStatistics` (a scalar tensor)."""
        raise NotImplementedError

    def result(self):
        statistics = self._statistics
        if statistics.deferring:
            return ops.convert_to_tensor(self.last_result.value)
        if not statistics.built_for:
            return ops.zeros((), dtype=self.dtype)
        value = ops.cast(self._compute(statistics), self.dtype)
        if nc_ops._is_concrete(value):
            self.last_result.assign(value)
        return value


class _ClassPairingRatio(_EpochMeasure):
    """MIR or HDR of the class pairing (the state behind `MIR/HDR(pairing="class")`)."""

    def __init__(self, index, center, alpha, num_classes=None, feature_dim=None, name=None,
                 dtype=None):  # fmt: skip
        super().__init__(num_classes, feature_dim, name=name, dtype=dtype)
        self.index, self.center, self.alpha = index, center, alpha

    def _compute(self, statistics):
        def ratios():
            return nc_ops.class_pairing_ratios(
                statistics.counts, statistics.sums, statistics.head, self.center, self.alpha
            )

        return statistics.epoch_value(f"pairing/{self.center}/{float(self.alpha)}", ratios)[
            self.index
        ]


class _InformationRatio(CollapseMetric):
    """Shared machinery of `MIR` and `HDR` (both pairings)."""

    _index = None  # 0: MIR, 1: HDR, in the pair keras_nc.ops.information_ratios returns

    def __init__(
        self,
        pairing="sample",
        center=True,
        alpha=1.0,
        num_classes=None,
        feature_dim=None,
        name=None,
        dtype=None,
    ):
        if pairing not in _PAIRINGS:
            raise ValueError(f'`pairing` must be "sample" or "class"; received {pairing!r}.')
        super().__init__(name=name, dtype=dtype)
        nc_ops._check_alpha(alpha)
        self.pairing, self.center, self.alpha = pairing, bool(center), alpha
        if pairing == "sample":
            inner = _BatchMean(name=f"{name}_mean", dtype=dtype)
        else:
            inner = _ClassPairingRatio(self._index, self.center, alpha, num_classes,
                                       feature_dim, name=f"{name}_class", dtype=dtype)  # fmt: skip
        object.__setattr__(self, "_inner", inner)

    @property
    def uses_class_statistics(self):
        return self.pairing == "class"

    @property
    def needs_second_moment(self):
        return False

    @property
    def num_classes(self):
        return self._inner.num_classes if self.pairing == "class" else None

    def share_statistics(self, statistics):
        self._inner.share_statistics(statistics)

    def build_for(self, num_classes, feature_dim):
        if self.pairing == "class":
            self._inner.build_for(num_classes, feature_dim)

    @property
    def variables(self):
        return list(self._inner.variables)

    def update_state(
        self, y_true, features, head_weights=None, logits=None, sample_weight=None, step=None
    ):
        head = _head(head_weights, type(self).__name__)
        if self.pairing == "sample":
            step = step if step is not None else CollapseStep(y_true, features, head)
            value = step.sample_ratios(self.center, self.alpha)[self._index]
            self._inner._accumulate(value, _batch_weight(features, sample_weight))
        else:
            self._inner.update_state(y_true, features, head, sample_weight=sample_weight,
                                     step=step)  # fmt: skip

    def result(self):
        return self._inner.result()

    def reset_state(self):
        self._inner.reset_state()

    def get_config(self):
        config = {
            **super().get_config(),
            "pairing": self.pairing,
            "center": self.center,
            "alpha": self.alpha,
        }
        if self.pairing == "class":
            config["num_classes"] = self._inner.num_classes
            config["feature_dim"] = self._inner.feature_dim
        return config


@keras.saving.register_keras_serializable(package="keras_nc")
class MIR(_InformationRatio):
    """Matrix Mutual Information Ratio between features and classifier head.

    `pairing="sample"` (default, what the paper tracks): for each batch, the
    cosine Gram of the (batch-centred) features against that of the head rows
    picked by the labels; averaged over batches weighted by size (a batch of
    one sample has weight 0).
    `pairing="class"`: per-class sums are accumulated over the epoch (mergeable
    across batches and devices) and the globally centred class means are
    compared with the head rows at `result()`.

    Rises towards `keras_nc.theory.mir_at_collapse(C)` at Neural Collapse.
    A batch of a single class gives 0 (see `keras_nc.ops.mir`).

    Args:
        pairing: `"sample"` or `"class"`.
        center: centre features (batch mean, or global mean for the class
            pairing); `False` reproduces the authors' code.
        alpha: entropy order.
        num_classes: optional, class pairing: size of the state (otherwise set
            by `CollapseClassifier.compile` or the first update).
        feature_dim: optional, class pairing: feature width.
        name: metric name (default `"mir"`, `"mir_class"` for the class
            pairing, so both can be logged side by side).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=["accuracy", MIR(), MIR(pairing="class", name="mir_class")])
    # custom loop
    mir = MIR()
    mir.update_state(labels, features=z, head_weights=model.head.kernel.T)
    mir.result()
    ```
    """

    _index = 0

    def __init__(self, pairing="sample", center=True, alpha=1.0, num_classes=None,
                 feature_dim=None, name=None, dtype=None):  # fmt: skip
        name = name or ("mir" if pairing == "sample" else "mir_class")
        super().__init__(pairing, center, alpha, num_classes, feature_dim, name, dtype)


@keras.saving.register_keras_serializable(package="keras_nc")
class HDR(_InformationRatio):
    """Matrix Entropy Difference Ratio between features and classifier head.

    Same pairings and arguments as `MIR`; falls towards 0 at Neural Collapse.
    Two rank-1 Grams (a collapsed single-class batch) give 0.

    Args:
        pairing: `"sample"` or `"class"`.
        center: centre the features (see `MIR`).
        alpha: entropy order.
        num_classes: optional, class pairing state size.
        feature_dim: optional, class pairing feature width.
        name: metric name (default `"hdr"`, `"hdr_class"` for the class
            pairing).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=[HDR(), HDR(pairing="class", name="hdr_class")])
    ```
    """

    _index = 1

    def __init__(self, pairing="sample", center=True, alpha=1.0, num_classes=None,
                 feature_dim=None, name=None, dtype=None):  # fmt: skip
        name = name or ("hdr" if pairing == "sample" else "hdr_class")
        super().__init__(pairing, center, alpha, num_classes, feature_dim, name, dtype)


class _NeuralCollapseMeasure(_EpochMeasure):
    """One classic NC measure of the epoch's class statistics (all five computed together)."""

    _key = None
    uses_class_statistics = True

    def __init__(self, num_classes=None, feature_dim=None, name=None, dtype=None):
        super().__init__(num_classes, feature_dim, name=name or self._key, dtype=dtype)

    def _compute(self, statistics):
        stats = statistics.statistics()

        def measures():
            return nc_ops.neural_collapse_measures(stats, statistics.head)

        return statistics.epoch_value(f"measures/{'second_moment' in stats}", measures)[self._key]


@keras.saving.register_keras_serializable(package="keras_nc")
class NC1(_NeuralCollapseMeasure):
    """NC1, within-class variability collapse: `tr(Sigma_W Sigma_B^+) / C`.

    Accumulates per-class sums and the `d x d` second moment over the epoch;
    the value is computed in the `C x C` space (see
    `keras_nc.ops.neural_collapse_measures`). Tends to 0 at collapse.

    Args:
        num_classes: optional state size (set by `CollapseClassifier.compile`).
        feature_dim: optional feature width.
        name: metric name (default `"nc1"`).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=[keras_nc.metrics.NC1()])
    ```
    """

    _key = "nc1"
    needs_second_moment = True


@keras.saving.register_keras_serializable(package="keras_nc")
class CDNV(_NeuralCollapseMeasure):
    """Class-distance normalised variance (Galanti et al., 2022); 0 at collapse.

    Args:
        num_classes: optional state size.
        feature_dim: optional feature width.
        name: metric name (default `"cdnv"`).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=[keras_nc.metrics.CDNV()])
    ```
    """

    _key = "cdnv"


@keras.saving.register_keras_serializable(package="keras_nc")
class ETFError(_NeuralCollapseMeasure):
    """NC2: distance of the centred class-mean Gram from a simplex ETF; 0 at collapse.

    Args:
        num_classes: optional state size.
        feature_dim: optional feature width.
        name: metric name (default `"etf_error"`).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=[keras_nc.metrics.ETFError()])
    ```
    """

    _key = "etf_error"


@keras.saving.register_keras_serializable(package="keras_nc")
class Equinorm(_NeuralCollapseMeasure):
    """NC2: coefficient of variation of the centred class-mean norms; 0 at collapse.

    Args:
        num_classes: optional state size.
        feature_dim: optional feature width.
        name: metric name (default `"equinorm"`).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=[keras_nc.metrics.Equinorm()])
    ```
    """

    _key = "equinorm"


@keras.saving.register_keras_serializable(package="keras_nc")
class SelfDuality(_NeuralCollapseMeasure):
    """NC3: `||W/||W||_F - M/||M||_F||_F^2` between head rows and centred means.

    Uses the head weights of the last update. 0 at collapse.

    Args:
        num_classes: optional state size.
        feature_dim: optional feature width.
        name: metric name (default `"self_duality"`).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=[keras_nc.metrics.SelfDuality()])
    ```
    """

    _key = "self_duality"


@keras.saving.register_keras_serializable(package="keras_nc")
class NCCAgreement(_UsesClassStatistics):
    """NC4: agreement of the classifier with the nearest-class-mean rule.

    One pass: each batch is compared with the class means accumulated so far in
    the epoch (its own samples included), so early batches use rougher means
    than late ones; `keras_nc.callbacks.CollapseMonitor` computes the exact
    two-pass value. Tends to 1 at collapse. Cheap (a `C x d` comparison per
    step), so it is updated in every step.

    Args:
        num_classes: optional state size.
        feature_dim: optional feature width.
        name: metric name (default `"ncc_agreement"`).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=[keras_nc.metrics.NCCAgreement()])
    ```
    """

    uses_class_statistics = True

    def __init__(self, num_classes=None, feature_dim=None, name="ncc_agreement", dtype=None):
        super().__init__(num_classes, feature_dim, name=name, dtype=dtype)
        self.agree = self.add_variable(shape=(), initializer="zeros", name="agree")
        self.seen = self.add_variable(shape=(), initializer="zeros", name="seen")

    def update_state(
        self, y_true, features, head_weights=None, logits=None, sample_weight=None, step=None
    ):
        if logits is None:
            head = _head(head_weights, "NCCAgreement")
            logits = ops.matmul(ops.convert_to_tensor(features), ops.transpose(head))
        super().update_state(y_true, features, head_weights, logits, sample_weight, step)
        statistics = self._statistics
        means, _, present = nc_ops.class_means(statistics.counts, statistics.sums)
        value = nc_ops.ncc_agreement(
            features, logits, means, present, means_exponent=statistics.means_exponent
        )
        n = ops.cast(ops.shape(features)[0], self.dtype)
        self.agree.assign_add(ops.cast(value, self.dtype) * n)
        self.seen.assign_add(n)

    def result(self):
        return ops.divide_no_nan(self.agree, self.seen)

    def reset_state(self):
        super().reset_state()
        self.agree.assign(0.0)
        self.seen.assign(0.0)
