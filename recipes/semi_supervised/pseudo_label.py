"""FixMatch and FreeMatch: the pseudo-labelling trainers on `SemiSupervisedModel`.

Both add to the supervised loss of `recipes.semi_supervised.base.SemiSupervisedModel`
the masked cross-entropy of the strong views on the hard pseudo-labels of the
weak views (`recipes.semi_supervised.algorithms`) and, with
`unlabeled_information`, the MIR/HDR regulariser of arXiv 2409.16767 on the
confident unlabelled samples (`algorithms.confident_information_term`).

The FreeMatch state (`time_p`, `p_model`, `label_hist`) lives in
non-trainable variables, saved with the model and restored on resume.

Example:

```python
backbone = build_backbone("wrn28_2", input_shape=(28, 28, 1), width=0.25)
model = FreeMatch(backbone, num_classes=10)
model.compile()  # SGD 0.03, momentum 0.9, Nesterov, EMA 0.999; cross-entropy; accuracy
model.fit(train, steps_per_epoch=100, epochs=10, validation_data=test,
          callbacks=[keras.callbacks.SwapEMAWeights()])
```
"""

import keras
from keras import ops

from keras_nc.deprecation import warn_renamed
from recipes.registration import serializable
from recipes.semi_supervised import algorithms
from recipes.semi_supervised.base import UNLABELED_LABELS, SemiSupervisedModel

# FreeMatch's `fairness_sign`: the factor of `algorithms.saf_loss` in the loss.
FAIRNESS_SIGNS = {"paper": 1.0, "negated": -1.0}
# Former spelling -> current one; accepted with a `DeprecationWarning` for one release.
DEPRECATED_FAIRNESS_SIGNS = {"spec": "negated"}


def fairness_sign_name(fairness_sign, stacklevel=4):
    """The current name of a `fairness_sign` value; a former spelling warns.

    Args:
        fairness_sign: a key of `FAIRNESS_SIGNS` or of `DEPRECATED_FAIRNESS_SIGNS`.
        stacklevel: passed to `warnings.warn` (the caller to blame).

    Returns:
        The key of `FAIRNESS_SIGNS`; any other value is returned unchanged.

    Example:

    ```python
    fairness_sign_name("negated")  # "negated"
    ```
    """
    new = DEPRECATED_FAIRNESS_SIGNS.get(fairness_sign)
    if new is None:
        return fairness_sign
    old_text, new_text = f'fairness_sign="{fairness_sign}"', f'fairness_sign="{new}"'
    warn_renamed(old_text, new_text, stacklevel=stacklevel)
    return new


def _check_number(value, name, low=0.0, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a number; received {value!r}.")
    value = float(value)
    below = value <= low if low_open else value < low
    if below or (high is not None and value > high):
        bounds = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high else "")
        raise ValueError(f"`{name}` must be {bounds}; received {value!r}.")
    return value


def _logits(y_pred):
    """The logits of a forward pass (`CollapseClassifier` outputs a dict during fit/evaluate)."""
    return y_pred["logits"] if isinstance(y_pred, dict) else y_pred


