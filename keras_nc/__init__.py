"""keras-nc: information-theoretic Neural Collapse metrics for Keras 3.

Matrix entropy, matrix mutual information, the Matrix Mutual Information Ratio
(MIR), the Matrix Entropy Difference Ratio (HDR) and the Cross-Modal Alignment
(CMA) loss of arXiv 2409.16767, on TensorFlow, JAX and PyTorch via `keras.ops`.
"""

from keras_nc import losses, metrics, models, ops, theory

__version__ = "0.1.0"

__all__ = ["__version__", "losses", "metrics", "models", "ops", "theory"]
