"""`CollapseStep`: the quantities of one training step shared by collapse metrics and losses."""

from keras import ops

from keras_nc import ops as nc_ops


class CollapseStep:
    """The quantities of one training step that collapse metrics and losses share.

    `CollapseClassifier` builds one per step and hands it to every collapse
    loss and metric (`step=`), so that, e.g., `InformationRegularizer`, `MIR()`,
    `HDR()` and `MatrixEntropy()` in one `compile` share one computation of the
    sample-head entropies instead of repeating it. Values are memoised for the
    current step only, keyed by their settings (`center`, `alpha`, ...).

    Args:
        y_true: `(n,)` integer labels.
        features: `(n, d)` features.
        head_weights: `(C, d)` head rows.
        sample_weight: optional `(n,)` weights (class statistics only).
        cache: optional dict of values already computed for this step (the
            `cache` of another `CollapseStep` of the same step, e.g. the one the
            losses used inside the gradient computation).
    """

    def __init__(self, y_true, features, head_weights, sample_weight=None, cache=None):
        self.y_true, self.features, self.head_weights = y_true, features, head_weights
        self.sample_weight = sample_weight
        self._cache = dict(cache or {})
        self._class_statistics = {}
        self._updated = set()

    @property
    def cache(self):
        """The memoised tensors, keyed by strings (a pytree every backend can carry)."""
        return dict(self._cache)

    def feature_entropy(self, center, alpha):
        """`H(K_Z)` of the batch features (`keras_nc.ops.feature_entropy`), once per setting."""
        key = f"feature_entropy/{bool(center)}/{float(alpha)}"
        if key not in self._cache:
            self._cache[key] = nc_ops.feature_entropy(
                _features(self.features), center=center, alpha=alpha
            )
        return self._cache[key]

    def sample_entropies(self, center, alpha):
        """`(H(K_Z), H(K_W), H(K_Z o K_W))` of the sample-head pairing, once per setting."""
        key = f"sample_entropies/{bool(center)}/{float(alpha)}"
        if key not in self._cache:
            head = _head(self.head_weights, "MIR/HDR")
            _check_y_true(self.y_true, head.shape[0], self.features)
            feature_key = f"feature_entropy/{bool(center)}/{float(alpha)}"
            zhat, what, labels, valid = nc_ops._sample_head_inputs(
                self.features, self.y_true, head, center, None
            )
            entropies = nc_ops._sample_head_entropies(
                zhat, what, labels, valid, nc_ops._check_alpha(alpha), self._cache.get(feature_key)
            )
            self._cache[feature_key] = entropies[0]
            self._cache[key] = ops.stack(entropies)
        return tuple(self._cache[key][i] for i in range(3))

    def sample_ratios(self, center, alpha):
        """`(MIR, HDR)` of the sample-head pairing (`keras_nc.ops.sample_head_ratios`)."""
        h_z, h_w, h_zw = self.sample_entropies(center, alpha)
        n = nc_ops._num_rows(_features(self.features))
        return nc_ops._information_ratios(h_z, h_w, h_zw, n)

    def update_statistics(self, statistics):
        """Adds the step's batch to `statistics` (a `ClassStatistics`) once per step.

        Metrics sharing one accumulator all call this; only the first call of
        a step adds the batch.
        """
        if id(statistics) not in self._updated:
            self._updated.add(id(statistics))
            statistics.update_state(
                self.y_true, self.features, self.head_weights, self.sample_weight, step=self
            )

    def class_statistics(self, num_classes, second_moment):
        """`keras_nc.ops.class_statistics` of the step, computed once per setting."""
        key = (int(num_classes), bool(second_moment))
        if key not in self._class_statistics:
            _check_y_true(self.y_true, num_classes, self.features)
            self._class_statistics[key] = nc_ops.class_statistics(
                self.features,
                self.y_true,
                num_classes,
                sample_weight=self.sample_weight,
                second_moment=second_moment,
                exponent="auto",
            )
        return self._class_statistics[key]


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
