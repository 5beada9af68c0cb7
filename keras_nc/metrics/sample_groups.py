"""Rows gathered across loader batches into groups of a fixed size, in metric state.

The per-batch measures (`MIR`, `HDR`, `MatrixEntropy`, `CMA`, `RankMe`) are
functions of a set of rows, and their value depends on how many rows a set
holds. With `sample_size=m`, a metric computes its measure on consecutive
groups of `m` rows, whatever the loader's batch size: the rows of each batch
are appended to a buffer of at most `m` rows, each full group is measured and
the buffer keeps the rest. The buffer is a few metric variables of static
shape, so it works inside compiled steps (`jit_compile=True`) on every
backend.
"""

from keras import ops

from keras_nc.ops.guards import is_concrete


class SampleGroups:
    """The buffer of a metric measuring groups of `size` rows.

    Holds `(size, d)` features, `(size,)` labels and weights and the number of
    rows filled, as variables of `owner` (a `keras.metrics.Metric`).

    Args:
        owner: the metric whose variables hold the buffer.
        size: rows per group (`m`).
        feature_dim: `d`.
    """

    def __init__(self, owner, size, feature_dim):
        self.size, self.feature_dim = int(size), int(feature_dim)
        self.features = owner.add_variable(
            shape=(self.size, self.feature_dim), initializer="zeros", dtype="float32",
            name="group_features",
        )  # fmt: skip
        self.labels = owner.add_variable(
            shape=(self.size,), initializer="zeros", dtype="int32", name="group_labels"
        )
        self.weights = owner.add_variable(
            shape=(self.size,), initializer="zeros", dtype="float32", name="group_weights"
        )
        self.filled = owner.add_variable(
            shape=(), initializer="zeros", dtype="int32", name="group_filled"
        )

    def reset(self):
        for variable in (self.features, self.labels, self.weights, self.filled):
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def add(self, features, labels, weights, measure, whole_batch=None):
        """Appends a batch's rows and measures every group it completes.

        Rows of weight 0 are left out (a zero sample weight masks a row); a
        NaN weight (a row a compiled step found invalid) is kept, so that the
        group it falls in measures NaN.

        Args:
            features: `(n, d)` features.
            labels: `(n,)` int32 class indices.
            weights: `(n,)` float32 weights.
            measure: `measure(features, labels, weights)` of one `(size, d)`
                group: a scalar tensor.
            whole_batch: optional, for a batch of exactly `size` rows of
                weight 1: `whole_batch()` is its value (one the step may have
                computed already), used when the buffer is empty.

        Returns:
            `(total, count)`: the sum of the groups' values, each times its
            weight (the sum of its rows' weights), and the sum of those weights.
        """
        features = ops.cast(features, "float32")
        labels = ops.cast(labels, "int32")
        weights = ops.cast(weights, "float32")
        state = tuple(v.value for v in (self.features, self.labels, self.weights, self.filled))

        def gather():
            return self._gather(state, features, labels, weights, measure)

        if whole_batch is None:
            total, count, state = gather()
        else:
            count = ops.convert_to_tensor(float(self.size), "float32")
            empty = state[3] == 0
            if is_concrete(empty):
                if bool(ops.convert_to_numpy(empty)):
                    total = ops.cast(whole_batch(), "float32") * count
                else:
                    total, count, state = gather()
            else:
                # The batch's value outside the `cond`: the step memoises it
                # (a value computed inside a branch must not escape it).
                total = ops.cast(whole_batch(), "float32") * count
                total, count, state = ops.cond(empty, lambda: (total, count, state), gather)
        for variable, value in zip(
            (self.features, self.labels, self.weights, self.filled), state, strict=True
        ):
            variable.assign(value)
        return total, count

    def _gather(self, state, features, labels, weights, measure):
        """`add` without its shortcut, as a function of the state: `(total, count, new state)`."""
        size, width = self.size, self.feature_dim
        buffer, buffer_labels, buffer_weights, filled = state
        keep = ops.logical_not(weights <= 0.0)
        kept = ops.cast(keep, "int32")
        # Compaction by a sort key: the buffer's filled rows first, then the
        # batch's kept rows in their order, then the rest (unique keys).
        n = ops.shape(features)[0]
        spare = size + 1  # rows of padding, so that any group slice stays in range
        total_rows = size + n + spare
        positions = ops.cast(ops.arange(total_rows), "int32")
        head = positions[:size]
        buffer_key = ops.where(head < filled, head, total_rows + head)
        rank = ops.cast(ops.cumsum(kept), "int32") - 1
        batch_key = ops.where(keep, filled + rank, total_rows + positions[size : size + n])
        pad_key = total_rows + positions[size + n :]
        order = ops.argsort(ops.concatenate([buffer_key, batch_key, pad_key]))
        rows = ops.take(
            ops.concatenate([buffer, features, ops.zeros((spare, width), "float32")]),
            order,
            axis=0,
        )
        all_labels = ops.take(
            ops.concatenate([buffer_labels, labels, ops.zeros((spare,), "int32")]), order
        )
        all_weights = ops.take(
            ops.concatenate([buffer_weights, weights, ops.zeros((spare,), "float32")]), order
        )
        available = filled + ops.cast(ops.sum(kept), "int32")
        groups = available // size

        def body(k, total, count):
            start = k * size
            group = ops.slice(rows, (start, 0), (size, width))
            group_labels = ops.slice(all_labels, (start,), (size,))
            group_weights = ops.slice(all_weights, (start,), (size,))
            value = ops.cast(measure(group, group_labels, group_weights), "float32")
            weight = ops.sum(group_weights)
            return k + 1, total + value * weight, count + weight

        zero = ops.zeros((), "float32")
        if is_concrete(groups):  # eager: a Python loop (no loop to trace each call)
            total = count = zero
            for k in range(int(ops.convert_to_numpy(groups))):
                _, total, count = body(k, total, count)
        else:
            _, total, count = ops.while_loop(
                lambda k, total, count: k < groups, body, (ops.zeros((), "int32"), zero, zero)
            )
        start = groups * size
        rest = available - start
        rest_weights = ops.slice(all_weights, (start,), (size,))
        state = (
            ops.slice(rows, (start, 0), (size, width)),
            ops.slice(all_labels, (start,), (size,)),
            ops.where(ops.arange(size) < rest, rest_weights, 0.0),
            ops.cast(rest, "int32"),
        )
        return total, count, state

    def measure_rest(self, measure):
        """`measure` of the rows gathered so far (fewer than `size`): the unfilled rows weigh 0."""
        return measure(self.features.value, self.labels.value, self.weights.value)
