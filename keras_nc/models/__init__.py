"""Models that feed features and head weights to collapse metrics and losses.

- `CollapseClassifier` (`collapse_classifier.py`): a backbone and a linear
  head; construction, forward pass, config.
- `CollapseTrainer` (`trainer.py`): its base, the Keras training loop with
  collapse terms (`compile`, `compute_loss`, `compute_metrics`, `metrics`).
- `collapse_terms.py`: how `compile` splits collapse losses and metrics from
  ordinary ones, and how a step feeds them (`CollapseMetrics`, their container
  in `model.metrics`).
- `wrapping.py`: a functional classifier split at its head
  (`CollapseClassifier.from_model`), backbone shapes, argument checks.
- `collapse_view` (`views.py`): any classifier seen as a `CollapseClassifier`.
"""

from keras_nc.models.collapse_classifier import CollapseClassifier
from keras_nc.models.collapse_terms import CollapseMetrics
from keras_nc.models.trainer import CollapseTrainer
from keras_nc.models.views import collapse_view

__all__ = ["CollapseClassifier", "CollapseMetrics", "CollapseTrainer", "collapse_view"]
