"""Workarounds for the older Keras 3 releases keras-nc supports, one function each.

keras-nc declares `keras>=3.12,<4` and is tested on the oldest (`make
test-oldest-keras`, pinned in `requirements/oldest.txt`) and the newest
(`requirements/constraints.txt`) of that range. Where a Keras release in the
range lacks what keras-nc uses, the call goes through a function here, named for
what it does, that takes the direct path on the Keras releases that have it and
says in its docstring which releases need the other. Drop a workaround when the
lower bound passes the release it is for.

- `scatter_update_add`: `keras.ops.scatter_update(..., reduction="add")` (Keras 3.14;
  Keras 3.12 and 3.13 have no `reduction` argument).
"""

import re

import keras
from keras import ops


def keras_version():
    """The installed Keras release as a `(major, minor, patch)` tuple of ints.

    Pre-release and local suffixes are dropped (`"3.14.0.dev2026"` gives `(3, 14, 0)`).

    Example:

    >>> keras_version() >= (3, 12)
    True
    """
    numbers = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", keras.__version__).groups()
    return tuple(int(number or 0) for number in numbers)


def scatter_update_add(inputs, indices, updates):
    """`inputs` with the rows of `updates` added at the rows `indices[:, 0]` (repeats sum).

    The same as `keras.ops.scatter_update(inputs, indices, updates, reduction="add")`,
    which Keras 3.14 introduced. On Keras 3.12 and 3.13, whose `scatter_update` has
    no `reduction`, the sum is `keras.ops.segment_sum` of `updates` per row, added to
    `inputs` (`keras.ops.scatter` would also sum repeats, but Keras 3.13 and older
    run it as a Python loop over the rows on PyTorch).

    Args:
        inputs: tensor of shape `(rows, ...)`.
        indices: integer tensor of shape `(n, 1)`: the row of each update.
        updates: tensor of shape `(n, ...)` (the trailing shape of `inputs`).

    Returns:
        A tensor shaped like `inputs`.

    Example:

    >>> import numpy as np
    >>> out = scatter_update_add(np.zeros((3, 2)), np.array([[0], [2], [0]]), np.ones((3, 2)))
    >>> keras.ops.convert_to_numpy(out).tolist()
    [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]]
    """
    if keras_version() >= (3, 14):
        return ops.scatter_update(inputs, indices, updates, reduction="add")
    if indices.shape[-1] != 1:
        raise ValueError(
            "`scatter_update_add` adds whole rows: `indices` must have shape (n, 1); "
            f"received shape {tuple(indices.shape)}."
        )
    inputs = ops.convert_to_tensor(inputs)
    sums = ops.segment_sum(updates, ops.reshape(indices, (-1,)), num_segments=inputs.shape[0])
    return inputs + ops.cast(sums, inputs.dtype)
