"""The sample-head pairing of MIR and HDR: batch features against the head rows of their labels.

Per batch, what the paper tracks and the regulariser optimises (arXiv
2409.16767): the cosine Gram `K_Z` of the batch features against the Gram
`K_W` of the head rows picked by the labels, and their entropies from the
cheapest exact side of each matrix.

Why one module: the entropies and the choice of their exact path
(`direct_sample_head`, `entropies_by_size`) are one computation.
"""

import collections
import math

from keras import ops

from keras_nc import compat
from keras_nc.ops._checks import check_alpha
from keras_nc.ops._guards import labelled_batch, nan_unless
from keras_nc.ops._spectral import (
    active_rows,
    entropy_of_psd,
    matmul,
    min_side_gram,
    normalize_rows,
    num_rows,
    outer_gram,
    weighted_rows,
)
from keras_nc.ops.information import ratios_from_entropies

SampleHead = collections.namedtuple(
    "SampleHead", ["zhat", "what", "labels", "ok", "sample_weight"], defaults=(None,)
)


SampleHead.__doc__ = """Row-normalised inputs of the sample-head pairing (`sample_head_of`).

`zhat` `(n, d)` (centred) features, each row scaled by `sqrt(w_i)` when the
batch has sample weights, `what` `(C, d)` head rows, `labels` `(n,)` class
indices, `ok` the guard's flag, `sample_weight` the `(n,)` weights or None.
"""


def sample_head_of(batch, center=True, mean=None):
    """The sample-head pairing's normalised rows from a `LabelledBatch` with head rows.

    With the batch's `sample_weight` `w`, the features are centred by the
    weighted mean and row `i` is scaled by `sqrt(w_i)`, so that `K_Z` is the
    weighted Gram `D^1/2 K_Z D^1/2` (see `keras_nc.ops.gram`).

    Args:
        batch: a `LabelledBatch` (`keras_nc.ops.labelled_batch`) with `head`.
        center: centre the features by the batch mean (weighted mean with
            sample weights).
        mean: explicit feature mean to subtract instead.

    Returns:
        A `SampleHead`.
    """
    weight = batch.sample_weight
    zhat = weighted_rows(batch.features, weight, center, mean, 1e-6)
    what = normalize_rows(batch.head, 1e-6)
    return SampleHead(zhat, what, batch.labels, batch.ok, weight)


def sample_head_grams(features, labels, head_weights, center=True, mean=None, sample_weight=None):
    """Gram matrices of the sample-head pairing.

    `K_Z` is the cosine Gram of the (centred) batch features and `K_W` that of
    the head rows picked by the labels, `w_{y_1}, ..., w_{y_n}`. With
    `sample_weight` (`D = diag(w)`), `K_Z` is the weighted Gram `D^1/2 K_Z
    D^1/2` (`keras_nc.ops.gram`) and `K_W` is returned unweighted, so that
    `K_Z o K_W = D^1/2 (K_Z o K_W) D^1/2` (one factor carries the weights).

    Args:
        features: `(n, d)` features.
        labels: `(n,)` integer labels in `[0, C)` (or `(n, 1)`, or one-hot).
        head_weights: `(C, d)` classifier rows (a `Dense` kernel transposed).
        center: centre the features by the batch mean.
        mean: explicit feature mean to subtract instead.
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        `(K_Z, K_W)`, two `(n, n)` Gram matrices. Labels outside `[0, C)` raise
        in eager calls and make `K_W` NaN inside compiled functions.
    """
    batch = labelled_batch(features, labels, head_weights, sample_weight=sample_weight)
    pairing = sample_head_of(batch, center, mean)
    k_w = outer_gram(ops.take(pairing.what, pairing.labels, axis=0))
    return nan_unless(pairing.ok, outer_gram(pairing.zhat)), nan_unless(pairing.ok, k_w)


def eigh_cost(sizes):
    """Estimated cost of the entropies of matrices of the given sizes, one call per size.

    Matrices of one size share one batched call (`entropies_by_size`); a
    call costs `keras_nc.compat.eigh_call_cost()` (eager PyTorch dispatches
    each op from Python: about a 112 x 112 `eigh`).
    """
    return sum(m**3 for m in sizes) + compat.eigh_call_cost() * len(set(sizes))


def direct_sample_head(n, d, num_classes, feature_entropy_known=False):
    """Whether the direct path (all Grams n x n, one batched call) beats the cheaper sides.

    The direct path decomposes `K_Z`, `K_W` and `K_Z o K_W` as n x n matrices
    in one batched call; the side path decomposes `K_Z` from its `min(n, d)`
    side and `K_W` from its `min(n, C, d)` side, in separate calls (one per
    size). Both build the same n x n product, so only the eigendecompositions
    differ: at small `n` the saved work does not pay for the extra calls.
    With `n` unknown statically the side path is taken.
    """
    if n is None:
        return False
    head_side = min(n, num_classes, d)
    side = [head_side, n] if feature_entropy_known else [min(n, d), head_side, n]
    direct = [n] * len(side)
    return eigh_cost(direct) <= eigh_cost(side)