class _PseudoLabelModel(SemiSupervisedModel):
    """Shared unlabelled term: masked cross-entropy of the strong view on hard pseudo-labels."""

    uses_unlabeled = True
    training_logs = (
        *SemiSupervisedModel.training_logs,
        "unsup_loss",
        "mask_ratio",
        "pseudo_accuracy",
        "threshold",
    )

    def __init__(self, backbone, num_classes, lambda_u=1.0, **kwargs):
        super().__init__(backbone, num_classes, **kwargs)
        self.lambda_u = _check_number(lambda_u, "lambda_u")

    def _mask(self, probs):
        """`(mask, pseudo_labels, threshold, state)` of the weak-view probabilities."""
        raise NotImplementedError

    def _extra_loss(self, probs_strong, mask, state):
        return None

    def _unlabeled_loss(self, x, y_pred):
        probs = ops.softmax(ops.stop_gradient(y_pred["weak_logits"]), axis=-1)
        mask, pseudo, threshold, state = self._mask(probs)
        mask = ops.stop_gradient(mask)
        strong_logits = y_pred["strong_logits"]
        unsup = algorithms.masked_cross_entropy(strong_logits, pseudo, mask)
        total = self.lambda_u * unsup
        extra = self._extra_loss(ops.softmax(strong_logits, axis=-1), mask, state)
        if extra is not None:
            total = total + extra
        if self.unlabeled_information and self.information_terms:
            total = total + algorithms.confident_information_term(
                self.regularizer, pseudo, y_pred["strong_features"], y_pred["head_weights"], mask
            )
        self._track("unsup_loss", unsup)
        self._track("mask_ratio", ops.mean(mask))
        self._track("threshold", threshold)
        if isinstance(x, dict) and UNLABELED_LABELS in x:
            truth = ops.reshape(ops.cast(x[UNLABELED_LABELS], "int32"), (-1,))
            known = ops.cast(truth >= 0, mask.dtype)
            correct = ops.cast(ops.equal(pseudo, truth), mask.dtype)
            self._track("pseudo_accuracy", correct, sample_weight=mask * known)
        return total

    def get_config(self):
        return {**super().get_config(), "lambda_u": self.lambda_u}


