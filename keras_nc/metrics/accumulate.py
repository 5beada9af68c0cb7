"""Adding a batch's class sums to a `ClassStatistics` state, in the state's units.

A float64 state holds the sums in the features' units: a batch's rows are
scatter-added (in place where the backend allows it,
`keras_nc.compat.metrics.scatter_add`). A float32 state holds them in units of
`2**e`, `e` the largest batch scale seen so far: a batch that raises `e`
rescales the state by powers of two (exact) before its rows are added.
"""

from keras import ops

from keras_nc.compat import metrics as compat_metrics
from keras_nc.compat.keras_versions import scatter_update_add
from keras_nc.ops import scale_exponent


def pow2(exponent):
    """`2 ** exponent` in the dtype of `exponent` (float64 stays float64 on every backend).

    Example:

    >>> from keras import ops
    >>> float(pow2(ops.convert_to_tensor(-3.0)))
    0.125
    """
    return ops.power(ops.full_like(exponent, 2.0), exponent)


def add_class_terms(statistics, terms):
    """Adds a batch's `class_sum_terms` to `statistics` (a built `ClassStatistics`).

    `n d` (+ `d^2`) work, in place where the backend allows it.

    Args:
        statistics: the `ClassStatistics` whose variables receive the batch.
        terms: the dict of `keras_nc.ops.statistics.class_sum_terms`.
    """
    if statistics.exponent is None:
        add_in_feature_units(statistics, terms)
    else:
        add_rescaled(statistics, terms)


def add_in_feature_units(statistics, terms):
    """A float64 state: the rows and moment blocks added as they are."""
    compat_metrics.scatter_add(statistics.per_class, terms["indices"], terms["rows"])
    if statistics.second_moment:  # float32 blocks of the scaled features
        factor = ops.cast(terms["moment_scale"], statistics.dtype)
        for variable, block in zip(statistics.moment_rows, terms["moment_rows"], strict=True):
            compat_metrics.add_scaled(variable, block, factor)


def add_rescaled(statistics, terms):
    """A float32 state: units of `2**exponent`, the largest batch scale so far."""
    rows, indices, dtype = terms["rows"], terms["indices"], statistics.dtype
    # Column powers: counts 0, squared norms 2, sums 1 (the second moment: 2).
    head = ops.convert_to_tensor([0.0, 2.0], dtype)
    powers = ops.concatenate([head, ops.ones((statistics.feature_dim,), dtype)])
    batch = ops.cast(terms["exponent"], dtype)
    # At least the pivot's scale minus 64: `sums` (shifted sums plus counts
    # times the pivot, in the state's units) stays in range even when the
    # shifted features are all zero (a first batch of one sample).
    floor = ops.cast(scale_exponent(statistics.pivot.value), dtype) - 64.0
    current = statistics.exponent.value
    exponent = ops.maximum(ops.maximum(current, batch), floor)
    old, new = current - exponent, batch - exponent  # both <= 0
    # The state is rescaled only when a batch raises the exponent (rarely):
    # on JAX, `lax.cond` skips the `C x (d + 2)` pass of the other steps.
    state = statistics.per_class.value
    if compat_metrics.rescale_under_cond():
        state = ops.cond(old < 0, lambda: state * pow2(powers * old), lambda: state)
    else:
        state = state * pow2(powers * old)
    added = rows * pow2(powers * new)
    statistics.per_class.assign(scatter_update_add(state, ops.expand_dims(indices, -1), added))
    if statistics.second_moment:
        rescale, scale = pow2(2.0 * old), pow2(2.0 * new)
        for variable, block in zip(statistics.moment_rows, terms["moment_rows"], strict=True):
            variable.assign(variable.value * rescale + ops.cast(block, dtype) * scale)
    statistics.exponent.assign(exponent)
