"""Per-batch measures: matrix entropy of the features, sample-pairing MIR and HDR."""

import keras
from keras import ops

from keras_nc import ops as nc_ops
from keras_nc.metrics.base import DEFAULT_SAMPLE_SIZE, BatchMeasure
from keras_nc.metrics.class_measures import ClassHDR, ClassMIR
from keras_nc.ops import cma
from keras_nc.ops.guards import check_alpha, check_flag

_PAIRINGS = ("sample", "class")


def _check_pairing(pairing):
    if pairing not in _PAIRINGS:
        raise ValueError(f'`pairing` must be "sample" or "class"; received {pairing!r}.')


def _normalized(entropy, n):
    """`entropy / log n`, 0 for `n < 2` (static or traced `n`)."""
    n = ops.cast(n, entropy.dtype)
    return ops.where(n >= 2.0, entropy / ops.log(ops.maximum(n, 2.0)), 0.0)


@keras.saving.register_keras_serializable(package="keras_nc")
class MatrixEntropy(BatchMeasure):
    """Matrix entropy of the batch features (or of the classifier head).

    `of="features"`: `H(K_Z)` of the cosine Gram of `sample_size` rows of
    features (centred by their mean by default), computed on the
    `min(n, d)` side, averaged over the epoch's groups of `sample_size` rows
    gathered across batches (see `keras_nc.metrics.base.BatchMeasure`): the
    value does not depend on the loader's batch size, but it grows with
    `sample_size` (up to `log min(sample_size, d)`); compare runs at one
    `sample_size`. `of="head"`:
    `H(Gram(W))` of the head rows, averaged over batches. At Neural Collapse
    both tend to `log(C - 1)` (`keras_nc.theory.entropy_at_collapse`).

    Args:
        of: `"features"` or `"head"`.
        center: centre the features by the batch mean (default `True`).
        alpha: entropy order (1: von Neumann; see `keras_nc.ops.matrix_entropy`).
        normalize: divide by `log n` (by `log C` for the head).
        sample_size: rows per estimate (default 128); None: one estimate
            per batch, whose value then depends on the batch size.
        name: metric name (default `"matrix_entropy"`; `"head_entropy"` for
            `of="head"`).
        dtype: metric dtype.

    Example:

    ```python
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=10)
    model.compile(metrics=["accuracy", keras_nc.metrics.MatrixEntropy()])
    ```
    """

    direction = "down"

    def __init__(
        self,
        of="features",
        center=True,
        alpha=1.0,
        normalize=False,
        sample_size=DEFAULT_SAMPLE_SIZE,
        name=None,
        dtype=None,
    ):
        if of not in ("features", "head"):
            raise ValueError(f'`of` must be "features" or "head"; received {of!r}.')
        name = name or ("matrix_entropy" if of == "features" else "head_entropy")
        super().__init__(sample_size=sample_size, name=name, dtype=dtype)
        self.groups_rows = of == "features"  # the head's entropy reads no rows
        self.of, self.center = of, check_flag(center, "center")
        self.normalize = check_flag(normalize, "normalize")
        self.alpha = check_alpha(alpha)
        self.needs_head = of == "head"  # the features' entropy reads no head

    def measure(self, step, features):
        if self.of == "head":
            head = ops.convert_to_tensor(step.head_weights)
            return nc_ops.matrix_entropy(
                nc_ops.gram(head), alpha=self.alpha, normalize=self.normalize
            )
        value = step.feature_entropy(self.center, self.alpha)
        if not self.normalize:
            return value
        n = ops.shape(features)[0]
        if step.sample_weight is not None:  # rows of weight 0 have left the Gram
            n = ops.sum(ops.cast(ops.convert_to_tensor(step.sample_weight) > 0, "int32"))
        return _normalized(value, n)

    def weight(self, features, sample_weight):
        if self.of == "head":  # one value of the head per batch
            return ops.ones((), dtype="float32")
        return super().weight(features, sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "of": self.of,
            "center": self.center,
            "alpha": self.alpha,
            "normalize": self.normalize,
        }