def entropies_by_size(items, alpha):
    """Entropies of `(matrix, trace)` pairs, one batched call per matrix size.

    Args:
        items: a list of `(k, trace)`, `k` a 2-D PSD matrix, `trace` its trace
            (or None).
        alpha: entropy order.

    Returns:
        A list of scalar entropies, in the order of `items`.
    """
    groups = {}
    for index, (k, _) in enumerate(items):
        groups.setdefault(k.shape[-1], []).append(index)
    values = [None] * len(items)
    for indices in groups.values():
        if len(indices) == 1:
            k, trace = items[indices[0]]
            values[indices[0]] = entropy_of_psd(k, alpha, trace=trace)
            continue
        traces = [items[i][1] for i in indices]
        # Any trace unknown: all from the stack, in one op.
        traces = None if any(t is None for t in traces) else ops.stack(traces, axis=0)
        stacked = entropy_of_psd(ops.stack([items[i][0] for i in indices], axis=0), alpha, traces)
        for position, i in enumerate(indices):
            values[i] = stacked[position]
    return values


def _head_grams(what, labels, need_class_gram=False):
    """The class Gram `What What^T` (C x C, or None) and the n x n `K_W` (unweighted).

    With fewer classes than samples (static shapes), `K_W`'s entries are
    gathered from the class Gram (`C^2 d` work instead of `n^2 d`) when the
    class Gram is needed anyway (`need_class_gram`: `K_W`'s class side) or
    where the backend's gathers pay (`keras_nc.compat.gathers_class_grams`).
    """
    num_classes = what.shape[0]
    n = labels.shape[0]
    gather = need_class_gram or compat.gathers_class_grams()
    if n is not None and num_classes < n and gather:
        classes = outer_gram(what)
        return classes, ops.take(ops.take(classes, labels, axis=0), labels, axis=1)
    return None, outer_gram(ops.take(what, labels, axis=0))


def _label_head_gram(what, labels, sample_weight=None, class_gram=None):
    """A matrix with the non-zero spectrum of `K_W`, on its smallest side, and its trace.

    `K_W = S What What^T S^T` (`S` the n x C one-hot labels) shares its non-zero
    eigenvalues with `D^1/2 What What^T D^1/2` (C x C, `D` the class counts) and
    with `What^T D What` (d x d): the smallest of n, C and d is used. With
    sample weights `w`, `diag(w)^1/2 K_W diag(w)^1/2`: `D` holds the classes'
    sums of weights. `class_gram`: `What What^T` when already computed.
    """
    num_classes, d = tuple(what.shape)
    n = labels.shape[0]
    one_hot = ops.one_hot(labels, num_classes, dtype=what.dtype)
    if sample_weight is not None:
        weight = ops.stop_gradient(ops.cast(sample_weight, what.dtype))
        one_hot = one_hot * ops.expand_dims(weight, -1)
    counts = ops.sum(one_hot, axis=0)
    trace = ops.sum(counts * ops.sum(ops.square(what), axis=-1))
    samples = math.inf if n is None else n
    # Plain comparisons (not `min(..., key=)`, which torch.compile cannot trace).
    side = "classes" if num_classes <= min(d, samples) else "width" if d <= samples else "samples"
    if side == "classes":
        root = ops.sqrt(counts)  # labels carry no gradient
        classes = outer_gram(what) if class_gram is None else class_gram
        return classes * ops.expand_dims(root, -1) * ops.expand_dims(root, 0), trace
    if side == "width":
        return matmul(ops.transpose(what) * ops.expand_dims(counts, 0), what), trace
    picked = ops.take(what, labels, axis=0)
    if sample_weight is not None:
        picked = picked * ops.expand_dims(ops.sqrt(weight), -1)
    return outer_gram(picked), trace


