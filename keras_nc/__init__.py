"""keras-nc: information-theoretic Neural Collapse metrics for Keras 3.

Matrix entropy, matrix mutual information, the Matrix Mutual Information Ratio
(MIR), the Matrix Entropy Difference Ratio (HDR) and the Cross-Modal Alignment
(CMA) loss of arXiv 2409.16767, on TensorFlow, JAX and PyTorch via `keras.ops`.

Every public submodule is reachable after `import keras_nc` (e.g.
`keras_nc.callbacks.CollapseMonitor`, `keras_nc.plotting.plot_collapse_history`);
importing them needs only `keras` and `numpy` (`keras_nc.plotting` imports
matplotlib when it draws).
"""

from keras_nc import (
    callbacks,
    layerwise,
    losses,
    metrics,
    models,
    ops,
    plotting,
    sharding,
    step,
    theory,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "callbacks",
    "layerwise",
    "losses",
    "metrics",
    "models",
    "ops",
    "plotting",
    "sharding",
    "step",
    "theory",
]
