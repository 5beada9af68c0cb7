"""Modular arithmetic data: every pair `(a, b)` of residues, split into train and test.

Each example is the token sequence `[a, b, =]` (the token `=` is `p`, so the
vocabulary has `p + 1` tokens) and its label `(a op b) mod p`, as in Power et
al. (2022). The split is a seeded random permutation of all the pairs; training
batches are drawn by `StepBatches`, a `keras.utils.PyDataset` whose "epoch" is
a fixed number of optimisation steps.
"""

import dataclasses

import keras
import numpy as np

OPERATIONS = ("+", "-", "*", "/")


def _is_prime(p):
    return p >= 2 and all(p % k for k in range(2, int(p**0.5) + 1))


def modular_pairs(p, op="+"):
    """All the pairs of an operation and their labels, in lexicographic order.

    Args:
        p: the modulus, an integer `>= 2` (a prime for `"/"`).
        op: one of `"+"`, `"-"`, `"*"`, `"/"`. Division is `a * b^(p-2) mod p`
            (Fermat's inverse), over the `p (p - 1)` pairs with `b != 0`.

    Returns:
        A tuple `(pairs, labels)`: int32 arrays `(N, 2)` and `(N,)`, `N = p^2`
        (`p (p - 1)` for division).

    Example:

    >>> pairs, labels = modular_pairs(5, "-")
    >>> pairs.shape, int(labels[1])  # (0, 1): 0 - 1 = 4 mod 5
    ((25, 2), 4)
    """
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 2:
        raise ValueError(f"`p` must be an integer >= 2; received {p!r}.")
    if op not in OPERATIONS:
        raise ValueError(f"`op` must be one of {', '.join(OPERATIONS)}; received {op!r}.")
    if op == "/" and not _is_prime(p):
        raise ValueError(f"`op='/'` needs a prime `p` (every b != 0 invertible); received {p}.")
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if op == "/":
        a, b = a[b != 0], b[b != 0]
    if op == "+":
        labels = (a + b) % p
    elif op == "-":
        labels = (a - b) % p
    elif op == "*":
        labels = (a * b) % p
    else:
        labels = (a * np.array([pow(int(v), p - 2, p) for v in b])) % p
    return np.stack([a, b], axis=1).astype("int32"), labels.astype("int32")


@dataclasses.dataclass
class ModularData:
    """Train and test token sequences `[a, b, =]` `(n, 3)` and their labels `(n,)`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    p: int
    op: str

    @property
    def vocabulary_size(self):
        """`p + 1`: the residues and the `=` token."""
        return self.p + 1

    @property
    def name(self):
        return f"(a {self.op} b) mod {self.p}"


def modular_dataset(p=97, op="+", train_fraction=0.4, seed=0):
    """The pairs of `(a op b) mod p`, split at random into train and test.

    Args:
        p: the modulus (see `modular_pairs`).
        op: `"+"`, `"-"`, `"*"` or `"/"`.
        train_fraction: fraction of all pairs used for training, in `(0, 1)`;
            the training set has exactly `round(train_fraction * N)` pairs,
            the test set the others.
        seed: seed of the split (a NumPy `default_rng` permutation).

    Returns:
        A `ModularData`.

    Example:

    >>> data = modular_dataset(7, "+", train_fraction=0.5, seed=0)
    >>> data.x_train.shape, data.x_test.shape, int(data.x_train[0, 2])
    ((24, 3), (25, 3), 7)
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"`train_fraction` must be in (0, 1); received {train_fraction!r}.")
    pairs, labels = modular_pairs(p, op)
    n_train = round(train_fraction * len(labels))
    if not 0 < n_train < len(labels):
        raise ValueError(
            f"`train_fraction={train_fraction}` leaves an empty train or test set of the "
            f"{len(labels)} pairs of p={p}."
        )
    order = np.random.default_rng(seed).permutation(len(labels))
    equals = np.full((len(labels), 1), p, dtype="int32")
    tokens = np.concatenate([pairs, equals], axis=1)
    train, test = order[:n_train], order[n_train:]
    return ModularData(tokens[train], labels[train], tokens[test], labels[test], int(p), op)


class StepBatches(keras.utils.PyDataset):
    """Training batches for `fit`, an "epoch" being `steps` optimisation steps.

    With `batch_size=None` (or at least the training set's size) every step
    sees the whole training set (full-batch training, as in the grokking
    literature). Otherwise step `s` (counted over all epochs) sees
    `batch_size` distinct samples drawn by `default_rng([seed, s])`, so the
    batches do not depend on the backend.

    Args:
        x: inputs `(n, ...)`.
        y: labels `(n,)`.
        steps: steps per epoch (the logging interval of the recipe).
        batch_size: samples per step, or `None` for full batches.
        seed: seed of the mini-batch draws.
    """

    def __init__(self, x, y, steps, batch_size=None, seed=0):
        super().__init__()
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"`steps` must be a positive integer; received {steps!r}.")
        self.x, self.y, self.steps, self.seed = x, y, steps, seed
        full = batch_size is None or batch_size >= len(y)
        self.batch_size = None if full else int(batch_size)
        self.epoch = 0

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        if self.batch_size is None:
            return self.x, self.y
        rng = np.random.default_rng([self.seed, self.epoch * self.steps + index])
        rows = rng.choice(len(self.y), self.batch_size, replace=False)
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        self.epoch += 1
