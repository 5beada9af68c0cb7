"""Keras metrics of Neural Collapse: matrix entropy, MIR, HDR and the classic NC measures.

Every metric here is a `keras.metrics.Metric` whose state is Keras metric
variables only, so it works in `model.fit` on every backend (JAX's stateless
trainer included) and in custom loops. They need features and head weights, not
only predictions: `keras_nc.models.CollapseClassifier` feeds them
automatically; in a custom loop call

```python
metric.update_state(y_true, features=z, head_weights=w)  # w: (C, d) = kernel.T
```

Modules: `keras_nc.metrics.sample_measures` (per-batch means: `MatrixEntropy`,
`MIR`, `HDR`, `CMA`), `keras_nc.metrics.class_statistics` (`ClassStatistics`, the
per-class accumulator, and `keras_nc.metrics.accumulate`, how a batch is added
to it), `keras_nc.metrics.rank` (`RankMe`), `keras_nc.metrics.class_pairing`
(`ClassMIR`, `ClassHDR`) and `keras_nc.metrics.class_measures` (`NC1` to
`NCCAgreement`): measures of the epoch's class statistics, read through
`keras_nc.metrics.epoch_measure`. The mathematics lives in `keras_nc.ops`.
"""

from keras_nc.metrics.base import CollapseMetric
from keras_nc.metrics.class_measures import (
    CDNV,
    NC1,
    ClassHDR,
    ClassMIR,
    Equinorm,
    ETFError,
    NCCAgreement,
    SelfDuality,
)
from keras_nc.metrics.class_statistics import ClassStatistics
from keras_nc.metrics.rank import RankMe
from keras_nc.metrics.sample_measures import CMA, HDR, MIR, MatrixEntropy

__all__ = [
    "CDNV",
    "CMA",
    "HDR",
    "MIR",
    "NC1",
    "ClassHDR",
    "ClassMIR",
    "ClassStatistics",
    "CollapseMetric",
    "ETFError",
    "Equinorm",
    "MatrixEntropy",
    "NCCAgreement",
    "RankMe",
    "SelfDuality",
]
