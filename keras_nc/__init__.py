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
    paths,
    plotting,
    pruning,
    sharding,
    step,
    theory,
)


def _version():
    """The installed distribution's version; in a source tree not installed, pyproject's."""
    from importlib import metadata
    from pathlib import Path

    try:
        return metadata.version("keras-nc")
    except metadata.PackageNotFoundError:
        pass
    import re

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
        if found:
            return found.group(1)
    return "0+unknown"


__version__ = _version()

__all__ = [
    "__version__",
    "callbacks",
    "layerwise",
    "losses",
    "metrics",
    "models",
    "ops",
    "paths",
    "plotting",
    "pruning",
    "sharding",
    "step",
    "theory",
]
