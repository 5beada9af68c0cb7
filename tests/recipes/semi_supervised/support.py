"""Shared pieces of the semi-supervised recipe's tests: float64 references, a tiny network.

The references are float64 NumPy transcriptions of FixMatch's (arXiv 2001.07685)
and FreeMatch's (arXiv 2205.07246) formulas, as USB's code computes them. The
tolerances follow the suite's policy (`tests/tolerances.py`): each is the
float32 bound of the quantity's longest chain of rounded operations.
"""

import keras
import numpy as np

from tests.helpers import to_numpy
from tests.tolerances import float32_tolerance

C = 4

# A float32 cross-entropy or SAT state of at most 16 rows of C = 4 probabilities:
# softmax and log over C terms, then a mean (or an EMA of means) over the rows; one
# rounding per addend, 64 covers rows, classes and the exp/log evaluations.
LOSS_RTOL = float32_tolerance(terms=64)
# The same for values near 0 (an EMA state or a histogram bin of a class never
# predicted): the bound relative to the scale of a probability, 1 / C.
STATE_ATOL = float32_tolerance(terms=64, scale=1 / C)
# Compiled (fit) versus eager forward passes of `backbone()`: BatchNorm's mean over
# the joint batch (4 + 2 * 8 images of 6 x 6 pixels) is the longest sum, then the
# conv (fan-in 9), the pooling (36 pixels) and the head (fan-in 4): one term each.
FORWARD_RTOL = float32_tolerance(terms=20 * 36 + 9 + 36 + 4)
# A logged ratio k / n of counts (mask ratio, pseudo-label accuracy): one rounding.
COUNT_ATOL = float32_tolerance(terms=1)


def softmax(logits):
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _inverse(v):
    return np.where(v > 0, 1.0 / np.where(v > 0, v, 1.0), 0.0)


def _sum_norm(v):
    return v / v.sum() if v.sum() > 0 else v


def sat(p, time_p, p_model, label_hist, m):
    """FreeMatch's SAT: the EMA state, the class thresholds and the mask, in float64."""
    n, c = p.shape
    time_p = m * time_p + (1 - m) * p.max(axis=1).mean()
    p_model = m * p_model + (1 - m) * p.mean(axis=0)
    label_hist = m * label_hist + (1 - m) * np.bincount(p.argmax(axis=1), minlength=c) / n
    thresholds = time_p * p_model / p_model.max()
    mask = (p.max(axis=1) >= thresholds[p.argmax(axis=1)]).astype(np.float64)
    return time_p, p_model, label_hist, thresholds, mask


def fairness_cross_entropy(p_strong, mask, p_model, label_hist):
    """The cross-entropy `H = -sum p log q` of FreeMatch's fairness loss (its `L_f` is `-H`)."""
    selected = p_strong[mask > 0]
    if not len(selected):
        return 0.0
    hist_s = np.bincount(selected.argmax(axis=1), minlength=p_strong.shape[1]) / len(selected)
    target = _sum_norm(p_model * _inverse(label_hist))
    pred = _sum_norm(selected.mean(axis=0) * _inverse(hist_s))
    return -np.sum(target * np.log(pred + 1e-12))


def masked_ce(logits, labels, mask):
    log_p = np.log(softmax(logits))
    return np.mean(-log_p[np.arange(len(labels)), labels] * mask)


def backbone(seed=0):
    """A tiny conv backbone of 6 x 6 x 1 images (the network of the 0.2.0 legacy files)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def batch(seed=0, n_lb=4, n_u=8):
    """A training batch `(x, y)`: labelled images, weak and strong unlabelled views."""
    rng = np.random.default_rng(seed)
    x = {
        "labeled": rng.normal(size=(n_lb, 6, 6, 1)).astype("float32"),
        "unlabeled_weak": rng.normal(size=(n_u, 6, 6, 1)).astype("float32") * 3,
        "unlabeled_strong": rng.normal(size=(n_u, 6, 6, 1)).astype("float32"),
        "unlabeled_labels": rng.integers(-1, C, size=n_u).astype("int32"),
    }
    return x, (np.arange(n_lb) % C).astype("int32")


def fit_step(model, data):
    """One `fit` step on one batch; returns the history's dict."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(data)
    return model.fit(dataset, epochs=1, verbose=0).history


def state(model):
    """Every variable of the model and its optimizer, as NumPy."""
    return [to_numpy(v) for v in model.variables + model.optimizer.variables]
