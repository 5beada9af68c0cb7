"""The mathematics of FixMatch and FreeMatch as pure functions on `keras.ops`.

Every function takes and returns tensors (no variables, no Python branching on
values), so the trainers in `recipes.semi_supervised.models` call them inside
compiled train steps on every backend and the tests compare them with a
float64 NumPy transcription of the formulas of FixMatch (arXiv 2001.07685) and
FreeMatch (arXiv 2205.07246), as USB's code computes them.

- FixMatch (Sohn et al. 2020): `fixmatch_mask` (fixed confidence threshold on
  the weak view) and `masked_cross_entropy` (hard pseudo-labels, strong view).
- FreeMatch (Wang et al. 2023), self-adaptive thresholding (SAT): `sat_update`
  (EMA of the global confidence `time_p`, of the mean probabilities `p_model`
  and of the pseudo-label histogram `label_hist`) and `sat_mask` (class-wise
  thresholds `time_p * p_model / max(p_model)`).
- FreeMatch self-adaptive fairness (SAF): `saf_loss`.
- `masked_information_ratios`: MIR and HDR (sample-head pairing, from
  `keras_nc.ops`) of the samples selected by a mask, for the information
  regularisers on confident unlabelled samples, and `confident_information_term`:
  the MIR/HDR regulariser's value on those samples.

Example:

```python
import numpy as np
from recipes.semi_supervised import algorithms

probs = np.full((4, 3), 1 / 3, "float32")
state = algorithms.sat_update(probs, 1 / 3, np.full(3, 1 / 3), np.full(3, 1 / 3), 0.999)
mask, thresholds = algorithms.sat_mask(probs, *state[:2])
```
"""

from keras import ops

from keras_nc import ops as nc_ops


def _float(x):
    x = ops.convert_to_tensor(x)
    if "float" not in str(x.dtype):
        x = ops.cast(x, "float32")
    return x


def _safe_reciprocal(x):
    """`1 / x` where `x > 0`, else 0 (USB's `replace_inf_to_zero(1 / x)`)."""
    positive = x > 0
    return ops.where(positive, 1.0 / ops.where(positive, x, 1.0), 0.0)


def _sum_norm(v):
    """`v / sum(v)` (FreeMatch's SumNorm); an all-zero vector stays zero."""
    total = ops.sum(v, axis=-1, keepdims=True)
    return v / ops.where(total > 0, total, 1.0)


def fixmatch_mask(probs, threshold=0.95):
    """FixMatch's confidence mask and hard pseudo-labels of weak-view probabilities.

    Args:
        probs: `(B_u, C)` softmax probabilities of the weak view.
        threshold: fixed confidence threshold (FixMatch: 0.95).

    Returns:
        `(mask, pseudo_labels)`: `mask` (float, 1 where `max p >= threshold`)
        and `pseudo_labels = argmax p` (int32), both `(B_u,)`.
    """
    probs = _float(probs)
    mask = ops.cast(ops.max(probs, axis=-1) >= threshold, probs.dtype)
    return mask, ops.cast(ops.argmax(probs, axis=-1), "int32")


def masked_cross_entropy(logits, labels, mask):
    """`mean_i mask_i * CE(logits_i, labels_i)` over the whole batch (FixMatch, USB).

    The mean runs over all `B_u` samples, masked ones counting as 0, as in
    FixMatch and USB's `consistency_loss`.

    Args:
        logits: `(B_u, C)` logits of the strong view.
        labels: `(B_u,)` integer (pseudo-)labels.
        mask: `(B_u,)` weights in `[0, 1]`.
    """
    logits = _float(logits)
    log_probs = ops.log_softmax(logits, axis=-1)
    onehot = ops.one_hot(ops.cast(labels, "int32"), logits.shape[-1], dtype=logits.dtype)
    ce = -ops.sum(onehot * log_probs, axis=-1)
    return ops.mean(ce * ops.cast(mask, logits.dtype))


