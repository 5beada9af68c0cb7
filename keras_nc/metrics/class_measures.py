"""Measures of a whole epoch's class statistics: NC1-NC4 and CDNV.

The class-pairing MIR and HDR (`ClassMIR`, `ClassHDR`) live in
`keras_nc.metrics.class_pairing` and the readers of the accumulator
(`StatisticsReader`, `EpochMeasure`) in `keras_nc.metrics.epoch_measure`;
both are importable from here too.
"""

import keras
from keras import ops

from keras_nc import ops as nc_ops
from keras_nc.metrics.class_pairing import BASELINES, ClassHDR, ClassMIR
from keras_nc.metrics.epoch_measure import EpochMeasure, StatisticsReader

__all__ = [
    "BASELINES",
    "CDNV",
    "NC1",
    "ClassHDR",
    "ClassMIR",
    "ETFError",
    "EpochMeasure",
    "Equinorm",
    "NCCAgreement",
    "SelfDuality",
    "StatisticsReader",
]


class _NeuralCollapseMeasure(EpochMeasure):
    """One classic NC measure of the epoch's class statistics (all computed together)."""

    _key = None

    def __init__(self, num_classes=None, feature_dim=None, name=None, dtype=None):
        super().__init__(num_classes, feature_dim, name=name or self._key, dtype=dtype)

    def compute(self, statistics):
        stats = statistics.statistics()

        def measures():
            return nc_ops.neural_collapse_measures(stats, statistics.head_weights)

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
