"""Weight-space paths between models: linear interpolation and barriers.

Tools for linear mode connectivity (Frankle, Dziugaite, Roy and Carbin,
"Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020),
with the measures of arXiv 2409.16767 read along the way
(docs/mode_connectivity.md):

- `interpolate`: the model with weights `(1 - alpha) theta_a + alpha theta_b`,
  BatchNormalization statistics optionally recomputed on data
  (`recompute_batchnorm_statistics`).
- `interpolation_path`: loss, accuracy and any metric at several alphas.
- `barrier`, `loss_barrier`, `accuracy_barrier`: the largest excess of a
  metric over the line between its end points' values.
- `plot_interpolation`: the path's figure (needs matplotlib).
- `evaluate_model`: `model.evaluate` as Python floats, compiling an
  uncompiled model like a reference model.

Example:

>>> import keras, numpy as np
>>> from keras_nc import paths
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
>>> same = paths.interpolate(model, model, 0.5)
>>> bool(np.array_equal(same.get_weights()[0], model.get_weights()[0]))
True
"""

from keras_nc.paths.barriers import accuracy_barrier, barrier, loss_barrier
from keras_nc.paths.batchnorm import recompute_batchnorm_statistics
from keras_nc.paths.evaluation import evaluate_model
from keras_nc.paths.interpolation import interpolate
from keras_nc.paths.path import interpolation_path
from keras_nc.paths.plotting import plot_interpolation

__all__ = [
    "accuracy_barrier",
    "barrier",
    "evaluate_model",
    "interpolate",
    "interpolation_path",
    "loss_barrier",
    "plot_interpolation",
    "recompute_batchnorm_statistics",
]
