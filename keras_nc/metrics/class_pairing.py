"""`ClassMIR`, `ClassHDR`: MIR and HDR of the class pairing, with their chance levels.

The epoch's centred class means against the head weights
(`keras_nc.ops.class_pairing_ratios`, arXiv 2409.16767); `baseline="chance"`
and `"excess"` read the chance level of the pairing
(`keras_nc.ops.class_pairing_chance`).
"""

import keras

from keras_nc import ops as nc_ops
from keras_nc.metrics.epoch_measure import EpochMeasure
from keras_nc.ops.guards import check_alpha, check_flag

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
        return (statistics.counts, sums, statistics.head_weights, self.center, self.alpha)

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
