"""What keras-nc's metrics need from Keras and the backends beyond Keras' public API.

- `MetricsList`, `CompileMetrics`: Keras' metric containers
  (`keras.src.trainers.compile_utils`). Keras' monitoring callbacks
  (`EarlyStopping`, `ModelCheckpoint`, `ReduceLROnPlateau` in `mode="auto"`)
  read a metric's direction only from metrics inside one of them listed in
  `model.metrics`; `evaluate` flattens `CompileMetrics`' sub-metrics into its
  list.
- `set_metric_direction`, `metric_direction`: the attribute those callbacks
  read (`Metric._direction`, `"up"` or `"down"`), as Keras' own metrics set it.
- `untrack`: removes a metric (or variable) from the metrics and variables a
  Keras layer or metric lists (`Layer._tracker.untrack`, `Metric._tracker`);
  Keras has no public way to stop tracking an attribute.
- `in_place_update`, `scatter_add`, `add_to`, `add_scaled`: metric state
  updated in place where the backend allows it (a PyTorch parameter, a
  TensorFlow variable outside `tf.distribute`), through Keras' `assign`
  elsewhere.
- `rescale_under_cond`: whether a rarely needed rescale of the state runs
  under `keras.ops.cond` (JAX's `lax.cond` skips the work when it is not
  needed) or unconditionally.

Example:

>>> import keras
>>> from keras_nc.compat import metrics as compat_metrics
>>> metric = keras.metrics.Mean(name="score")
>>> compat_metrics.set_metric_direction(metric, "down")
>>> compat_metrics.metric_direction(metric)
'down'
"""

from keras import ops
from keras.src.trainers import compile_utils

from keras_nc.compat.backend import is_backend
from keras_nc.compat.keras_versions import scatter_update_add

MetricsList = compile_utils.MetricsList
CompileMetrics = compile_utils.CompileMetrics

DIRECTIONS = ("up", "down")


def set_metric_direction(metric, direction):
    """Declares whether higher (`"up"`) or lower (`"down"`) values of `metric` are better.

    Keras' monitoring callbacks read it in `mode="auto"` (Keras' own metrics,
    e.g. `keras.metrics.Accuracy`, set the same attribute).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f'`direction` must be "up" or "down"; received {direction!r}.')
    metric._direction = direction


def metric_direction(metric):
    """The direction declared for `metric` (`"up"`, `"down"`), or None."""
    return getattr(metric, "_direction", None)


def untrack(owner, value):
    """Stops `owner` (a Keras layer or metric) listing `value` among its metrics or variables.

    Keras tracks every metric, layer and variable assigned to an attribute;
    `owner.variables` (and `owner.metrics` for a layer) then include it. After
    `untrack`, an attribute that still refers to `value` no longer adds its
    variables to the owner's.
    """
    owner._tracker.untrack(value)


def in_place_update(variable):
    """The backend variable behind `variable` when it can be updated in place, else None.

    PyTorch parameters and TensorFlow variables outside `tf.distribute` (whose
    replicas' variables are updated through Keras' `assign`); JAX arrays are
    immutable (inside `jit`, XLA updates the donated buffers in place anyway).
    """
    value = variable.value
    if is_backend("torch"):
        import torch

        return value if isinstance(value, torch.nn.Parameter) else None
    if is_backend("tensorflow"):
        import tensorflow as tf

        if isinstance(value, tf.Variable) and not tf.distribute.has_strategy():
            return value
    return None


def scatter_add(variable, indices, rows):
    """`variable[indices[i]] += rows[i]`: `n d` work instead of a `C d` copy of the state."""
    target = in_place_update(variable)
    rows = ops.cast(rows, variable.dtype)
    if target is None:
        variable.assign(scatter_update_add(variable.value, ops.expand_dims(indices, -1), rows))
    elif is_backend("torch"):
        import torch

        with torch.no_grad():
            target.index_add_(0, indices, rows)
    else:
        target.scatter_nd_add(ops.expand_dims(indices, -1), rows)


def add_to(variable, value):
    """`variable += value`, in place where the backend allows it."""
    target = in_place_update(variable)
    value = ops.cast(value, variable.dtype)
    if target is None:
        variable.assign(variable.value + value)
    elif is_backend("torch"):
        import torch

        with torch.no_grad():
            target.add_(value)
    else:
        target.assign_add(value)


def add_scaled(variable, value, factor):
    """`variable += value * factor` (`factor`: a scalar of its dtype), in place where possible.

    One pass on PyTorch (`addcmul_`: no float64 copy of `value`).
    """
    target = in_place_update(variable)
    if target is not None and is_backend("torch"):
        import torch

        with torch.no_grad():
            target.addcmul_(value, factor)
        return
    add_to(variable, ops.cast(value, variable.dtype) * factor)


def rescale_under_cond():
    """Whether a rarely needed rescale of metric state runs under `keras.ops.cond`.

    On JAX, `lax.cond` skips the untaken branch's pass over the state; on the
    other backends the plain computation is used (no branch to trace).
    """
    return is_backend("jax")
