"""Losses that shape Neural Collapse: the CMA loss and the MIR/HDR regulariser.

They read labels, features and classifier rows rather than `(y_true, y_pred)`:
`keras_nc.models.CollapseClassifier` passes them when they appear in
`compile(loss=[...])` (the list is summed); in a custom loop call

```python
loss_value = loss(y_true, features=z, head_weights=w)  # w: (C, d) = kernel.T
```

The mathematics lives in `keras_nc.ops`.
"""

import keras

from keras_nc.compat import distribute
from keras_nc.ops import cma
from keras_nc.ops.guards import check_alpha, check_flag
from keras_nc.step import CollapseStep


def _check_weight(value, name, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a number; received {value!r}.")
    if positive and not value > 0:
        raise ValueError(f"`{name}` must be > 0; received {value!r}.")
    if value < 0:
        raise ValueError(f"`{name}` must be >= 0; received {value!r}.")
    return float(value)


class CollapseLoss(keras.losses.Loss):
    """Base class of the losses computed from labels, features and head rows.

    Subclasses implement `compute(step)`, returning a scalar from the step's
    `keras_nc.step.CollapseStep` (its labelled batch, memoised entropies and
    ratios, which the step's metrics then reuse). Calling the loss returns that
    value (already multiplied by its weight; under a `tf.distribute` strategy
    divided by the number of replicas, like every Keras loss). `sample_weight`
    weights the batch's rows inside the Gram matrices: a row of weight 0 leaves
    the batch, as if it were not there (padding, unconfident pseudo-labels);
    see the Concepts page for the weighted definition.
    `keras_nc.models.CollapseClassifier` calls
    `loss(y_true, features=z, head_weights=w, step=step)`; a plain
    `keras.Model` would pass predictions (`loss(y_true, y_pred)`), which these
    losses cannot use: they raise an error saying so.
    """

    def compute(self, step):
        raise NotImplementedError

    def __call__(
        self, y_true, y_pred=None, sample_weight=None, *, features=None, head_weights=None,
        step=None,
    ):  # fmt: skip
        if y_pred is not None or features is None or head_weights is None:
            raise ValueError(
                f"{type(self).__name__} reads the features and head rows of a classifier "
                "(`features` (n, d), `head_weights` (C, d)), not its predictions: use it in "
                "`keras_nc.models.CollapseClassifier`'s `compile(loss=[...])` (wrap a "
                "functional model with `CollapseClassifier.from_model(model)`), or call "
                "`loss(y_true, features=..., head_weights=...)`."
            )
        if step is None:
            step = CollapseStep(y_true, features, head_weights, sample_weight)
        return distribute.scale_loss_for_replicas(self.compute(step))

    def call(self, y_true, y_pred):
        raise NotImplementedError(
            f"{type(self).__name__} is computed from features and head weights: call it as "
            "loss(y_true, features=..., head_weights=...)."
        )


@keras.saving.register_keras_serializable(package="keras_nc")
class CMALoss(CollapseLoss):
    """Cross-Modal Alignment loss: `weight * CMA` (arXiv 2409.16767).

    For each class `c` in the batch, the features of its samples and its anchor
    (head row `w_c`; in a CLIP zero-shot classifier the text embedding of the
    class prompt) form a group whose normalised matrix entropy is averaged over
    the classes present (`keras_nc.ops.cma_entropy`). Minimising it pulls each
    class's features and its anchor onto one direction. Add it to the
    cross-entropy: `compile(loss=[SparseCategoricalCrossentropy(from_logits=True),
    CMALoss(weight=0.5)])`.

    Jit-compatible (static shapes): one batched eigendecomposition of
    `min(C, n)` matrices of size `n + 1` per batch.

    Args:
        weight: multiplier `lambda > 0` (the authors' code used -1, which
            maximises the entropy; that is a bug, so negative weights are refused).
        name: loss name (default `"cma"`).

    Example:

    ```python
    loss = CMALoss(weight=0.5)
    value = loss(labels, features=image_embeddings, head_weights=text_embeddings)
    ```
    """

    def __init__(self, weight=1.0, name="cma", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight = _check_weight(weight, "weight", positive=True)

    def compute(self, step):
        return self.weight * cma.cma_entropy_of(step.batch())

    def get_config(self):
        return {"name": self.name, "weight": self.weight}


@keras.saving.register_keras_serializable(package="keras_nc")
class InformationRegularizer(CollapseLoss):
    """MIR/HDR regulariser: `-mir_weight * MIR(K_Z, K_W) + hdr_weight * HDR(K_Z, K_W)`.

    Sample-head pairing per batch (arXiv 2409.16767): the cosine Gram of the
    (batch-centred) features against that of the head rows picked by the
    labels. Gradients reach the backbone and the head. Summed with the
    cross-entropy it rewards information shared between features and head
    (MIR up) and balanced entropies (HDR down).

    The paper's weights are not known. The defaults (0.5 each) are the better
    of {0.1, 0.5} in the supervised recipe's Fashion-MNIST ablation (test
    accuracy +0.7 points over cross-entropy alone on average, ahead on 3 of 3
    seeds, but within the seed spread: weak evidence; see the Recipes page).
    Tune them for your data.

    Args:
        mir_weight: weight of the MIR reward, `>= 0`.
        hdr_weight: weight of the HDR penalty, `>= 0`.
        center: centre the features by the batch mean (default `True`).
        alpha: entropy order. `alpha=2` (Renyi-2) needs no eigendecomposition
            at all: each entropy is `-log(||K||_F^2 / tr(K)^2)`, the cheapest
            option (see the Performance page); its values differ from the
            von Neumann ones (`alpha=1`, default).
        name: loss name (default `"information_regularizer"`).

    Example:

    ```python
    model.compile(loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        InformationRegularizer(mir_weight=0.5, hdr_weight=0.5)])
    ```
    """

    def __init__(
        self,
        mir_weight=0.5,
        hdr_weight=0.5,
        center=True,
        alpha=1.0,
        name="information_regularizer",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.mir_weight = _check_weight(mir_weight, "mir_weight")
        self.hdr_weight = _check_weight(hdr_weight, "hdr_weight")
        self.center = check_flag(center, "center")
        self.alpha = check_alpha(alpha)

    def compute(self, step):
        mir, hdr = step.sample_ratios(self.center, self.alpha)
        return self.hdr_weight * hdr - self.mir_weight * mir

    def get_config(self):
        return {
            "name": self.name,
            "mir_weight": self.mir_weight,
            "hdr_weight": self.hdr_weight,
            "center": self.center,
            "alpha": self.alpha,
        }
