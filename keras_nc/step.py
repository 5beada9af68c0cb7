"""`CollapseStep`: the quantities of one training step shared by collapse metrics and losses."""

from keras import ops

from keras_nc import ops as nc_ops
from keras_nc import sharding
from keras_nc.ops import pairing, statistics

SAMPLE_SCOPES = ("global", "device")


def check_sample_scope(sample_scope):
    """`sample_scope` if it is `"global"` or `"device"`, else a `ValueError` naming it."""
    if sample_scope not in SAMPLE_SCOPES:
        raise ValueError(f'`sample_scope` must be "global" or "device"; received {sample_scope!r}.')
    return sample_scope


class CollapseStep:
    """The quantities of one training step that collapse metrics and losses share.

    `CollapseClassifier` builds one per step and hands it to every collapse
    loss and metric (`step=`), so that, e.g., `InformationRegularizer`, `MIR()`,
    `HDR()` and `MatrixEntropy()` in one `compile` share one computation of the
    sample-head entropies instead of repeating it, and the step's labels are
    validated once (errors name them `y_true`). Values are memoised for the
    current step only, keyed by their settings (`center`, `alpha`, ...).

    Args:
        y_true: `(n,)` integer labels (or `(n, 1)`, or one-hot).
        features: `(n, d)` features.
        head_weights: `(C, d)` head rows, or None (class statistics with a
            known number of classes only).
        sample_weight: optional `(n,)` non-negative weights. The class
            statistics weight each row; the sample-head terms and the feature
            entropy use the weighted Gram `D^1/2 K D^1/2` (`keras_nc.ops.gram`):
            rows of weight 0 leave the batch, positive weights weight the
            rows; `keras_nc.ops.cma_entropy` of `batch()` reads them too.
        cache: optional dict of values already computed for this step (the
            `cache` of another `CollapseStep` of the same step, e.g. the one the
            losses used inside the gradient computation).
        sample_scope: where the sample-head terms (`sample_entropies`,
            `sample_ratios`, `feature_entropy`) are computed: `"global"` (default)
            on the whole batch; `"device"` on each device's rows under a JAX
            `keras.distribution` that splits the batch, averaged over the
            devices (`keras_nc.sharding.per_shard_mean`); the same as
            `"global"` without one.

    Example:

    >>> import numpy as np
    >>> from keras_nc.step import CollapseStep
    >>> rng = np.random.default_rng(0)
    >>> step = CollapseStep(rng.integers(0, 3, 16), rng.normal(size=(16, 4)),
    ...                     rng.normal(size=(3, 4)))
    >>> mir, hdr = step.sample_ratios(center=True, alpha=1.0)
    """

    def __init__(
        self,
        y_true,
        features,
        head_weights,
        sample_weight=None,
        cache=None,
        sample_scope="global",
    ):
        self.y_true, self.features, self.head_weights = y_true, features, head_weights
        self.sample_weight = sample_weight
        self.per_device = (
            check_sample_scope(sample_scope) == "device" and sharding.batch_shards() > 1
        )
        self._cache = dict(cache or {})
        self._batches = {}
        self._class_statistics = {}
        self._updated = set()

    @property
    def cache(self):
        """The memoised tensors, keyed by strings (a pytree every backend can carry)."""
        return dict(self._cache)

    def batch(self, num_classes=None):
        """The step's `keras_nc.ops.LabelledBatch`, validated once per step."""
        if num_classes is None:
            if self.head_weights is None:
                raise ValueError("The step has no `head_weights`: pass `num_classes`.")
            num_classes = int(ops.shape(self.head_weights)[0])
        if num_classes not in self._batches:
            self._batches[num_classes] = nc_ops.labelled_batch(
                self.features,
                self.y_true,
                head_weights=self.head_weights,
                num_classes=num_classes,
                sample_weight=self.sample_weight,
                labels_name="y_true",
            )
        return self._batches[num_classes]

    def feature_entropy(self, center, alpha):
        """`H(K_Z)` of the batch features (`keras_nc.ops.feature_entropy`), once per setting."""
        key = f"feature_entropy/{bool(center)}/{float(alpha)}"
        if key not in self._cache:
            weight = self.sample_weight
            if self.per_device:
                sharded = (self.features,) if weight is None else (self.features, weight)
                self._cache[key] = sharding.per_shard_mean(
                    lambda rows, w=None: nc_ops.feature_entropy(
                        rows, center=center, alpha=alpha, sample_weight=w
                    ),
                    sharded,
                )
            else:
                self._cache[key] = nc_ops.feature_entropy(
                    self.features, center=center, alpha=alpha, sample_weight=weight
                )
        return self._cache[key]

    def _per_device_sample_terms(self, center, alpha):
        """`(H(K_Z), H(K_W), H(K_Z o K_W), MIR, HDR)` of each device's rows, averaged."""
        key = f"device_sample_terms/{bool(center)}/{float(alpha)}"
        if key not in self._cache:
            batch = self.batch()

            def local(features, labels, *rest):
                weight, head = (None, rest[0]) if len(rest) == 1 else rest
                entropies = nc_ops.sample_head_entropies(
                    features, labels, head, center=center, alpha=alpha, sample_weight=weight
                )
                n = int(features.shape[0])
                if weight is not None:
                    n = ops.sum(ops.cast(weight > 0, "int32"))
                return ops.stack([*entropies, *nc_ops.ratios_from_entropies(*entropies, n)])

            sharded = (batch.features, batch.labels)
            if batch.sample_weight is not None:
                sharded += (batch.sample_weight,)
            terms = sharding.per_shard_mean(local, sharded, (batch.head,))
            self._cache[key] = ops.where(batch.ok, terms, float("nan"))
            self._cache[f"feature_entropy/{bool(center)}/{float(alpha)}"] = self._cache[key][0]
        return self._cache[key]

    def sample_entropies(self, center, alpha):
        """`(H(K_Z), H(K_W), H(K_Z o K_W))` of the sample-head pairing, once per setting."""
        if self.per_device:
            return tuple(self._per_device_sample_terms(center, alpha)[i] for i in range(3))
        key = f"sample_entropies/{bool(center)}/{float(alpha)}"
        if key not in self._cache:
            feature_key = f"feature_entropy/{bool(center)}/{float(alpha)}"
            inputs = pairing.sample_head_of(self.batch(), center=center)
            entropies = pairing.sample_head_entropies_of(
                inputs, alpha, feature_entropy=self._cache.get(feature_key)
            )
            self._cache[feature_key] = entropies[0]
            self._cache[key] = ops.stack(entropies)
        return tuple(self._cache[key][i] for i in range(3))

    def sample_ratios(self, center, alpha):
        """`(MIR, HDR)` of the sample-head pairing (`keras_nc.ops.sample_head_ratios`)."""
        if self.per_device:
            return tuple(self._per_device_sample_terms(center, alpha)[i] for i in (3, 4))
        h_z, h_w, h_zw = self.sample_entropies(center, alpha)
        return nc_ops.ratios_from_entropies(h_z, h_w, h_zw, self.num_rows())

    def num_rows(self):
        """The batch's `n`: its rows, or (with sample weights) those of positive weight.

        A static int without weights, else a scalar int32 tensor: the `n` of
        the degenerate-case rules and of normalisations by `log n`.
        """
        batch = self.batch()
        if batch.sample_weight is not None:
            return ops.sum(ops.cast(batch.sample_weight > 0, "int32"))
        n = batch.features.shape[0]
        return n if n is not None else ops.shape(batch.features)[0]

    def class_statistics(self, num_classes, second_moment):
        """`keras_nc.ops.class_statistics` of the step, computed once per setting."""
        key = (int(num_classes), bool(second_moment))
        if key not in self._class_statistics:
            self._class_statistics[key] = statistics.class_statistics_of(
                self.batch(num_classes), second_moment=second_moment, exponent="auto"
            )
        return self._class_statistics[key]

    def update_statistics(self, accumulator):
        """Adds the step's batch to `accumulator` (a `ClassStatistics`) once per step.

        Metrics sharing one accumulator all call this; only the first call of
        a step adds the batch.
        """
        if id(accumulator) not in self._updated:
            self._updated.add(id(accumulator))
            accumulator.update_state(
                self.y_true,
                features=self.features,
                head_weights=self.head_weights,
                sample_weight=self.sample_weight,
                step=self,
            )