def sat_update(probs, time_p, p_model, label_hist, momentum=0.999):
    """One FreeMatch SAT step: the EMA of `time_p`, `p_model` and `label_hist`.

    With weak-view probabilities `p` (`B_u x C`) and `m = momentum`:

        time_p     <- m time_p     + (1 - m) mean_i max_c p_ic
        p_model    <- m p_model    + (1 - m) mean_i p_i
        label_hist <- m label_hist + (1 - m) histogram(argmax p) / B_u

    Args:
        probs: `(B_u, C)` weak-view probabilities (no gradient needed).
        time_p: scalar global confidence (initial value `1/C`).
        p_model: `(C,)` class-wise mean confidence (initial `1/C`).
        label_hist: `(C,)` pseudo-label histogram (initial `1/C`).
        momentum: EMA momentum `m` (FreeMatch: 0.999).

    Returns:
        `(time_p, p_model, label_hist)`, updated.
    """
    probs = _float(probs)
    num_classes = probs.shape[-1]
    hist = ops.mean(ops.one_hot(ops.argmax(probs, axis=-1), num_classes, dtype=probs.dtype), 0)
    new_time_p = momentum * _float(time_p) + (1.0 - momentum) * ops.mean(ops.max(probs, axis=-1))
    new_p_model = momentum * _float(p_model) + (1.0 - momentum) * ops.mean(probs, axis=0)
    new_label_hist = momentum * _float(label_hist) + (1.0 - momentum) * hist
    return new_time_p, new_p_model, new_label_hist


def sat_mask(probs, time_p, p_model):
    """FreeMatch's self-adaptive mask: `max p >= time_p * (p_model / max p_model)[argmax p]`.

    Args:
        probs: `(B_u, C)` weak-view probabilities.
        time_p: scalar global threshold (already updated for this step).
        p_model: `(C,)` class-wise mean confidence (already updated).

    Returns:
        `(mask, class_thresholds)`: float `(B_u,)` mask and the `(C,)`
        class-wise thresholds `time_p * p_model / max(p_model)`.
    """
    probs = _float(probs)
    p_model = _float(p_model)
    thresholds = _float(time_p) * p_model / ops.max(p_model)
    picked = ops.take(thresholds, ops.argmax(probs, axis=-1), axis=0)
    mask = ops.cast(ops.max(probs, axis=-1) >= picked, probs.dtype)
    return mask, thresholds


def saf_loss(probs_strong, mask, p_model, label_hist, eps=1e-12):
    """FreeMatch's self-adaptive fairness loss on the masked strong-view probabilities.

    With `p_s` the strong-view probabilities of the masked samples, `hist_s`
    the histogram of their argmax (normalised) and `mean_s` their mean,

        L_f = sum_c SumNorm(p_model / label_hist)_c * log(SumNorm(mean_s / hist_s)_c + eps)

    where `1/0` is taken as 0 (USB's `replace_inf_to_zero`) and the scalers
    `1/label_hist`, `1/hist_s` carry no gradient. This is the sign of
    FreeMatch's paper (`L_f = -H(., .)`, a negative cross-entropy, minimised)
    and of USB's code; `FreeMatch(fairness_sign="negated")` minimises the
    cross-entropy itself (the opposite sign). With no masked sample the loss
    is 0 (USB skips the term).

    Args:
        probs_strong: `(B_u, C)` strong-view probabilities (gradients flow).
        mask: `(B_u,)` float mask of the samples used.
        p_model: `(C,)` SAT state (no gradient).
        label_hist: `(C,)` SAT state (no gradient).
        eps: added inside the logarithm.

    Returns:
        A scalar.
    """
    probs_strong = _float(probs_strong)
    dtype = probs_strong.dtype
    mask = ops.cast(mask, dtype)
    num_classes = probs_strong.shape[-1]
    count = ops.sum(mask)
    safe_count = ops.where(count > 0, count, 1.0)
    onehot = ops.one_hot(ops.argmax(probs_strong, axis=-1), num_classes, dtype=dtype)
    hist_s = ops.sum(onehot * mask[:, None], axis=0) / safe_count
    mean_s = ops.sum(probs_strong * mask[:, None], axis=0) / safe_count
    mod_model = _sum_norm(ops.stop_gradient(_float(p_model) * _safe_reciprocal(_float(label_hist))))
    mod_mean = _sum_norm(mean_s * ops.stop_gradient(_safe_reciprocal(hist_s)))
    loss = ops.sum(mod_model * ops.log(mod_mean + eps))
    return ops.where(count > 0, loss, 0.0)


