"""The Cross-Modal Alignment entropy, with the layout of its class groups picked by shape.

The value is the mean over the classes present of the normalised entropy of
each class group (the class's features and its anchor). Three exact layouts
compute the groups' spectra; `cma_entropy_of(layout="auto")` picks one from
the static shapes (and, where only the data can tell, the size of the largest
group, through `keras.ops.switch` under compilation):

- `"block"`: the groups as the diagonal blocks of one `(n + P) x (n + P)`
  matrix, `P = min(C, n)` slots (one `eigh` with eigenvectors, which attribute
  each eigenvalue to its group). Its cost does not depend on how the samples
  fall into classes: the layout for many classes (`P` close to `n`).
- `"padded"`: each group's Gram in its own `s x s` matrix, `s` a static size
  at least the largest group (zero rows pad the smaller ones; zero rows add
  eigenvalues 0, which count as `0 log 0 = 0`), in one batched `eigh` of
  `(P, s, s)`. Valid only when every group fits, hence a few candidate sizes
  chosen by the data at run time, the other layouts as the fallback.
- `"width"`: each group from its `d x d` side `G_c^T G_c` (same non-zero
  spectrum), `(P, d, d)`: for few classes with more members than `d`.

Two more, which `"auto"` takes for groups narrower than `d`, normalise the
rows on the groups' Grams (`K_ij = G_ij s_i s_j`, `s_i` the inverse row
norm), so the `n x d` features are read by one gather and no pass more:

- eagerly (concrete labels, PyTorch and TensorFlow): each group's Gram at its
  own size, groups of similar sizes in runs sharing one product and one
  `eigh` where padding them costs less than separate calls (`eager_runs`);
- under JAX's `jit` with few classes (`PER_GROUP_SLOTS`): a loop over the
  groups, each padded to the smallest of a few static sizes that holds it
  (`group_sizes`; one `keras.ops.switch` per group), not to the largest group.

Gradients flow through each eigenvalue as the Rayleigh quotient of its
eigenvector (no eigenvector derivative), exact also for repeated eigenvalues.

This module holds the public functions and the dispatcher; the layouts of
normalised rows are in `keras_nc.ops.cma_layouts`, those that normalise on
the groups' Grams in `keras_nc.ops.cma_grams`, and the cost model that
chooses among them in `keras_nc.ops.cma_plan` (its names are re-exported
here: `plan`, `layout_costs`, `padded_cost`, `group_sizes`, `eager_runs`,
`tiers`).
"""

import functools

from keras import ops

from keras_nc import compat
from keras_nc.deprecation import renamed_arguments
from keras_nc.ops._guards import is_concrete, labelled_batch, nan_unless
from keras_nc.ops.cma_grams import eager_entropy, eager_groups, per_group_entropy
from keras_nc.ops.cma_layouts import (
    block_entropy,
    normalised_groups,
    padded_entropy,
    tiered_entropy,
    width_entropy,
)
from keras_nc.ops.cma_plan import (
    PER_GROUP_SLOTS,
    eager_runs,
    group_sizes,
    layout_costs,
    padded_cost,
    plan,
    tiers,
)

__all__ = [
    "LAYOUTS",
    "PER_GROUP_SLOTS",
    "cma_entropy",
    "cma_entropy_of",
    "eager_runs",
    "group_sizes",
    "layout_costs",
    "padded_cost",
    "plan",
    "tiers",
]

LAYOUTS = ("auto", "block", "padded", "width")


def _auto_eager(batch, eps):
    """The `"auto"` choice with concrete labels: `eager_entropy` where padding wins, else None."""
    n, d = batch.features.shape
    fallback, sizes = plan(n, batch.num_classes, d)
    if not sizes:
        return None
    classes, members = eager_groups(batch.labels, batch.sample_weight, batch.num_classes)
    largest = max((len(rows) + 1 for rows in members), default=1)
    costs = layout_costs(n, batch.num_classes, d)
    if largest > d or padded_cost(n, batch.num_classes, d, largest) >= costs[fallback]:
        return None  # the layouts of normalised rows (groups wider than d: their d x d sides)
    return eager_entropy(batch, eps, classes, members)


def _takes_per_group(batch, counts):
    """Whether `"auto"` takes `per_group_entropy`: JAX under `jit`, few slots, sizes planned."""
    n, d = batch.features.shape
    return (
        compat.decomposes_one_matrix_per_call()
        and not is_concrete(counts)
        and min(batch.num_classes, n) <= PER_GROUP_SLOTS
        and bool(plan(n, batch.num_classes, d)[1])
    )


def _largest_group(counts):
    return ops.amax(counts) + 1.0


