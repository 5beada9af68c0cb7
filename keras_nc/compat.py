"""The Keras private names keras-nc relies on, in one place.

Keras offers no public hook for some of what keras-nc needs. Each such use
lives here, with a test in `tests/test_compat.py` that fails loudly when a
Keras release changes it, so that a Keras upgrade names what it broke.

- `MetricsList`: Keras' callbacks that watch a metric (`EarlyStopping`,
  `ModelCheckpoint`, `ReduceLROnPlateau` in `mode="auto"`) read a metric's
  direction only from metrics inside Keras' metric containers
  (`keras.src.trainers.compile_utils.MetricsList` or `CompileMetrics`) listed in
  `model.metrics`; `CollapseClassifier` lists its collapse metrics in one.
- `set_metric_direction`: the attribute those callbacks read (`_direction`,
  `"up"` or `"down"`), as Keras' own metrics set it.
- `CompileMetrics`: the container of the metrics passed to `compile`, whose
  sub-metrics Keras flattens into `evaluate`'s list.
"""

from keras.src.trainers import compile_utils

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
