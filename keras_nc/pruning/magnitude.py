"""Magnitude pruning of a Keras model: a pruned copy and its masks.

`magnitude_prune` zeroes the smallest-magnitude entries of a model's kernels,
either with one threshold over all of them (`scope="global"`, the global
magnitude pruning of Frankle & Carbin 2019, "The Lottery Ticket Hypothesis",
and Blalock et al. 2020, "What is the State of Neural Network Pruning?") or
tensor by tensor (`scope="layer"`). `prunable_weights` lists what it prunes.
Why prune at all in keras-nc: arXiv 2409.16767 relates the performance of
pruned networks to MIR and HDR; `keras_nc.pruning.sparsity_path` measures them
along a range of sparsities (docs/pruning.md).
"""

import math
import numbers

import keras
import numpy as np

from keras_nc.compat.pruning import flatten_layers
from keras_nc.paths import interpolation

SCOPES = ("global", "layer")
# The layers whose kernels are pruned by default, and the names of those kernels.
PRUNABLE_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def check_sparsity(sparsity):
    """`sparsity` as a float, or a `ValueError` unless it is a real number in [0, 1)."""
    if (
        isinstance(sparsity, bool)
        or not isinstance(sparsity, numbers.Real)
        or not math.isfinite(float(sparsity))
        or not 0 <= float(sparsity) < 1
    ):
        raise ValueError(
            "`sparsity` must be a real number in [0, 1) (the fraction of the prunable weights "
            f"set to zero); received sparsity={sparsity!r}"
        )
    return float(sparsity)


def check_scope(scope):
    if scope not in SCOPES:
        raise ValueError(f"`scope` must be one of {SCOPES}; received scope={scope!r}")
    return scope


def _owners(model):
    """`{id(variable): layer}`: the innermost layer listing each of `model`'s weights."""
    owners = {}
    for layer in flatten_layers(model):
        for variable in layer.weights:
            owner = owners.get(id(variable))
            if owner is None or len(layer.weights) <= len(owner.weights):
                owners[id(variable)] = layer
    return owners


def _selector(model, include):
    """A predicate `(layer, variable) -> bool` for `include` (see `prunable_weights`)."""
    if include is None:
        return lambda layer, v: isinstance(layer, PRUNABLE_LAYERS) and v.name in KERNEL_NAMES
    if callable(include):
        return include
    if isinstance(include, str) or not all(isinstance(name, str) for name in include):
        raise ValueError(
            "`include` must be None, a callable `(layer, variable) -> bool` or a sequence of "
            f"layer names; received include={include!r}"
        )
    names = set(include)
    known = {layer.name for layer in flatten_layers(model)}
    if names - known:
        raise ValueError(
            f"`include` names layers that {model.name!r} does not have: "
            f"{sorted(names - known)}; its layers: {sorted(known)}"
        )
    return lambda layer, v: layer.name in names and len(v.shape) >= 2


def prunable_weights(model, include=None):
    """The indices in `model.weights` of the weights that pruning may zero.

    Args:
        model: a built Keras model (functional, `Sequential` or subclassed).
        include: which weights are prunable:
            - None (default): the kernels of `Dense`, `EinsumDense` and the
              convolution layers (`Conv*`, `Conv*Transpose`, `DepthwiseConv*`,
              `SeparableConv*`), wherever they are nested; never biases,
              batch normalisation or embeddings;
            - a sequence of layer names: the weights with at least two axes
              (kernels, embedding matrices) of the named layers (a name is
              that of the layer that creates the weight);
            - a callable `(layer, variable) -> bool`, asked about every
              floating-point weight with the layer that creates it.

    Returns:
        A list of indices into `model.weights`, in that order.

    Example:

    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> hidden = keras.layers.Dense(3, name="hidden")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    >>> print(*(model.weights[i].path for i in prunable_weights(model)))
    hidden/kernel out/kernel
    >>> print(*(model.weights[i].path for i in prunable_weights(model, include=("out",))))
    out/kernel
    """
    select = _selector(model, include)
    owners = _owners(model)
    chosen, seen = [], set()
    for index, variable in enumerate(model.weights):
        if id(variable) in seen or not keras.backend.is_float_dtype(variable.dtype):
            continue
        seen.add(id(variable))
        if select(owners.get(id(variable)), variable):
            chosen.append(index)
    if not chosen:
        raise ValueError(
            f"`include={include!r}` selects no weight of model {model.name!r} to prune "
            "(by default: the kernels of Dense, EinsumDense and convolution layers)."
        )
    return chosen


