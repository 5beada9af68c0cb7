"""`KeepPruned`: pruned weights stay exactly zero while a pruned model trains."""

import keras
import numpy as np

from keras_nc.pruning.magnitude import prunable_weights


class MaskConstraint(keras.constraints.Constraint):
    """A weight constraint that multiplies the weight by a fixed 0/1 mask.

    Applied after the optimizer's update (and after the weight's own
    constraint, `previous`, when it has one).

    Example:

    >>> import numpy as np
    >>> constraint = MaskConstraint(np.array([True, False]))
    >>> print(keras.ops.convert_to_numpy(constraint(keras.ops.ones((2,)))))
    [1. 0.]
    """

    def __init__(self, mask, previous=None):
        self.mask = np.asarray(mask, dtype=bool)
        self.previous = previous

    def __call__(self, w):
        if self.previous is not None:
            w = self.previous(w)
        return keras.ops.multiply(w, keras.ops.cast(self.mask, w.dtype))

    def get_config(self):
        # The mask itself is data, not configuration: only its size is described.
        return {"kept": int(self.mask.sum()), "size": int(self.mask.size)}


class KeepPruned(keras.callbacks.Callback):
    """Keeps the pruned weights of a model at exactly zero during `fit`.

    At the start of each `fit` the masked entries are set to zero and each
    masked weight gets a `MaskConstraint` as its `keras.Variable.constraint`,
    which Keras' optimizers apply after every update on every backend
    (inside the compiled step too, JAX's functional step and
    `jit_compile=True` included); the training function is rebuilt with
    `model.make_train_function(force=True)` so that a step compiled before
    sees them. At the end of `fit` the weights' own constraints come back.
    A callback that assigned the weights after each batch instead would not
    reach JAX's training state, which Keras writes back to the variables only
    at the end of an epoch.

    Args:
        masks: `{variable.path: mask}` as returned by
            `keras_nc.pruning.magnitude_prune` (boolean arrays of the weights'
            shapes, True where kept), matched to the model's weights by path.
            None (default): the masks are the exact zeros of the model's
            prunable weights (the kernels of dense and convolution layers;
            `include` as in `keras_nc.pruning.prunable_weights`) at the start
            of each `fit`, as a loaded pruned model has them.
        include: with `masks=None`, which weights are prunable.

    Attributes:
        active_masks: the masks of the current (or last) `fit`, by path.

    Example:

    ```python
    pruned, masks = keras_nc.pruning.magnitude_prune(model, 0.8)
    pruned.fit(x, y, epochs=2, callbacks=[keras_nc.callbacks.KeepPruned(masks)])
    ```

    See docs/pruning.md; the measures along a sparsity path are those of
    arXiv 2409.16767.
    """

    def __init__(self, masks=None, include=None):
        super().__init__()
        if masks is not None and not isinstance(masks, dict):
            raise ValueError(
                "`masks` must be None or a dict `{variable.path: boolean mask}` (what "
                f"`keras_nc.pruning.magnitude_prune` returns); received {type(masks).__name__}"
            )
        self.masks = None if masks is None else {p: np.asarray(m) for p, m in masks.items()}
        self.include = include
        self.active_masks = {}
        self._saved = []

    def get_config(self):
        """What the callback does; the masks themselves are never written into a config."""
        return {"masks": "given" if self.masks is not None else "zeros at train begin"}

    def resolve(self, model):
        """`[(variable, mask)]`: the masks matched to `model`'s weights by path.

        Raises:
            ValueError: a mask whose path names no weight of `model`, or whose
                shape is not its weight's.
        """
        if self.masks is None:
            weights = model.weights
            pairs = []
            for index in prunable_weights(model, self.include):
                variable = weights[index]
                pairs.append((variable, keras.ops.convert_to_numpy(variable) != 0))
            return pairs
        by_path = {variable.path: variable for variable in model.weights}
        pairs = []
        for path, mask in self.masks.items():
            variable = by_path.get(path)
            if variable is None:
                raise ValueError(
                    f"KeepPruned: the mask {path!r} names no weight of model {model.name!r} "
                    f"(its weights: {sorted(by_path)[:12]}...). Pass the masks of this model "
                    "(`magnitude_prune` returns those of the pruned copy), or masks=None."
                )
            if tuple(mask.shape) != tuple(variable.shape):
                raise ValueError(
                    f"KeepPruned: the mask {path!r} has shape {tuple(mask.shape)}, but the "
                    f"weight has shape {tuple(variable.shape)}."
                )
            pairs.append((variable, mask.astype(bool)))
        return pairs

    def on_train_begin(self, logs=None):
        pairs = self.resolve(self.model)
        self._saved = []
        for variable, mask in pairs:
            self._saved.append((variable, variable.constraint))
            variable.assign(variable * keras.ops.cast(mask, variable.dtype))
            variable.constraint = MaskConstraint(mask, variable.constraint)
        self.active_masks = {variable.path: mask for variable, mask in pairs}
        self.model.make_train_function(force=True)

    def on_train_end(self, logs=None):
        for variable, constraint in self._saved:
            variable.constraint = constraint
        self._saved = []
        # A later `fit` without this callback must not keep a step traced with the masks.
        self.model.make_train_function(force=True)
