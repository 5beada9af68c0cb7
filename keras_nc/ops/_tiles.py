"""Sums over pairs of rows in tiles: `C x C` quantities without `C x C` matrices.

CDNV and the order-2 entropy of the class pairing's Hadamard product are sums
over all pairs of classes of a function of two rows. With `C` rows they would
need `C x C` matrices (800 MB each in float64 at C = 10,000); here the rows are
cut into `T` blocks of at most `block_size` rows (zero-padded to one block
shape, so a compiled program holds one tile shape) and the sum runs over the
`T (T + 1) / 2` tiles `(I, J)` with `I <= J`, the tiles off the diagonal
counted twice (the summands are symmetric in the two rows). Memory: a few
`block_size x block_size` temporaries; work: half of the full matrix.

Eager calls loop in Python (each tile's operations dispatched as they come);
traced calls (`jax.jit`, `tf.function`, `torch.compile`) loop with
`keras.ops.fori_loop`, so a compiled program holds one tile, not `T^2 / 2`.
"""

import math

import numpy as np
from keras import ops

from keras_nc.ops._guards import is_concrete

DEFAULT_BLOCK_SIZE = 2048


def block_layout(rows, block_size=None):
    """`(num_blocks, block)`: the fewest blocks of at most `block_size` rows, padding least.

    Args:
        rows: the static number of rows.
        block_size: largest block (default `DEFAULT_BLOCK_SIZE`).

    Returns:
        Two ints with `num_blocks * block >= rows > (num_blocks - 1) * block`.
    """
    if block_size is None:
        block_size = DEFAULT_BLOCK_SIZE
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
        raise ValueError(f"`block_size` must be a positive integer; received {block_size!r}.")
    if block_size < 1:
        raise ValueError(f"`block_size` must be a positive integer; received {block_size}.")
    block_size = int(block_size)
    num_blocks = max(1, math.ceil(rows / block_size))
    return num_blocks, max(1, math.ceil(rows / num_blocks))


def _blocked(x, num_blocks, block):
    """`x` (rows, ...) zero-padded to `num_blocks * block` rows, as `(num_blocks, block, ...)`."""
    rows, rest = int(x.shape[0]), tuple(x.shape[1:])
    pad = num_blocks * block - rows
    if pad:
        x = ops.concatenate([x, ops.zeros((pad, *rest), dtype=x.dtype)], axis=0)
    return ops.reshape(x, (num_blocks, block, *rest))


def pair_sum(arrays, tile_fn, block_size=None):
    """`sum_{I, J} tile_fn(rows_I, rows_J, same)` over all ordered pairs of row blocks.

    Args:
        arrays: a list of tensors with the same static number of rows (axis 0);
            padding rows are zero, so `tile_fn` must give 0 for them (mask them).
        tile_fn: `(rows_i, rows_j, same) -> scalar`, where `rows_i`/`rows_j` are
            lists of the blocks of `arrays` and `same` is 1.0 on a diagonal tile
            (`I == J`, where `rows_i` and `rows_j` are the same rows) and 0.0
            elsewhere, a float scalar of the arrays' dtype. It must be
            symmetric: `tile_fn(b, a, same) == tile_fn(a, b, same)`.
        block_size: rows per block (default `DEFAULT_BLOCK_SIZE`).

    Returns:
        A scalar tensor: the sum over every ordered pair of rows, computed
        from the tiles `I <= J` (those off the diagonal twice).
    """
    rows = int(arrays[0].shape[0])
    dtype = arrays[0].dtype
    num_blocks, block = block_layout(rows, block_size)
    if num_blocks == 1:
        return tile_fn(list(arrays), list(arrays), ops.ones((), dtype=dtype))
    blocks = [_blocked(x, num_blocks, block) for x in arrays]
    first, second = np.triu_indices(num_blocks)
    if all(is_concrete(x) for x in arrays):
        total = ops.zeros((), dtype=dtype)
        for i, j in zip(first.tolist(), second.tolist(), strict=True):
            same = ops.ones((), dtype=dtype) if i == j else ops.zeros((), dtype=dtype)
            value = tile_fn([b[i] for b in blocks], [b[j] for b in blocks], same)
            total = total + (1.0 if i == j else 2.0) * value
        return total
    first_t = ops.convert_to_tensor(first.astype("int32"))
    second_t = ops.convert_to_tensor(second.astype("int32"))

    def body(k, carry):
        total, *tensors = carry
        i, j = ops.take(first_t, k), ops.take(second_t, k)
        same = ops.cast(ops.equal(i, j), dtype)
        rows_i = [ops.take(t, i, axis=0) for t in tensors]
        rows_j = [ops.take(t, j, axis=0) for t in tensors]
        return [total + (2.0 - same) * tile_fn(rows_i, rows_j, same), *tensors]

    # The blocks travel in the loop's carry, not as constants captured by the body.
    carry = ops.fori_loop(0, len(first), body, [ops.zeros((), dtype=dtype), *blocks])
    return carry[0]


def off_diagonal(same, rows, cols, dtype):
    """`1 - same * I` `(rows, cols)`: leaves out a diagonal tile's pairs of a row with itself."""
    return 1.0 - same * ops.eye(rows, cols, dtype=dtype)
