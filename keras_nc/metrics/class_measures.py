"""Measures of a whole epoch's class statistics: class-pairing MIR/HDR, NC1-NC4, CDNV."""

import keras
from keras import ops

from keras_nc import compat
from keras_nc import ops as nc_ops
from keras_nc.metrics.base import CollapseMetric
from keras_nc.metrics.class_statistics import ClassStatistics
from keras_nc.ops.guards import check_alpha, check_flag, is_concrete


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
            self._tracker.untrack(self.statistics)
        object.__setattr__(self, "statistics", statistics)
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
            object.__setattr__(self, "_last_value_cache", (token, value))
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


BASELINES = (None, "chance", "excess")


class _ClassRatio(EpochMeasure):
    """MIR or HDR of the class pairing."""

    _index = None  # 0: MIR, 1: HDR
    _default_name = None

    def __init__(self, center=True, alpha=1.0, num_classes=None, feature_dim=None,
                 baseline=None, permutations=16, name=None, dtype=None):  # fmt: skip
        if baseline not in BASELINES:
            raise ValueError(
                f'`baseline` must be None, "chance" or "excess"; received {baseline!r}.'
            )
        default = self._default_name + ("" if baseline is None else f"_{baseline}")
        super().__init__(num_classes, feature_dim, name=name or default, dtype=dtype)
        self.pairing, self.center = "class", check_flag(center, "center")
        self.alpha = check_alpha(alpha)
        self.baseline = baseline
        if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
            raise ValueError(
                f"`permutations` must be a positive integer; received {permutations!r}."
            )
        self.permutations = permutations
        if baseline == "chance":
            self.direction = None  # a reference level, not a score to monitor
        elif baseline == "excess":
            self.direction = "up"

    def compute(self, statistics):
        value = self._value(statistics)
        if self.baseline is None:
            return value
        chance = self._chance(statistics)
        if self.baseline == "chance":
            return chance
        # The excess points the way of collapse: MIR above, HDR below its chance.
        return value - chance if self._index == 0 else chance - value

    def _arguments(self, statistics):
        # Centred class means are the same from the sums about the pivot, which
        # have no cancellation when the features share a large common part.
        sums = statistics.statistics()["sums"] if self.center else statistics.sums
        return (statistics.counts, sums, statistics.head, self.center, self.alpha)

    def _chance(self, statistics):
        arguments = self._arguments(statistics)

        def chance():
            return nc_ops.class_pairing_chance(*arguments, permutations=self.permutations)

        key = f"pairing_chance/{self.center}/{float(self.alpha)}/{self.permutations}"
        return statistics.epoch_value(key, chance)[self._index]

    def _value(self, statistics):
        arguments = self._arguments(statistics)

        def ratios():
            return nc_ops.class_pairing_ratios(*arguments)

        def hdr():
            return nc_ops.class_pairing_hdr(*arguments)

        if self._index == 1:  # HDR alone needs no C x C matrix (cheap at any C)
            return statistics.epoch_value(f"pairing_hdr/{self.center}/{float(self.alpha)}", hdr)
        key = f"pairing/{self.center}/{float(self.alpha)}"
        return statistics.epoch_value(key, ratios)[self._index]

    def get_config(self):
        return {
            **super().get_config(),
            "center": self.center,
            "alpha": self.alpha,
            "baseline": self.baseline,
            "permutations": self.permutations,
        }


@keras.saving.register_keras_serializable(package="keras_nc")
class ClassMIR(_ClassRatio):
    """MIR of the class pairing: the epoch's centred class means against the head rows.

    Per-class sums are accumulated over the epoch (mergeable across batches
    and devices) and the globally centred class means are compared with the
    head rows when the result is read (`keras_nc.ops.class_pairing_ratios`).
    `MIR(pairing="class")` builds one.

    Reading the value: rows unrelated to the class means score high too
    (random rows at `d >= C` give 0.96 to 1.0 for C = 10, above MIR* = 0.952),
    and at exact collapse (a simplex ETF) every relabelling of the head rows
    gives MIR* as well. `baseline="chance"` reports the chance level (the MIR
    of the class means against the head rows permuted among the classes,
    averaged over `permutations` fixed permutations,
    `keras_nc.ops.class_pairing_chance`) and `baseline="excess"` the value
    minus it: the class structure the means and the head share. Near MIR* is
    necessary for collapse, not sufficient: NC1, the ETF error and the
    self-duality decide (see the Concepts page, "Reading the measures").

    Args:
        center: centre the class means by the global mean.
        alpha: entropy order.
        num_classes: optional state size (set by `CollapseClassifier.compile`).
        feature_dim: optional feature width.
        baseline: None (the value), `"chance"` or `"excess"` (see above).
        permutations: permutations averaged for the chance level.
        name: metric name (default `"mir_class"`, `"mir_class_chance"`,
            `"mir_class_excess"`).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=[keras_nc.metrics.MIR(), keras_nc.metrics.ClassMIR(),
                           keras_nc.metrics.ClassMIR(baseline="chance")])
    ```
    """

    _index = 0
    _default_name = "mir_class"
    direction = "up"


