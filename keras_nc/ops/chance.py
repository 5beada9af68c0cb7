"""Chance levels of the class pairing: MIR and HDR of class means against unrelated head rows."""

import numpy as np
from keras import ops

from keras_nc.ops._checks import as_float
from keras_nc.ops._guards import is_concrete
from keras_nc.ops.pairing import class_pairing_ratios


def head_permutations(num_classes, permutations, seed=0, present=None):
    """`(P, C)` int32 permutations of the head rows among the classes present.

    Args:
        num_classes: `C`.
        permutations: `P`.
        seed: the seed of NumPy's generator (fixed permutations: the same
            chance level on every call and every backend).
        present: optional `(C,)` boolean mask; absent classes keep their row.

    Returns:
        A NumPy array: row `p` maps class `i` to the head row `perm[p, i]`.
    """
    rng = np.random.default_rng(seed)
    present = np.ones(num_classes, bool) if present is None else np.asarray(present, bool)
    rows = np.flatnonzero(present)
    result = np.tile(np.arange(num_classes, dtype=np.int32), (permutations, 1))
    for perm in result:
        perm[rows] = rows[rng.permutation(len(rows))]
    return result


def class_pairing_chance(
    counts, sums, head_weights, center=True, alpha=1.0, permutations=16, seed=0
):
    """Class-pairing MIR and HDR of the class means against unrelated head rows.

    The chance level of `class_pairing_ratios`: the same class means paired
    with the head rows permuted at random among the classes present, averaged
    over `permutations` fixed permutations (a Monte Carlo estimate of the mean
    over all permutations; its standard error is the spread of the
    permutations' values over `sqrt(permutations)`, about 0.002 for C = 10).
    A permutation keeps both Grams' spectra and breaks the correspondence of
    class `c`'s mean with class `c`'s row, so MIR above its chance level
    measures class structure that the means and the head rows share.

    Two consequences of the Grams being compared entry by entry:

    - HDR compares the entropies of the two Grams only, and a permutation
      leaves a Gram's spectrum unchanged: with every class present, HDR's
      chance level is HDR itself. HDR near 0 says that the means and the
      head have equally spread spectra, not that they are aligned.
    - The Gram of a simplex equiangular tight frame is the same under every
      relabelling, so at exact collapse the chance level equals MIR* itself:
      MIR cannot tell an ETF-aligned head from a permuted one. Random rows
      with `d >= C` score near or above MIR* too (near-orthogonal rows have
      near-identity Grams). Whether the head is aligned with the class means
      is what the self-duality and the ETF error measure (see
      `keras_nc.theory` and the "Reading the measures" section of the
      Concepts page).

    Args:
        counts: `(C,)` per-class counts.
        sums: `(C, d)` per-class feature sums.
        head_weights: `(C, d)` head rows.
        center: centre the class means by the global mean (as
            `class_pairing_ratios`).
        alpha: entropy order.
        permutations: how many permutations to average (a positive integer).
        seed: the permutations' seed.

    Returns:
        A tuple `(mir_chance, hdr_chance)` of scalar tensors.

    Example:

    >>> import numpy as np
    >>> from keras_nc import ops as nc_ops
    >>> rng = np.random.default_rng(0)
    >>> sums, head = rng.normal(size=(10, 64)), rng.normal(size=(10, 64))
    >>> mir, hdr = nc_ops.class_pairing_ratios(np.ones(10), sums, head)
    >>> mir_chance, _ = nc_ops.class_pairing_chance(np.ones(10), sums, head)
    >>> bool(abs(float(mir) - float(mir_chance)) < 0.02)  # unrelated rows: at chance
    True
    """
    if isinstance(permutations, bool) or not isinstance(permutations, (int, np.integer)):
        raise ValueError(f"`permutations` must be a positive integer; received {permutations!r}.")
    if permutations < 1:
        raise ValueError(f"`permutations` must be a positive integer; received {permutations}.")
    head = as_float(head_weights)
    num_classes = head.shape[0]
    counts = ops.convert_to_tensor(counts)
    present = None
    if is_concrete(counts):  # eager: permute the rows of the classes present only
        present = ops.convert_to_numpy(counts) > 0
    perms = head_permutations(num_classes, int(permutations), seed, present)
    values = [
        ops.stack(class_pairing_ratios(counts, sums, ops.take(head, perm, axis=0), center, alpha))
        for perm in perms
    ]
    mean = ops.mean(ops.stack(values), axis=0)
    return mean[0], mean[1]
