"""Linear interpolation of two models' weights (`interpolate`).

The model at `alpha` on the segment between two models of the same
architecture: weights `(1 - alpha) theta_a + alpha theta_b`, the object of
linear mode connectivity (Frankle et al., ICML 2020; docs/mode_connectivity.md).
"""

import math

import keras
import numpy as np

from keras_nc.paths import batchnorm


def interpolate(model_a, model_b, alpha, *, batchnorm_data=None, batch_size=None):
    """A new model with weights `(1 - alpha) * theta_a + alpha * theta_b`.

    The new model is a copy of `model_a`'s architecture (functional,
    Sequential or subclassed, e.g. `keras_nc.models.CollapseClassifier`,
    copied with `keras.models.clone_model`). Every floating-point weight is
    interpolated, non-trainable ones included (BatchNormalization's moving
    statistics, unless `batchnorm_data` recomputes them); integer and boolean
    variables (weights, and the random seed generators' states that Keras
    keeps out of `model.weights`) are taken from `model_a`. The arithmetic
    runs in float64 and is cast to each variable's dtype, so `alpha=0` and
    `alpha=1` give exactly `model_a`'s and `model_b`'s weights (and
    predictions).

    Values of `alpha` outside `[0, 1]` extrapolate along the line through the
    two models (`alpha=-0.5` lies beyond `model_a`).

    Models with BatchNormalization: the interpolated moving statistics are
    not the statistics of the interpolated network's features, so an
    evaluation without `batchnorm_data` shows loss barriers that are partly
    artefacts of stale statistics. Pass training data as `batchnorm_data` to
    recompute them (see `recompute_batchnorm_statistics`).

    Args:
        model_a: a built `keras.Model` (the model at `alpha=0`).
        model_b: a built `keras.Model` of the same architecture (`alpha=1`).
        alpha: a finite real number.
        batchnorm_data: optional inputs `x`, `(x, y)` arrays or a dataset of
            batches on which BatchNormalization statistics are recomputed
            after interpolating.
        batch_size: batch size of array `batchnorm_data` (default 32).

    Returns:
        A new `keras.Model`; `model_a` and `model_b` are unchanged. Keras'
        `clone_model` compiles the copy of a compiled `model_a` like it; else
        compile it, or evaluate it with `keras_nc.paths.evaluate_model(...,
        reference=model_a)`.

    Raises:
        ValueError: when `alpha` is not a finite real number, or when the
            models' weights differ in number or shape (the message names the
            first mismatching weight: its index, both paths and both shapes).

    Example:

    >>> import keras, numpy as np
    >>> from keras_nc.paths import interpolate
    >>> def linear(value):
    ...     model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    ...     model.set_weights([np.full((2, 1), value), np.zeros(1)])
    ...     return model
    >>> middle = interpolate(linear(0.0), linear(4.0), 0.25)
    >>> middle.get_weights()[0].ravel().tolist()
    [1.0, 1.0]
    """
    alpha = check_alpha(alpha)
    check_architectures(model_a, model_b)
    model = copy_architecture(model_a)
    copy_states(model_a, model)
    assign_interpolation(model, weight_arrays(model_a), weight_arrays(model_b), alpha)
    if batchnorm_data is not None:
        batchnorm.recompute_batchnorm_statistics(model, batchnorm_data, batch_size=batch_size)
    return model


def check_alpha(alpha):
    """`alpha` as a Python float; a ValueError unless it is a finite real number."""
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(
        alpha, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"`alpha` must be a finite real number; got {alpha!r}.")
    if not math.isfinite(float(alpha)):
        raise ValueError(f"`alpha` must be a finite real number; got {alpha!r}.")
    return float(alpha)


def check_architectures(model_a, model_b):
    """A ValueError naming the first weight whose shape differs (or the counts)."""
    weights_a, weights_b = model_a.weights, model_b.weights
    if not weights_a:
        raise ValueError(
            f"`model_a` ({model_a.name!r}) has no weights: build it first "
            "(call it on a batch, or `model.build(input_shape)`)."
        )
    for index, (a, b) in enumerate(zip(weights_a, weights_b, strict=False)):
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(
                "The models' architectures differ: weight "
                f"{index} is {a.path!r} of shape {tuple(a.shape)} in `model_a` and "
                f"{b.path!r} of shape {tuple(b.shape)} in `model_b`."
            )
    if len(weights_a) != len(weights_b):
        index = min(len(weights_a), len(weights_b))
        extra = (weights_a if len(weights_a) > len(weights_b) else weights_b)[index]
        raise ValueError(
            "The models' architectures differ: `model_a` has "
            f"{len(weights_a)} weights and `model_b` {len(weights_b)}; weight {index} "
            f"({extra.path!r}, shape {tuple(extra.shape)}) has no counterpart."
        )


def copy_architecture(model):
    """A built copy of `model`'s architecture (`keras.models.clone_model`), not compiled.

    A subclassed model is cloned through its `get_config`; one built by a call
    is built from its build config, as `.keras` loading does.
    """
    try:
        copy = keras.models.clone_model(model)
    except Exception as error:
        raise ValueError(
            f"Cannot copy model {model.name!r} with `keras.models.clone_model` ({error}); a "
            "subclassed model needs a `get_config` that rebuilds it (Keras' serialisation guide)."
        ) from error
    if not copy.built or len(copy.weights) != len(model.weights):
        # A subclassed model built by a call: build it as `.keras` loading does.
        copy.build_from_config(model.get_build_config())
    if len(copy.weights) != len(model.weights):
        raise ValueError(
            f"Could not copy the architecture of {model.name!r}: the copy has "
            f"{len(copy.weights)} weights, the model {len(model.weights)}. Give the "
            "model a `get_config` (Keras' serialisation guide) so that "
            "`keras.models.clone_model` rebuilds it."
        )
    return copy


def copy_states(source, target):
    """Copies `source`'s integer and boolean variables outside `weights` (seed states).

    Keras keeps random seed generators' states out of `model.weights`; they
    are paired in `model.variables` order when both models hold the same
    number of them, of the same shapes (else `target` keeps its own).
    """

    def states(model):
        weights = {id(variable) for variable in model.weights}
        return [
            variable
            for variable in model.variables
            if id(variable) not in weights and not keras.backend.is_float_dtype(variable.dtype)
        ]

    mine, theirs = states(target), states(source)
    if len(mine) == len(theirs) and all(
        tuple(a.shape) == tuple(b.shape) for a, b in zip(mine, theirs, strict=True)
    ):
        for variable, value in zip(mine, theirs, strict=True):
            variable.assign(keras.ops.convert_to_numpy(value))


def weight_arrays(model):
    """`model`'s weights as NumPy arrays, in `model.weights` order."""
    return [keras.ops.convert_to_numpy(variable) for variable in model.weights]


def assign_interpolation(model, arrays_a, arrays_b, alpha):
    """Sets `model`'s weights to `(1 - alpha) a + alpha b` (float64, then each dtype).

    Integer and boolean weights are taken from `arrays_a`.
    """
    values = []
    for variable, a, b in zip(model.weights, arrays_a, arrays_b, strict=True):
        if keras.backend.is_float_dtype(variable.dtype):
            mixed = (1.0 - alpha) * a.astype(np.float64) + alpha * b.astype(np.float64)
            values.append(mixed.astype(a.dtype))
        else:
            values.append(a)
    for variable, value in zip(model.weights, values, strict=True):
        variable.assign(value)
    return model