@serializable("semi_supervised")
class FixMatch(_PseudoLabelModel):
    """FixMatch (Sohn et al. 2020): fixed-threshold pseudo-labelling with weak/strong views.

    Per step: pseudo-labels `argmax p` of the weak view (no gradient), mask
    `max p >= threshold`, and `L = L_sup + lambda_u * mean(mask * CE(strong,
    pseudo))` (`algorithms.fixmatch_mask`, `algorithms.masked_cross_entropy`),
    plus the optional MIR/HDR terms.

    Logged besides the base class's: `unsup_loss`, `mask_ratio` (fraction of
    unlabelled samples above the threshold), `pseudo_accuracy` (accuracy of
    the masked pseudo-labels, where `x["unlabeled_labels"]` knows the truth),
    `threshold`.

    Args:
        backbone: see `SemiSupervisedModel`.
        num_classes: number of classes.
        threshold: confidence threshold in `(0, 1]` (default 0.95).
        lambda_u: weight of the unsupervised loss, `>= 0` (default 1).
        **kwargs: `head`, `mir_weight`, `hdr_weight`, `unlabeled_information`,
            `log_information`, `name`: see `SemiSupervisedModel`.

    Example:

    ```python
    model = FixMatch(backbone, num_classes=10, threshold=0.95)
    model.compile()
    model.fit(train, steps_per_epoch=100, epochs=10,
              callbacks=[keras.callbacks.SwapEMAWeights()])
    ```
    """

    algorithm = "fixmatch"

    def __init__(self, backbone, num_classes, threshold=0.95, lambda_u=1.0, **kwargs):
        super().__init__(backbone, num_classes, lambda_u=lambda_u, **kwargs)
        self.threshold = _check_number(threshold, "threshold", 0.0, 1.0, low_open=True)

    def _mask(self, probs):
        mask, pseudo = algorithms.fixmatch_mask(probs, self.threshold)
        return mask, pseudo, ops.convert_to_tensor(self.threshold, probs.dtype), None

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@serializable("semi_supervised")
class FreeMatch(_PseudoLabelModel):
    """FreeMatch (Wang et al. 2023): self-adaptive thresholds and fairness.

    Per step, with weak-view probabilities `p` (no gradient): the SAT state
    is updated (`algorithms.sat_update`: EMA with momentum `sat_momentum` of
    `time_p`, `p_model`, `label_hist`), the mask is `max p >= time_p *
    (p_model / max p_model)[argmax p]` (`algorithms.sat_mask`), and

        L = L_sup + lambda_u * mean(mask * CE(strong, argmax p)) + lambda_f * L_f

    with the self-adaptive fairness loss `L_f` (`algorithms.saf_loss`) on
    the masked strong-view probabilities. The state starts at `1/C` and lives
    in non-trainable variables (`time_p`, `p_model`, `label_hist`): it is
    saved with the model and restored by `BackupAndRestore`.

    Logged besides FixMatch's: `fairness_loss`; `threshold` is the global
    `time_p`.

    Args:
        backbone: see `SemiSupervisedModel`.
        num_classes: number of classes.
        lambda_u: weight of the unsupervised loss, `>= 0` (default 1).
        lambda_f: weight of the fairness loss, `>= 0` (default 0.01; USB uses
            0.001 on CIFAR-10).
        sat_momentum: EMA momentum of the SAT state in `[0, 1)` (default 0.999).
        fairness_sign: `"paper"` (default): minimise `algorithms.saf_loss`,
            the sign of FreeMatch's paper (arXiv 2205.07246, `L_f = -H`) and
            USB's code; `"negated"`: minimise its opposite, the cross-entropy
            `H = -sum p log q` itself. The logged `fairness_loss` is the term
            minimised.
        **kwargs: `head`, `mir_weight`, `hdr_weight`, `unlabeled_information`,
            `log_information`, `name`: see `SemiSupervisedModel`.

    Example:

    ```python
    model = FreeMatch(backbone, num_classes=10, lambda_f=0.01)
    model.compile()
    model.fit(train, steps_per_epoch=100, epochs=10)
    float(model.time_p.numpy())  # global self-adaptive threshold
    ```
    """

    algorithm = "freematch"
    training_logs = (*_PseudoLabelModel.training_logs, "fairness_loss")

    def __init__(
        self,
        backbone,
        num_classes,
        lambda_u=1.0,
        lambda_f=0.01,
        sat_momentum=0.999,
        fairness_sign="paper",
        **kwargs,
    ):
        super().__init__(backbone, num_classes, lambda_u=lambda_u, **kwargs)
        self.lambda_f = _check_number(lambda_f, "lambda_f")
        self.sat_momentum = _check_number(sat_momentum, "sat_momentum", 0.0, 1.0)
        if self.sat_momentum >= 1.0:
            raise ValueError(f"`sat_momentum` must be < 1; received {sat_momentum!r}.")
        fairness_sign = fairness_sign_name(fairness_sign)
        if fairness_sign not in FAIRNESS_SIGNS:
            raise ValueError(
                f"`fairness_sign` must be one of {tuple(FAIRNESS_SIGNS)}; "
                f"received {fairness_sign!r}."
            )
        self.fairness_sign = fairness_sign

    def _create_state(self, num_classes):
        uniform = keras.initializers.Constant(1.0 / num_classes)
        self.time_p = self.add_weight(shape=(), initializer=uniform, trainable=False, name="time_p")
        self.p_model = self.add_weight(
            shape=(num_classes,), initializer=uniform, trainable=False, name="p_model"
        )
        self.label_hist = self.add_weight(
            shape=(num_classes,), initializer=uniform, trainable=False, name="label_hist"
        )

    def _mask(self, probs):
        time_p, p_model, label_hist = algorithms.sat_update(
            probs, self.time_p, self.p_model, self.label_hist, self.sat_momentum
        )
        self.time_p.assign(ops.cast(time_p, self.time_p.dtype))
        self.p_model.assign(ops.cast(p_model, self.p_model.dtype))
        self.label_hist.assign(ops.cast(label_hist, self.label_hist.dtype))
        mask, _ = algorithms.sat_mask(probs, time_p, p_model)
        pseudo = ops.cast(ops.argmax(probs, axis=-1), "int32")
        return mask, pseudo, time_p, (p_model, label_hist)

    def _extra_loss(self, probs_strong, mask, state):
        p_model, label_hist = state
        fairness = algorithms.saf_loss(probs_strong, mask, p_model, label_hist)
        fairness = FAIRNESS_SIGNS[self.fairness_sign] * fairness
        self._track("fairness_loss", fairness)
        return self.lambda_f * fairness

    def get_config(self):
        return {
            **super().get_config(),
            "lambda_f": self.lambda_f,
            "sat_momentum": self.sat_momentum,
            "fairness_sign": self.fairness_sign,
        }
