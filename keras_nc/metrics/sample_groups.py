"""Rows gathered across loader batches into groups of a fixed size, in metric state.

The per-batch measures (`MIR`, `HDR`, `MatrixEntropy`, `CMA`, `RankMe`) are
functions of a set of rows, and their value depends on how many rows a set
holds. With `sample_size=m`, a metric computes its measure on consecutive
groups of `m` rows, whatever the loader's batch size: the rows of each batch
are appended to a buffer of at most `m` rows, each full group is measured and
the buffer keeps the rest. The buffer is a few metric variables of static
shape, so it works inside compiled steps (`jit_compile=True`) on every
backend. While no group is complete (an epoch of fewer than `m` rows so far),
the rows gathered so far are measured too, on their own rows (the unfilled
rows of the group weigh 0, so they leave the Gram matrices): by one more turn
of the loop that measures the groups, so a compiled step traces the measure
once.
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

    def add(self, features, labels, weights, measure, whole_batch=None, completed=None):
        """Appends a batch's rows and measures every group it completes.

        Rows of weight 0 are left out (a zero sample weight masks a row); a
        NaN weight (a row a compiled step found invalid) is kept, so that the
        group it falls in measures NaN.

        Args:
            features: `(n, d)` features.
            labels: `(n,)` int32 class indices.
            weights: `(n,)` float32 weights.
            measure: `measure(features, labels, weights)` of one `(size, d)`
                group: a scalar tensor. Rows of weight 0 must not count (the
                rows of a partial group that are not filled weigh 0).
            whole_batch: optional, for a batch of exactly `size` rows of
                weight 1: `whole_batch()` is its value (one the step may have
                computed already), used when the buffer is empty.
            completed: optional, the weight of the groups measured before this
                batch. When given and no group is complete after this batch (an
                epoch of fewer than `size` rows so far), the rows gathered so far
                are measured as well: by the same loop as the groups, so that a
                compiled step traces `measure` once.

        Returns:
            `(total, count, rest)`: the sum of the groups' values, each times its
            weight (the sum of its rows' weights), the sum of those weights, and
            the value of the rows gathered so far (0 for fewer than 2 rows)
            where they were measured; where they were not, `rest` is 0 in a
            compiled step and None eagerly (or when `completed` is None).
        """
        features = ops.cast(features, "float32")
        labels = ops.cast(labels, "int32")
        weights = ops.cast(weights, "float32")
        state = tuple(v.value for v in (self.features, self.labels, self.weights, self.filled))

        def gather():
            return self._gather(state, features, labels, weights, measure, completed)

        if whole_batch is None:
            total, count, rest, state = gather()
        else:
            count = ops.convert_to_tensor(float(self.size), "float32")
            empty = state[3] == 0
            if is_concrete(empty):
                if bool(ops.convert_to_numpy(empty)):
                    total, rest = ops.cast(whole_batch(), "float32") * count, None
                else:
                    total, count, rest, state = gather()
            else:
                # The batch's value outside the `cond`: the step memoises it
                # (a value computed inside a branch must not escape it).
                total = ops.cast(whole_batch(), "float32") * count
                zero = ops.zeros((), "float32")  # a whole group: no rest to measure
                total, count, rest, state = ops.cond(
                    empty, lambda: (total, count, zero, state), gather
                )
        for variable, value in zip(
            (self.features, self.labels, self.weights, self.filled), state, strict=True
        ):
            variable.assign(value)
        return total, count, rest

    def _gather(self, state, features, labels, weights, measure, completed):
        """`add` without its shortcut, as a function of the state.

        Returns `(total, count, rest, new state)`.
        """
        size, width = self.size, self.feature_dim
        rows, all_labels, all_weights, available = self._compact(state, features, labels, weights)
        groups = available // size
        positions = ops.arange(size)

        def body(k, total, count, rest):
            # Group `k`, or (`k == groups`) the rows left, fewer than `size`:
            # the rows past `available` weigh 0 (and leave the Gram matrices).
            start = k * size
            group = ops.slice(rows, (start, 0), (size, width))
            group_labels = ops.slice(all_labels, (start,), (size,))
            group_weights = ops.slice(all_weights, (start,), (size,))
            group_weights = ops.where(positions < available - start, group_weights, 0.0)
            value = ops.cast(measure(group, group_labels, group_weights), "float32")
            weight = ops.sum(group_weights)
            left = k >= groups  # the rows left: kept out of the groups' mean
            total = total + ops.where(left, 0.0, value * weight)
            count = count + ops.where(left, 0.0, weight)
            rows_left = available - start
            rest = ops.where(left, ops.where(rows_left >= 2, value, 0.0), rest)
            return k + 1, total, count, rest

        zero = ops.zeros((), "float32")
        if is_concrete(groups):  # eager: a Python loop (no loop to trace each call)
            total = count = zero
            for k in range(int(ops.convert_to_numpy(groups))):
                _, total, count, _ = body(k, total, count, zero)
            rest = None
            if completed is not None and float(ops.convert_to_numpy(completed + count)) == 0:
                rest = body(groups, total, count, zero)[3]
        else:
            # One more turn of the same loop measures the rows left while no
            # group is complete: `measure` is traced once, not once more in a
            # branch of its own.
            steps = groups
            if completed is not None:
                grouped = ops.arange(ops.shape(all_weights)[0]) < groups * size
                full = ops.sum(ops.where(grouped, all_weights, 0.0))  # `count`, before the loop
                unmeasured = ops.logical_not(completed + full > 0.0)
                steps = groups + ops.cast(unmeasured, "int32")
            _, total, count, rest = ops.while_loop(
                lambda k, *_: k < steps, body, (ops.zeros((), "int32"), zero, zero, zero)
            )
        start = groups * size
        rest_rows = available - start
        state = (
            ops.slice(rows, (start, 0), (size, width)),
            ops.slice(all_labels, (start,), (size,)),
            ops.where(positions < rest_rows, ops.slice(all_weights, (start,), (size,)), 0.0),
            ops.cast(rest_rows, "int32"),
        )
        return total, count, rest, state

    def _compact(self, state, features, labels, weights):
        """The buffer's rows, then the batch's kept rows, then padding.

        Returns `(rows, labels, weights, available)`: the `available` rows
        lead, and `size + 1` rows of padding follow the buffer and the batch,
        so that any group slice stays in range.
        """
        size, width = self.size, self.feature_dim
        buffer, buffer_labels, buffer_weights, filled = state
        keep = ops.logical_not(weights <= 0.0)
        kept = ops.cast(keep, "int32")
        # Compaction by a sort key: the buffer's filled rows first, then the
        # batch's kept rows in their order, then the rest (unique keys).
        n = ops.shape(features)[0]
        spare = size + 1
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
        return rows, all_labels, all_weights, available

    def measure_rest(self, measure):
        """`measure` of the rows gathered so far (fewer than `size`): the unfilled rows weigh 0."""
        return measure(self.features.value, self.labels.value, self.weights.value)