def _auto(zhat, what, labels, member, counts):
    n, d = zhat.shape
    fallback, sizes = plan(n, counts.shape[0], d)
    layouts = {
        "block": lambda: block_entropy(zhat, what, member, counts),
        "width": lambda: width_entropy(zhat, what, member, counts),
    }
    if not sizes:
        return layouts[fallback]()
    largest = _largest_group(counts)
    if is_concrete(largest) and not compat.eager_ops_compile_per_shape():
        # Eager: the data is known; groups of similar sizes padded together.
        needed = int(ops.convert_to_numpy(largest))
        if (
            padded_cost(n, counts.shape[0], d, needed)
            < layout_costs(n, counts.shape[0], d)[fallback]
        ):
            return tiered_entropy(zhat, what, labels, member, counts)
        return layouts[fallback]()
    if not compat.compiled_branches_on_data():  # torch.compile
        return layouts[fallback]()
    index = ops.sum(ops.cast(largest > ops.convert_to_tensor(sizes, counts.dtype), "int32"))
    branches = [
        functools.partial(padded_entropy, zhat, what, labels, member, counts, s) for s in sizes
    ]
    branches.append(layouts[fallback])
    return ops.switch(index, branches)


@renamed_arguments(anchors="head_weights")
def cma_entropy(features, head_weights, labels, eps=1e-6, sample_weight=None, layout="auto"):
    """Cross-modal alignment entropy (the CMA term of arXiv 2409.16767).

    For every class `c` present in the batch, the group
    `G_c = {zhat_i : y_i = c} U {that_c}` of `m_c = n_c + 1` unit vectors has the
    normalised entropy `H(Gram(G_c)) / log(m_c)`; the result is their mean over
    the classes present. It is 0 when every class's features and its anchor (its
    row of `head_weights`) point the same way, and at most 1.

    Sample weights: a row of weight 0 leaves its class group, and a class whose
    rows all have weight 0 is absent. Positive weights weight the rows within a
    group: the group's Gram is `D^1/2 Gram(G_c) D^1/2` with `D` the rows'
    weights divided by the mean positive weight of the batch and 1 for the
    anchor (so the anchor counts as an average sample, and multiplying all
    weights by a constant changes nothing); `m_c` counts the rows of positive
    weight, and the mean over classes is unweighted.

    Jit-compatible with static shapes and exact whatever the layout: the
    groups' spectra come from one block-diagonal `eigh` of size `n + min(C, n)`
    (many classes), from per-group Grams padded to a common size in one batched
    `eigh` (few classes, large batches: the size is picked from a few static
    candidates by the largest group at run time), or from the groups' `d x d`
    sides; `layout="auto"` picks the cheapest by shape (see the Performance
    page). This replaces a Python loop over classes. Gradients flow through the
    eigenvalues as Rayleigh quotients, exact also when eigenvalues repeat; no
    derivative of the eigenvectors is taken.

    Args:
        features: `(n, d)` features of one modality (e.g. image embeddings).
        head_weights: `(C, d)` class anchors of the other modality (e.g. text
            embeddings of the class prompts: the head rows of a CLIP
            zero-shot classifier). Formerly `anchors`, which still works as
            a keyword, with a `DeprecationWarning`.
        labels: `(n,)` integer labels in `[0, C)`.
        eps: row-norm floor (see `gram`).
        sample_weight: optional `(n,)` non-negative weights (see above).
        layout: `"auto"` (default), or one of `"block"`, `"padded"` (padded to
            `n + 1` rows: fits any labels), `"width"` to force one.

    Returns:
        A scalar tensor in `[0, 1]`; 0 for an empty batch (or all weights 0).
        Non-finite inputs, negative weights and labels outside `[0, C)` raise
        in eager calls and give NaN inside compiled functions.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> features = np.tile([[1.0, 0.0]], (4, 1))  # every sample on its anchor
    >>> head_weights = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(nc_ops.cma_entropy(features, head_weights, np.zeros(4, "int32"))), 6)
    0.0
    """
    batch = labelled_batch(features, labels, head_weights, sample_weight=sample_weight)
    return cma_entropy_of(batch, eps, layout=layout)


def cma_entropy_of(batch, eps=1e-6, layout="auto"):
    """`cma_entropy` of a `LabelledBatch` whose head rows are the class anchors.

    Reads the batch's `sample_weight` (see `cma_entropy`).

    Args:
        batch: a `LabelledBatch` (`keras_nc.ops.labelled_batch`) with `head`.
        eps: row-norm floor (see `gram`).
        layout: `"auto"`, `"block"`, `"padded"` or `"width"` (see `cma_entropy`).

    Returns:
        A scalar tensor (see `cma_entropy`).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}; received {layout!r}.")
    n = batch.features.shape[0]
    if n == 0:
        return ops.zeros((), dtype=batch.features.dtype)
    if (
        layout == "auto"
        and n is not None
        and not compat.eager_ops_compile_per_shape()
        and is_concrete(batch.labels)
    ):
        value = _auto_eager(batch, eps)
        if value is not None:
            return nan_unless(batch.ok, value)
    zhat, what, member, counts = normalised_groups(batch, eps)
    if n is None or layout == "block":
        value = block_entropy(zhat, what, member, counts)
    elif layout == "width":
        value = width_entropy(zhat, what, member, counts)
    elif layout == "padded":
        value = padded_entropy(zhat, what, batch.labels, member, counts, n + 1)
    elif _takes_per_group(batch, counts):
        sizes = plan(n, batch.num_classes, batch.features.shape[1])[1]
        value = per_group_entropy(batch, eps, member, counts, group_sizes(sizes))
    else:
        value = _auto(zhat, what, batch.labels, member, counts)
    return nan_unless(batch.ok, value)
