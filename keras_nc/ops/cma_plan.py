"""The cost model that picks the CMA entropy's layout (`keras_nc.ops.cma`).

Pure Python on static shapes (and, eagerly, on the groups' sizes): an
`eigh` with eigenvectors of `k` matrices of size `m` costs about `9 m^3`
multiply-adds plus a fixed cost per matrix and per call; the layouts' Gram
products are counted alike. See the Performance page, "The dispatcher".
"""

import math


def tiers(sizes, ratio=0.9, small=16):
    """Consecutive runs of `sizes` (descending) padded together: `[(start, stop, size)]`.

    A run ends where a group is smaller than `ratio` times the run's largest
    (padding wastes at most `1 / ratio**3` of a run's `eigh` work); groups of
    at most `small` rows share one run (their cost is the calls', not the
    arithmetic).
    """
    runs, start = [], 0
    for i, size in enumerate(sizes):
        if size < ratio * sizes[start] and sizes[start] > small:
            runs.append((start, i, sizes[start]))
            start = i
    if sizes:
        runs.append((start, len(sizes), sizes[start]))
    return runs


# What running one group's own Gram calls (about eight eager ops) costs, in
# multiply-adds: a group is computed alone when padding it wastes more.
GROUP_OVERHEAD = 2e6


def eager_runs(sizes, d):
    """The eager layout's runs: `tiers`, a run split into single groups where padding wastes more.

    Padding a run to its largest group wastes `(s^2 - m^2) d` multiply-adds of
    each group's Gram and `9 (s^3 - m^3)` of its `eigh`; a group alone costs
    `GROUP_OVERHEAD` in calls.

    Args:
        sizes: the groups' sizes (anchor included), descending.
        d: feature width.

    Returns:
        A list of `(start, stop, size)`: one Gram product and one `eigh` each.
    """
    runs = []
    for start, stop, size in tiers(sizes):
        own = sizes[start:stop]
        padded = len(own) * (size * size * d + EIGH_FLOPS * size**3)
        alone = sum(m * m * d + EIGH_FLOPS * m**3 + GROUP_OVERHEAD for m in own)
        if padded <= alone:
            runs.append((start, stop, size))
        else:
            runs.extend((j, j + 1, sizes[j]) for j in range(start, stop))
    return runs


def group_sizes(sizes):
    """The per-group layout's static sizes: `sizes` and up to three below the first.

    Args:
        sizes: the candidate padded sizes of `plan` (ascending).

    Returns:
        A tuple of ascending sizes: `sizes[0] / 1.1**k` (k = 3, 2, 1, rounded
        up, at least 2) then `sizes`.
    """
    below = {max(2, math.ceil(sizes[0] / 1.1**k)) for k in (3, 2, 1)}
    return tuple(sorted(below - set(sizes))) + tuple(sizes)


# Cost model of an `eigh` with eigenvectors of a batch of k matrices of size m,
# in units of one multiply-add: LAPACK's divide and conquer takes about 9 m^3
# of them; each matrix of a batch and each kernel call cost a fixed overhead
# (dispatch, workspace), measured as that of m of about 12 and 40 on 2 cores.
EIGH_FLOPS = 9.0


MATRIX_OVERHEAD = 9.0 * 12.0**3


CALL_OVERHEAD = 9.0 * 40.0**3


MAX_CANDIDATES = 7


# JAX: with at most this many slots each group is padded to its own size.
PER_GROUP_SLOTS = 32


def _eigh_cost(k, m):
    return k * (EIGH_FLOPS * m**3 + MATRIX_OVERHEAD) + CALL_OVERHEAD


def layout_costs(n, num_classes, d):
    """Modelled costs of the layouts that fit any labels: `{"block": ..., "width": ...}`.

    Args:
        n: number of samples (static).
        num_classes: number of classes `C`.
        d: feature width.

    Returns:
        A dict of relative costs (multiply-adds of the model above).
    """
    slots = min(num_classes, n)
    size = n + slots
    return {
        # eigh, the (n+P) x (n+P) x d Gram, two (n+P)^2 x (n+P) products.
        "block": _eigh_cost(1, size) + size**2 * d + 2 * size**3,
        # eigh of P d x d, the P x d x n x d Grams.
        "width": _eigh_cost(slots, d) + slots * n * d * d,
    }


def padded_cost(n, num_classes, d, size):
    """Modelled cost of the padded layout with groups of `size` rows (anchor included)."""
    slots = min(num_classes, n)
    side = min(size, d)
    gram = slots * size * size * d if size <= d else slots * size * d * d
    return _eigh_cost(slots, side) + gram + 2 * slots * side**3 + n * math.log2(max(n, 2))


def plan(n, num_classes, d):
    """The static part of the `"auto"` choice: `(fallback, candidate sizes)`.

    `fallback` is the cheaper of `"block"` and `"width"` (both exact for any
    labels); `candidate sizes` are the padded group sizes `s` (rows, anchor
    included) cheaper than it, at most `MAX_CANDIDATES`, from the smallest a
    batch can need (`n / C` members when every class has as many, plus the
    anchor) by factors of about 1.1 then 1.5. At run time the smallest
    candidate that holds the largest group is taken, else the fallback.

    Args:
        n: number of samples (static).
        num_classes: number of classes `C`.
        d: feature width.

    Returns:
        A tuple `(fallback, sizes)`.
    """
    costs = layout_costs(n, num_classes, d)
    fallback = min(costs, key=costs.get)
    limit = 0.8 * costs[fallback]
    size = max(2, math.ceil(n / num_classes) + 1)
    sizes = []
    while size <= n + 1 and len(sizes) < MAX_CANDIDATES:
        if padded_cost(n, num_classes, d, size) >= limit:
            break
        sizes.append(size)
        factor = 1.1 if len(sizes) < 5 else 1.5
        size = min(n + 1, max(size + 1, math.ceil(size * factor)))
        if size == sizes[-1]:
            break
    return fallback, tuple(sizes)
