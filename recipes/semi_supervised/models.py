"""Semi-supervised trainers on `CollapseClassifier`: supervised baseline, FixMatch, FreeMatch.

The trainers live in `recipes.semi_supervised.base` (`SemiSupervisedModel`,
the supervised baseline and base class) and
`recipes.semi_supervised.pseudo_label` (`FixMatch`, `FreeMatch`); this module
gathers them, with `ALGORITHMS`, the trainer of each `--algorithm` name. They
are registered for Keras serialisation as
`keras_nc_recipes.semi_supervised>ClassName` (`recipes.registration`):
`.keras` files load with `safe_mode=True`.

Example:

```python
from recipes.semi_supervised.models import FreeMatch

model = FreeMatch(backbone, num_classes=10)
model.compile()
model.fit(train, steps_per_epoch=100, epochs=10,
          callbacks=[keras.callbacks.SwapEMAWeights()])
```
"""

from recipes.semi_supervised.base import (
    LABELED,
    UNLABELED_LABELS,
    UNLABELED_STRONG,
    UNLABELED_WEAK,
    SemiSupervisedModel,
)
from recipes.semi_supervised.pseudo_label import (
    DEPRECATED_FAIRNESS_SIGNS,
    FAIRNESS_SIGNS,
    FixMatch,
    FreeMatch,
    fairness_sign_name,
)

ALGORITHMS = {
    "supervised": SemiSupervisedModel,
    "fixmatch": FixMatch,
    "freematch": FreeMatch,
}

__all__ = [
    "ALGORITHMS",
    "DEPRECATED_FAIRNESS_SIGNS",
    "FAIRNESS_SIGNS",
    "LABELED",
    "UNLABELED_LABELS",
    "UNLABELED_STRONG",
    "UNLABELED_WEAK",
    "FixMatch",
    "FreeMatch",
    "SemiSupervisedModel",
    "fairness_sign_name",
]
