"""Callbacks: measures of a fixed dataset at epoch ends, and a divergence guard.

- `EpochEndEvaluator` (`keras_nc.callbacks.evaluator`): the base of the
  callbacks that measure at chosen epoch ends and put their values into the
  epoch's `logs`;
- `CollapseMonitor` (`keras_nc.callbacks.collapse_monitor`): the Neural
  Collapse measures of a dataset (`collapse_report`, `MEASURES`);
- `LayerwiseCollapse` (`keras_nc.callbacks.layerwise_collapse`): the same
  through depth (its analysis in `keras_nc.layerwise`);
- `TerminateOnNonFiniteWeights` (`keras_nc.callbacks.terminate`);
- `KeepPruned` (`keras_nc.callbacks.pruning`): pruned weights stay zero
  while a pruned model trains (`keras_nc.pruning`).

They only compute: Keras' own callbacks placed after them (`CSVLogger`,
`TensorBoard`, `History`, the progress bar) write their values. Every key they
log is listed on the log keys page of the documentation (docs/log_keys.md).
Figures are in `keras_nc.plotting`.
"""

import warnings

from keras_nc.callbacks.collapse_monitor import MEASURES, CollapseMonitor, collapse_report
from keras_nc.callbacks.evaluator import EpochEndEvaluator
from keras_nc.callbacks.layerwise_collapse import LayerwiseCollapse
from keras_nc.callbacks.pruning import KeepPruned
from keras_nc.callbacks.terminate import TerminateOnNonFiniteWeights
from keras_nc.layerwise import block_outputs

__all__ = [
    "MEASURES",
    "CollapseMonitor",
    "EpochEndEvaluator",
    "KeepPruned",
    "LayerwiseCollapse",
    "TerminateOnNonFiniteWeights",
    "block_outputs",
    "collapse_report",
]

# Names that lived here before the figures moved to `keras_nc.plotting` (0.1.0).
_MOVED_TO_PLOTTING = ("collapse_panels", "draw_panel", "plot_collapse_history")


def __getattr__(name):
    if name in _MOVED_TO_PLOTTING:
        warnings.warn(
            f"`keras_nc.callbacks.{name}` moved to `keras_nc.plotting.{name}`.",
            DeprecationWarning,
            stacklevel=2,
        )
        from keras_nc import plotting

        return getattr(plotting, name)
    raise AttributeError(f"module 'keras_nc.callbacks' has no attribute {name!r}")