@keras.saving.register_keras_serializable(package="keras_nc")
class ClassHDR(_ClassRatio):
    """HDR of the class pairing: the epoch's centred class means against the head rows.

    See `ClassMIR`; `HDR(pairing="class")` builds one. HDR compares the
    entropies of the two Grams only: relabelling the head rows leaves it
    unchanged, so with every class present its chance level
    (`baseline="chance"`) is its value, and HDR near 0 says that the class
    means and the head rows are equally spread, not that they are aligned.

    Args:
        center: centre the class means by the global mean.
        alpha: entropy order.
        num_classes: optional state size.
        feature_dim: optional feature width.
        baseline: None (the value), `"chance"` or `"excess"` (the chance level
            minus the value); see `ClassMIR`.
        permutations: permutations averaged for the chance level.
        name: metric name (default `"hdr_class"`, `"hdr_class_chance"`,
            `"hdr_class_excess"`).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=[keras_nc.metrics.HDR(), keras_nc.metrics.ClassHDR()])
    ```
    """

    _index = 1
    _default_name = "hdr_class"


class _NeuralCollapseMeasure(EpochMeasure):
    """One classic NC measure of the epoch's class statistics (all computed together)."""

    _key = None

    def __init__(self, num_classes=None, feature_dim=None, name=None, dtype=None):
        super().__init__(num_classes, feature_dim, name=name or self._key, dtype=dtype)

    def compute(self, statistics):
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

    `std / mean` of `r_c = ||mu_c - mu_G||` over the `C'` classes present, with
    `std = sqrt(sum_c (r_c - mean r)^2 / (C' - ddof))` (see
    `keras_nc.ops.neural_collapse_measures`).

    Args:
        num_classes: optional state size.
        feature_dim: optional feature width.
        name: metric name (default `"equinorm"`).
        dtype: metric dtype.
        ddof: `0` (default: the population standard deviation, NumPy's `std`)
            or `1` (the sample standard deviation, `torch.std`'s, larger by
            `sqrt(C' / (C' - 1))`): 1 compares with values computed by
            `torch.std` of the neural-collapse package's `mean_norms`.

    Example:

    ```python
    model.compile(metrics=[keras_nc.metrics.Equinorm()])
    ```
    """

    _key = "equinorm"

    def __init__(self, num_classes=None, feature_dim=None, name=None, dtype=None, ddof=0):
        if ddof not in (0, 1) or isinstance(ddof, bool):
            raise ValueError(f"`ddof` must be 0 or 1; received {ddof!r}.")
        super().__init__(num_classes, feature_dim, name=name, dtype=dtype)
        self.ddof = int(ddof)

    def compute(self, statistics):
        if self.ddof == 0:  # the value the other measures' shared computation holds
            return super().compute(statistics)
        stats = statistics.statistics()

        def measures():
            return nc_ops.neural_collapse_measures(
                stats, measures=["equinorm"], equinorm_ddof=self.ddof
            )

        return statistics.epoch_value(f"equinorm/{self.ddof}", measures)[self._key]

    def get_config(self):
        return {**super().get_config(), "ddof": self.ddof}


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
class NCCAgreement(StatisticsReader):
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

    direction = "up"

    def __init__(self, num_classes=None, feature_dim=None, name="ncc_agreement", dtype=None):
        super().__init__(num_classes, feature_dim, name=name, dtype=dtype)
        self.agreement = keras.metrics.Mean(name=f"{self.name}_mean", dtype=dtype)

    def update_from_step(self, step, logits=None):
        features = step.features
        if logits is None:
            if step.head_weights is None:
                raise ValueError("NCCAgreement needs `logits` or `head_weights`.")
            head = ops.convert_to_tensor(step.head_weights)
            logits = ops.matmul(ops.convert_to_tensor(features), ops.transpose(head))
        step.update_statistics(self.statistics)
        statistics = self.statistics
        means, _, present = nc_ops.class_means(statistics.counts, statistics.sums)
        value = nc_ops.ncc_agreement(
            features, logits, means, present, means_exponent=statistics.means_exponent
        )
        n = ops.shape(ops.convert_to_tensor(features))[0]
        self.agreement.update_state(value, sample_weight=ops.cast(n, self.dtype))

    def result(self):
        return self.agreement.result()

    def reset_state(self):
        super().reset_state()
        self.agreement.reset_state()