def sample_head_entropies_of(pairing, alpha=1.0, feature_entropy=None):
    """`H(K_Z), H(K_W), H(K_Z o K_W)` of a `SampleHead` (see `sample_head_entropies`).

    The faster exact path by shape (`direct_sample_head`): at small `n` the
    three n x n Grams in one batched eigendecomposition (the direct path),
    else `K_Z` and `K_W` from their smaller sides. Either way the n x n Grams
    are built once (`K_W`'s gathered from the class Gram when `C < n`).

    Args:
        pairing: a `SampleHead` from `sample_head_of`.
        alpha: entropy order.
        feature_entropy: `H(K_Z)` when already known (e.g. computed for the
            `MatrixEntropy` metric of the same step), else computed here.

    Returns:
        A tuple of three scalar tensors.
    """
    alpha = check_alpha(alpha)
    zhat, what, labels = pairing.zhat, pairing.what, pairing.labels
    weight = pairing.sample_weight
    n, d = tuple(zhat.shape)
    direct = direct_sample_head(n, d, what.shape[0], feature_entropy is not None)
    k_z = outer_gram(zhat)  # zhat carries sqrt(w): the weighted K_Z
    num_classes = what.shape[0]
    classes_side = not direct and n is not None and d is not None and num_classes <= min(d, n)
    class_gram, k_w_plain = _head_grams(what, labels, need_class_gram=classes_side)
    joint = k_z * k_w_plain  # one factor weighted: D^1/2 (K_Z o K_W) D^1/2
    if direct:  # every matrix n x n: one batched call, the traces from the stack
        k_w = k_w_plain
        if weight is not None:
            root = ops.sqrt(ops.stop_gradient(ops.cast(weight, k_z.dtype)))
            k_w = k_w_plain * ops.expand_dims(root, -1) * ops.expand_dims(root, 0)
        stack = [k_w, joint] if feature_entropy is not None else [k_z, k_w, joint]
        entropies = entropy_of_psd(ops.stack(stack, axis=0), alpha)
        values = [entropies[i] for i in range(len(stack))]
    else:
        items = []
        if feature_entropy is None:
            n_side = n is not None and d is not None and n <= d  # the n x n side: K_Z itself
            items.append((k_z, None) if n_side else min_side_gram(zhat))
        items.append(_label_head_gram(what, labels, weight, class_gram))
        items.append((joint, None))
        values = entropies_by_size(items, alpha)
    if feature_entropy is not None:
        values = [feature_entropy, *values]
    return tuple(nan_unless(pairing.ok, h) for h in values)


def sample_head_entropies(
    features, labels, head_weights, center=True, mean=None, alpha=1.0, sample_weight=None
):
    """Entropies `H(K_Z), H(K_W), H(K_Z o K_W)` of the sample-head pairing.

    The same values as `matrix_entropy` of the two matrices of
    `sample_head_grams` and of their Hadamard product, computed from the cheapest
    side of each: `K_Z` from its `min(n, d)` side, `K_W` (rank at most `C`) from
    the class Gram of the head rows weighted by the class counts in the batch
    (`min(n, C, d)` side); only `K_Z o K_W` needs an n x n eigendecomposition.

    With `sample_weight` `w` (`D = diag(w)`), the entropies of the weighted
    Grams `D^1/2 K_Z D^1/2`, `D^1/2 K_W D^1/2` and `D^1/2 (K_Z o K_W) D^1/2`,
    the features centred by the weighted mean (`keras_nc.ops.gram`): rows of
    weight 0 leave all three (the values of the subset of positive weight),
    positive weights weight the rows.

    Args:
        features: `(n, d)` features.
        labels: `(n,)` integer labels in `[0, C)` (or `(n, 1)`, or one-hot).
        head_weights: `(C, d)` classifier rows.
        center: centre the features by the batch mean.
        mean: explicit feature mean to subtract instead.
        alpha: entropy order (see `matrix_entropy`).
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        A tuple of three scalar tensors, in nats.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> rng = np.random.default_rng(0)
    >>> z, w = rng.normal(size=(64, 16)), rng.normal(size=(10, 16))
    >>> h_z, h_w, h_zw = nc_ops.sample_head_entropies(z, rng.integers(0, 10, 64), w)
    """
    batch = labelled_batch(features, labels, head_weights, sample_weight=sample_weight)
    return sample_head_entropies_of(sample_head_of(batch, center, mean), alpha)


def sample_head_ratios(
    features, labels, head_weights, center=True, mean=None, alpha=1.0, sample_weight=None
):
    """`(MIR, HDR)` of the sample-head pairing, from `sample_head_entropies`.

    Equal to `information_ratios(*sample_head_grams(features, labels,
    head_weights, center, mean), alpha)`, with one n x n eigendecomposition
    instead of three. This is what the `MIR`/`HDR` metrics and the
    `InformationRegularizer` compute. With `sample_weight`, the ratios of the
    weighted Grams (`sample_head_entropies`); the degenerate-case rule counts
    the rows of positive weight as `n`.

    Args:
        features: `(n, d)` features.
        labels: `(n,)` integer labels in `[0, C)` (or `(n, 1)`, or one-hot).
        head_weights: `(C, d)` classifier rows.
        center: centre the features by the batch mean.
        mean: explicit feature mean to subtract instead.
        alpha: entropy order (see `matrix_entropy`).
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        A tuple of two scalar tensors, as `mir` and `hdr` return them.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> rng = np.random.default_rng(0)
    >>> z, w = rng.normal(size=(64, 16)), rng.normal(size=(10, 16))
    >>> mir, hdr = nc_ops.sample_head_ratios(z, rng.integers(0, 10, 64), w)
    """
    batch = labelled_batch(features, labels, head_weights, sample_weight=sample_weight)
    pairing = sample_head_of(batch, center, mean)
    entropies = sample_head_entropies_of(pairing, alpha)
    return ratios_from_entropies(*entropies, sample_rows(pairing))


def sample_rows(pairing):
    """The `n` of a `SampleHead`'s degenerate-case rule: rows of positive weight.

    Args:
        pairing: a `SampleHead`.

    Returns:
        The static number of rows, or (with sample weights) a scalar tensor.
    """
    return active_rows(pairing.sample_weight, num_rows(pairing.zhat))