class _SampleRatio(BatchMeasure):
    """MIR or HDR of the sample-head pairing, averaged over batches."""

    _index = None  # 0: MIR, 1: HDR
    _class_pairing = None  # the class to build for pairing="class"
    _default_names = None  # (sample, class)

    def __new__(cls, pairing="sample", *args, **kwargs):
        _check_pairing(pairing)
        if pairing == "class":  # a documented factory: the class pairing's own class
            if kwargs.pop("sample_size", None) is not None:
                raise ValueError(
                    "`sample_size` sets the rows of each estimate of the sample pairing; the "
                    'class pairing (`pairing="class"`) reads the class means of the whole '
                    "epoch: leave it out."
                )
            return cls._class_pairing(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, pairing="sample", center=True, alpha=1.0, num_classes=None,
                 feature_dim=None, sample_size=DEFAULT_SAMPLE_SIZE, name=None,
                 dtype=None):  # fmt: skip
        super().__init__(sample_size=sample_size, name=name or self._default_names[0], dtype=dtype)
        self.pairing, self.center = "sample", check_flag(center, "center")
        self.alpha = check_alpha(alpha)

    def measure(self, step, features):
        return step.sample_ratios(self.center, self.alpha)[self._index]

    def get_config(self):
        return {
            **super().get_config(),
            "pairing": self.pairing,
            "center": self.center,
            "alpha": self.alpha,
        }


@keras.saving.register_keras_serializable(package="keras_nc")
class MIR(_SampleRatio):
    """Matrix Mutual Information Ratio between features and classifier head.

    `pairing="sample"` (default, what the paper tracks): the cosine Gram of
    `sample_size` rows of features (centred by their mean) against that of
    the head rows picked by their labels, averaged over the epoch's groups of
    `sample_size` rows gathered across the loader's batches. The value
    depends on `sample_size` and on C, not on the batch size: on a trained
    network it falls as `sample_size` grows (the docs' Concepts page,
    "Reading the measures", has a measured table); compare runs at one
    `sample_size`. With `sample_size=None` each batch is one estimate.
    `pairing="class"` returns a `ClassMIR` (a factory: the class pairing has its
    own class and state): per-class sums are accumulated over the epoch (mergeable
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
        sample_size: sample pairing: rows per estimate (default 128; None:
            one per batch). Not for the class pairing.
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
    _class_pairing = ClassMIR
    _default_names = ("mir", "mir_class")
    direction = "up"


@keras.saving.register_keras_serializable(package="keras_nc")
class HDR(_SampleRatio):
    """Matrix Entropy Difference Ratio between features and classifier head.

    Same pairings and arguments as `MIR` (`pairing="class"` returns a `ClassHDR`);
    falls towards 0 at Neural Collapse.
    Two rank-1 Grams (a collapsed single-class batch) give 0.

    Args:
        pairing: `"sample"` or `"class"`.
        center: centre the features (see `MIR`).
        alpha: entropy order.
        num_classes: optional, class pairing state size.
        feature_dim: optional, class pairing feature width.
        sample_size: sample pairing: rows per estimate (default 128; None:
            one per batch).
        name: metric name (default `"hdr"`, `"hdr_class"` for the class
            pairing).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(metrics=[HDR(), HDR(pairing="class", name="hdr_class")])
    ```
    """

    _index = 1
    _class_pairing = ClassHDR
    _default_names = ("hdr", "hdr_class")
    direction = "down"


@keras.saving.register_keras_serializable(package="keras_nc")
class CMA(BatchMeasure):
    """The Cross-Modal Alignment entropy of each batch, averaged over the epoch.

    The quantity `keras_nc.losses.CMALoss` minimises (arXiv 2409.16767), without
    the loss weight: for each class present in the batch, the normalised matrix
    entropy of its samples' features together with its head row (the class
    anchor), averaged over the classes present (`keras_nc.ops.cma_entropy`).
    In `[0, 1]`: 0 when every class's features lie on its anchor's direction,
    lower is better. Averaged over the epoch's groups of `sample_size` rows
    gathered across batches (see `MIR`).

    The value depends on `sample_size` (not on the loader's batch size): a
    class group of `m` members has normalised entropy `H / log m`, and
    unaligned random features give values near 1 for any `m` (the chance
    level), so compare runs at one `sample_size`.

    Args:
        sample_size: rows per estimate (default 128; None: one per batch).
        name: metric name (default `"cma"`).
        dtype: metric dtype.

    Example:

    ```python
    model.compile(
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(0.5)],
        metrics=["accuracy", keras_nc.metrics.CMA()],
    )  # logs `cma` (this metric) and `cma_loss` (the weighted loss term)
    ```
    """

    direction = "down"

    def __init__(self, sample_size=DEFAULT_SAMPLE_SIZE, name="cma", dtype=None):
        super().__init__(sample_size=sample_size, name=name, dtype=dtype)

    def measure(self, step, features):
        return cma.cma_entropy_of(step.batch())
