"""Weight-space paths between models: linear interpolation and loss barriers.

Tools for linear mode connectivity (Frankle, Dziugaite, Roy and Carbin,
"Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020) and
the measures of arXiv 2409.16767 along the way (see docs/mode_connectivity.md):

- `evaluate_model`: `model.evaluate` as Python floats, compiling an
  uncompiled model like a reference model (or with a given loss and metrics).
"""

from keras_nc.paths.evaluation import evaluate_model

__all__ = ["evaluate_model"]