def prune_masks(values, sparsity, scope="global"):
    """Boolean masks (True = kept) zeroing `round(sparsity * size)` smallest-|w| entries.

    `scope="global"` ranks all entries of `values` together (one threshold),
    `"layer"` each array on its own. Ties are broken by position (a stable
    sort of the flattened, concatenated magnitudes), so exactly
    `round(sparsity * size)` entries are removed; entries already zero are
    the smallest and count among them.

    Example:

    >>> import numpy as np
    >>> first, second = prune_masks([np.array([3.0, -1.0]), np.array([0.5, 2.0])], 0.5)
    >>> print(first, "and", second)
    [ True False] and [False  True]
    """
    sparsity, scope = check_sparsity(sparsity), check_scope(scope)
    values = [np.asarray(v) for v in values]
    groups = [values] if scope == "global" else [[v] for v in values]
    masks = []
    for group in groups:
        magnitudes = np.concatenate([np.abs(v).ravel() for v in group]) if group else []
        keep = np.ones(len(magnitudes), dtype=bool)
        keep[np.argsort(magnitudes, kind="stable")[: round(sparsity * len(magnitudes))]] = False
        splits = np.cumsum([v.size for v in group])[:-1]
        masks += [k.reshape(v.shape) for k, v in zip(np.split(keep, splits), group, strict=True)]
    return masks


def copy_model(model):
    """A model of `model`'s architecture holding copies of all its weights, not compiled.

    The architecture is copied by `keras_nc.paths.interpolation.copy_architecture`
    (`keras.models.clone_model`), the weights and seed states from `model`.
    """
    copy = interpolation.copy_architecture(model)
    copy.set_weights(model.get_weights())
    interpolation.copy_states(model, copy)
    return copy


def magnitude_prune(model, sparsity, *, scope="global", include=None):
    """A copy of `model` whose smallest-magnitude prunable weights are zero, and its masks.

    The model itself is left unchanged: its copy (same architecture, every
    weight copied, batch normalisation statistics included; not compiled,
    as Keras' clones) has
    `round(sparsity * N)` of its `N` prunable entries set to zero, those of
    smallest absolute value:

    - `scope="global"` (default): one threshold over all prunable weights
      (global magnitude pruning; Frankle & Carbin 2019, Blalock et al. 2020),
      so layers with small weights lose more;
    - `scope="layer"`: each prunable tensor loses `round(sparsity * size)` of
      its own entries.

    Ties are broken by position, so the counts are exact. Weights that are
    already zero are the smallest and count toward the sparsity: pruning a
    pruned model to a higher sparsity removes only the difference.
    `keras_nc.callbacks.KeepPruned(masks)` keeps the zeros during fine-tuning.
    arXiv 2409.16767 reads pruning through MIR and HDR (docs/pruning.md).

    Args:
        model: a built Keras model: functional, `Sequential` or subclassed
            (with a `get_config`), `keras_nc.models.CollapseClassifier` included.
        sparsity: the fraction of prunable entries to zero, a real number in
            [0, 1).
        scope: `"global"` or `"layer"`.
        include: which weights are prunable (default: the kernels of dense
            and convolution layers); see `prunable_weights`.

    Returns:
        `(pruned_model, masks)`: the copy, and `{variable.path: mask}` for its
        prunable weights, `mask` a NumPy boolean array of the weight's shape,
        True where the entry is kept.

    Example:

    >>> import keras
    >>> inputs = keras.Input((8,))
    >>> model = keras.Model(inputs, keras.layers.Dense(4, name="dense")(inputs))
    >>> pruned, masks = magnitude_prune(model, 0.75)
    >>> int((keras.ops.convert_to_numpy(pruned.get_layer("dense").kernel) == 0).sum())
    24
    >>> {path: int(mask.sum()) for path, mask in masks.items()}
    {'dense/kernel': 8}
    """
    sparsity, scope = check_sparsity(sparsity), check_scope(scope)
    chosen = prunable_weights(model, include)
    values = [keras.ops.convert_to_numpy(model.weights[i]) for i in chosen]
    kept = prune_masks(values, sparsity, scope)
    copy = copy_model(model)
    masks = {}
    for index, value, mask in zip(chosen, values, kept, strict=True):
        variable = copy.weights[index]
        variable.assign(np.where(mask, value, np.zeros_like(value)))
        masks[variable.path] = mask
    if len(masks) != len(chosen):
        raise ValueError(f"The copy of {model.name!r} has prunable weights of the same path.")
    return copy, masks
