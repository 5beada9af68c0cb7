"""Backbones of the grokking recipe and the compiled `CollapseClassifier`.

Both backbones read the token sequence `[a, b, =]` and return one feature
vector per example; the classifier's linear head maps it to the `p` residues.

- `"mlp"` (default): a shared token embedding, the three embeddings
  concatenated (the MLP-on-one-hot-pairs model: a one-hot pair times a first
  weight matrix is a sum of two embeddings), one ReLU hidden layer.
- `"transformer"`: token and position embeddings and one pre-norm transformer
  block (multi-head attention and a ReLU MLP, residual); the features are the
  residual stream at the `=` position, as in Nanda et al. (2023).
"""

import keras

import keras_nc
from keras_nc.losses import CMALoss, InformationRegularizer

BACKBONES = ("mlp", "transformer")


def mlp_backbone(vocabulary_size, embed_dim=128, hidden_dim=256):
    """Embedding of the three tokens, concatenated, and one ReLU layer: features `(n, hidden)`.

    Example:

    ```python
    backbone = mlp_backbone(98)
    features = backbone(np.array([[3, 5, 97]]))  # (1, 256)
    ```
    """
    tokens = keras.Input((3,), dtype="int32", name="tokens")
    embedded = keras.layers.Embedding(vocabulary_size, embed_dim, name="embedding")(tokens)
    flat = keras.layers.Flatten(name="concatenate")(embedded)
    features = keras.layers.Dense(hidden_dim, activation="relu", name="hidden")(flat)
    return keras.Model(tokens, features, name="mlp")


def transformer_backbone(vocabulary_size, embed_dim=128, num_heads=4, mlp_dim=512):
    """One pre-norm transformer block over `[a, b, =]`; features: the stream at `=`.

    Example:

    ```python
    backbone = transformer_backbone(98)
    features = backbone(np.array([[3, 5, 97]]))  # (1, 128)
    ```
    """
    tokens = keras.Input((3,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocabulary_size, embed_dim, name="embedding")(tokens)
    # Position indices from the input (a symbolic op), so the embedding is part of the model.
    positions = keras.ops.zeros_like(tokens) + keras.ops.arange(3, dtype="int32")
    x = x + keras.layers.Embedding(3, embed_dim, name="position_embedding")(positions)
    h = keras.layers.LayerNormalization(name="attention_norm")(x)
    h = keras.layers.MultiHeadAttention(num_heads, embed_dim // num_heads, name="attention")(h, h)
    x = x + h
    h = keras.layers.LayerNormalization(name="mlp_norm")(x)
    h = keras.layers.Dense(mlp_dim, activation="relu", name="mlp_in")(h)
    x = x + keras.layers.Dense(embed_dim, name="mlp_out")(h)
    features = x[:, -1, :]
    return keras.Model(tokens, features, name="transformer")


def build_backbone(name, vocabulary_size, width=None):
    """A backbone by name (`BACKBONES`); `width`: the MLP's hidden or the transformer's model width.

    Example:

    ```python
    backbone = build_backbone("mlp", vocabulary_size=98, width=128)
    ```
    """
    if name == "mlp":
        return mlp_backbone(vocabulary_size, hidden_dim=width or 256)
    if name == "transformer":
        width = width or 128
        return transformer_backbone(vocabulary_size, embed_dim=width, mlp_dim=4 * width)
    raise ValueError(f"`name` must be one of {', '.join(BACKBONES)}; received {name!r}.")


def build_model(p, vocabulary_size, model="mlp", width=None):
    """The `CollapseClassifier` of a backbone and a linear head over the `p` residues."""
    backbone = build_backbone(model, vocabulary_size, width)
    return keras_nc.models.CollapseClassifier(backbone, p, name=f"grokking_{model}")


def compile_model(model, lr=3e-3, weight_decay=1.0, mir_weight=0.0, hdr_weight=0.0,
                  cma_weight=0.0, warmup_steps=10):  # fmt: skip
    """Compiles for training: AdamW, cross-entropy and the optional collapse losses.

    Training logs only the loss and accuracy of the training batches: the
    collapse measures are computed on the whole train and test sets at the end
    of each logging interval (`recipes.grokking.measure.SplitMeasures`), not at
    every step.
    """
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=1, alpha=1.0, warmup_target=lr, warmup_steps=max(warmup_steps, 1)
    )  # a linear warm-up to a constant lr (alpha=1: no decay)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay, beta_1=0.9, beta_2=0.98)
    loss = [keras.losses.SparseCategoricalCrossentropy(from_logits=True)]
    if mir_weight or hdr_weight:
        loss.append(InformationRegularizer(mir_weight=mir_weight, hdr_weight=hdr_weight))
    if cma_weight:
        loss.append(CMALoss(weight=cma_weight))
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model