def masked_information_ratios(features, labels, head_weights, mask, alpha=1.0, center=True):
    """MIR and HDR (sample-head pairing) of the samples where `mask` is 1.

    The features are centred by the mean of the selected samples (`center`),
    both Gram matrices (`keras_nc.ops.sample_head_grams`) get the rows and
    columns of the other samples zeroed, and `keras_nc.ops.information_ratios`
    gives the ratios: zero rows add zero eigenvalues, so the values equal those
    of the selected sub-batch, with static shapes. With fewer than two selected
    samples the ratios are computed on the whole batch and `valid` is 0:
    multiply the loss term by it.

    Args:
        features: `(n, d)` features.
        labels: `(n,)` integer (pseudo-)labels.
        head_weights: `(C, d)` classifier rows (the `Dense` kernel transposed).
        mask: `(n,)` 0/1 selection.
        alpha: entropy order.
        center: centre the features by the mean of the selected samples.

    Returns:
        `(mir, hdr, valid)`, three scalars.
    """
    features = _float(features)
    mask = ops.cast(mask, features.dtype)
    count = ops.sum(mask)
    valid = ops.cast(count >= 2, features.dtype)
    mask = ops.where(count >= 2, mask, ops.ones_like(mask))
    mean = ops.sum(features * mask[:, None], axis=0) / ops.sum(mask) if center else None
    k_z, k_w = nc_ops.sample_head_grams(features, labels, head_weights, center=center, mean=mean)
    outer = mask[:, None] * mask[None, :]
    mir, hdr = nc_ops.information_ratios(k_z * outer, k_w * outer, alpha=alpha)
    return mir, hdr, valid


def confident_information_term(regularizer, labels, features, head_weights, mask):
    """The MIR/HDR regulariser's value on the samples where `mask` is 1 (0 with fewer than two).

    `hdr_weight * HDR - mir_weight * MIR` (arXiv 2409.16767) of the selected
    samples, with the `center`, `alpha` and weights of `regularizer` (a
    `keras_nc.losses.InformationRegularizer`), from `masked_information_ratios`:
    the term the semi-supervised trainers add for the confident unlabelled
    samples (pseudo-labels, strong-view features).

    Args:
        regularizer: a `keras_nc.losses.InformationRegularizer` (its
            `mir_weight`, `hdr_weight`, `center`, `alpha`).
        labels: `(n,)` integer (pseudo-)labels.
        features: `(n, d)` features.
        head_weights: `(C, d)` classifier rows.
        mask: `(n,)` 0/1 selection (the confidence mask).

    Returns:
        A scalar: the regulariser of the selected sub-batch, 0 when fewer than
        two samples are selected.

    Example:

    ```python
    from keras_nc.losses import InformationRegularizer

    term = confident_information_term(InformationRegularizer(0.5, 0.5), pseudo,
                                      strong_features, model.head_weights, mask)
    ```
    """
    mir, hdr, valid = masked_information_ratios(
        features, labels, head_weights, mask, alpha=regularizer.alpha, center=regularizer.center
    )
    return regularizer.hdr_weight * (valid * hdr) - regularizer.mir_weight * (valid * mir)
