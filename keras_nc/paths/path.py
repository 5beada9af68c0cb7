"""Loss, accuracy and the measures along the segment between two models.

`interpolation_path` evaluates the models `interpolate(model_a, model_b,
alpha)` at several `alpha` and returns one row per point, the table read by
`loss_barrier`, `accuracy_barrier` and `plot_interpolation`
(docs/mode_connectivity.md).
"""

import numbers

import keras
import numpy as np

from keras_nc.paths import batchnorm, evaluation, interpolation


def interpolation_path(
    model_a,
    model_b,
    data,
    alphas=11,
    *,
    metrics=None,
    loss=None,
    batchnorm_data=None,
    batch_size=None,
    verbose=1,
):
    """Evaluates the models on the segment from `model_a` to `model_b`.

    For each `alpha`, the weights `(1 - alpha) theta_a + alpha theta_b` (see
    `interpolate`) are set on one working copy of `model_a`'s architecture,
    BatchNormalization statistics are recomputed on `batchnorm_data` when
    given, and the copy is evaluated on `data`.

    The copy is compiled with `loss` and `metrics` where given, and with
    `model_a`'s (else `model_b`'s) compile arguments otherwise, so that
    accuracy and the measures of arXiv 2409.16767 (`keras_nc.metrics.MIR`,
    `HDR`, `NC1`, ...) are read along the path with fresh state.

    Args:
        model_a: a built `keras.Model` (`alpha=0`).
        model_b: a built `keras.Model` of the same architecture (`alpha=1`).
        data: `(x, y)` arrays or a dataset (see `evaluate_model`).
        alphas: an int `n >= 2` (`n` evenly spaced points of `[0, 1]`) or a
            sequence of finite numbers that includes 0 and 1 (the end points
            are needed by the barriers); values outside `[0, 1]` extrapolate.
        metrics: metrics of the copy (as `keras.Model.compile`).
        loss: loss of the copy (as `keras.Model.compile`).
        batchnorm_data: training inputs on which BatchNormalization
            statistics are recomputed at every point (recommended for models
            with BatchNormalization: see `interpolate`).
        batch_size: batch size of array `data` and `batchnorm_data`.
        verbose: 1 shows a `keras.utils.Progbar` over the points, 0 nothing.

    Returns:
        A list of dicts, one per alpha in the given order:
        `{"alpha": alpha, "loss": ..., "accuracy": ..., ...}` (Python floats).

    Example:

    >>> import keras, numpy as np
    >>> from keras_nc.paths import interpolation_path, loss_barrier
    >>> def linear(seed):
    ...     keras.utils.set_random_seed(seed)
    ...     return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> x, y = np.eye(3, dtype="float32"), np.array([0, 1, 0])
    >>> path = interpolation_path(linear(0), linear(1), (x, y), alphas=3, verbose=0,
    ...     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> middle = path[1]
    >>> len(path), middle["alpha"]
    (3, 0.5)
    >>> loss_barrier(path) <= 1e-6  # a linear model's loss is convex in its weights
    True
    """
    points = check_alphas(alphas)
    interpolation.check_architectures(model_a, model_b)
    arrays_a = interpolation.weight_arrays(model_a)
    arrays_b = interpolation.weight_arrays(model_b)
    model = interpolation.copy_architecture(model_a)
    interpolation.copy_states(model_a, model)
    model.compile(**compile_arguments(model_a, model_b, loss, metrics))
    progress = keras.utils.Progbar(len(points), unit_name="point") if verbose else None
    rows = []
    for index, alpha in enumerate(points):
        interpolation.assign_interpolation(model, arrays_a, arrays_b, alpha)
        if batchnorm_data is not None:
            batchnorm.recompute_batchnorm_statistics(model, batchnorm_data, batch_size=batch_size)
        results = evaluation.evaluate_model(model, data, batch_size=batch_size)
        rows.append({"alpha": alpha, **results})
        if progress is not None:
            progress.update(
                index + 1, values=[(key, results[key]) for key in ("loss",) if key in results]
            )
    return rows


def check_alphas(alphas):
    """`alphas` as a list of Python floats (see `interpolation_path`); ValueError if invalid."""
    if isinstance(alphas, numbers.Integral) and not isinstance(alphas, bool):
        if alphas < 2:
            raise ValueError(f"`alphas` as an int is a number of points, at least 2; got {alphas}.")
        return [float(value) for value in np.linspace(0.0, 1.0, int(alphas))]
    try:
        points = [interpolation.check_alpha(value) for value in alphas]
    except (TypeError, ValueError):
        raise ValueError(
            f"`alphas` must be an int >= 2 or a sequence of finite numbers; got {alphas!r}."
        ) from None
    if 0.0 not in points or 1.0 not in points:
        raise ValueError(
            "`alphas` must include 0 and 1 (the end points, which the barriers "
            f"interpolate between); got {points}."
        )
    return points


def compile_arguments(model_a, model_b, loss, metrics):
    """How the working copy is compiled: given `loss`/`metrics`, else a compiled end model's."""
    reference = next((model for model in (model_a, model_b) if model.compiled), None)
    try:
        return evaluation.compile_arguments(reference, loss, metrics)
    except ValueError:
        raise ValueError(
            "Neither model is compiled and neither `loss` nor `metrics` is given: "
            "pass `loss` (and `metrics`) or compile `model_a`."
        ) from None
