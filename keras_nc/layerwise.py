"""Layer-wise Neural Collapse: the analysis behind `LayerwiseCollapse`.

`keras_nc.callbacks.LayerwiseCollapse` runs a fixed labelled set through one
multi-output sub-model of the backbone (`keras.Model(backbone.inputs,
[outputs of the chosen layers])`, feature maps globally average-pooled),
accumulates per-layer class statistics batch by batch and records, per layer,
the measures of `LAYER_MEASURES`: NC1, CDNV, the accuracy of the
nearest-class-centre classifier, the class-pairing MIR/HDR against the final
head, the matrix entropy and effective rank of the features, RankMe and
alpha-ReQ. This module holds what it reads and what reads it: the layers of a
backbone (`block_outputs`, `layer_output`, `graph_backbone`) and the fit of a
measure through depth (`depth_slopes`). `keras_nc.layerwise.LayerwiseCollapse`
is the callback itself (imported from `keras_nc.callbacks` on first use).
"""

import math

import keras
import numpy as np

# The per-layer measures, in the order of `LayerwiseCollapse.history`'s columns (one meaning
# per key, see docs/log_keys.md: `mir_class`/`hdr_class` are the class pairing).
LAYER_MEASURES = (
    "nc1",
    "cdnv",
    "ncc_accuracy",
    "mir_class",
    "hdr_class",
    "matrix_entropy",
    "effective_rank",
    "rank_me",
    "alpha_req",
)


def _producers(layers):
    """`{id(output tensor): position}` of the layers called once (shared ones are skipped)."""
    index = {}
    for position, layer in enumerate(layers):
        try:
            outputs = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):
            continue
        index.update({id(tensor): position for tensor in outputs})
    return index


def block_outputs(model):
    """Names of the block outputs of a functional (or Sequential) model, in depth order.

    A layer is a *cut* of the graph when every tensor computed before it and
    used after it is its own output. Block outputs are the cuts followed by a
    layer that is not one (the start of a residual block, whose input is still
    used by the shortcut), plus the last layer. For a ResNet: the stem's last
    layer, every block's output and the pooled features. A plain chain (no
    residual block: every layer a cut) gives every layer. The last block's
    output is left out when pooling follows it directly (its pooled values
    are the pooled features).

    Args:
        model: a functional or built `Sequential` `keras.Model`.

    Returns:
        A list of layer names.

    Example:

    ```python
    block_outputs(build_backbone("resnet18", (28, 28, 1), width=0.125))
    # ['stem_relu', 'stage1_block1_out', ..., 'stage4_block1_out', 'pool']: 9 layers
    ```
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    index = _producers(layers)
    last_use = [-1] * len(layers)
    input_last_use = -1
    for position, layer in enumerate(layers):
        try:
            inputs = keras.tree.flatten(layer.input)
        except (AttributeError, ValueError):
            inputs = []
        for tensor in inputs:
            source = index.get(id(tensor))
            if source is None:
                input_last_use = position
            else:
                last_use[source] = max(last_use[source], position)
    cuts, reach = [], input_last_use
    for position in range(len(layers)):
        cuts.append(reach <= position)
        reach = max(reach, last_use[position])
    names = [
        layer.name
        for position, layer in enumerate(layers)
        if cuts[position] and (position == len(layers) - 1 or not cuts[position + 1])
    ]
    return names if len(names) >= 2 else [layer.name for layer in layers]


def layer_output(backbone, name):
    """The symbolic output of the backbone's layer `name`, or an error naming it.

    Args:
        backbone: a functional or built `Sequential` `keras.Model`.
        name: the name of one of its layers.

    Returns:
        The layer's `keras.KerasTensor` output, of rank >= 2.

    Example:

    ```python
    extractor = keras.Model(backbone.inputs, layer_output(backbone, "stem_relu"))
    ```
    """
    try:
        layer = backbone.get_layer(name)
    except ValueError:
        known = [layer.name for layer in backbone.layers]
        raise ValueError(
            f"LayerwiseCollapse: the backbone {backbone.name!r} has no layer {name!r}; its "
            f"layers are {known}."
        ) from None
    try:
        output = layer.output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"LayerwiseCollapse: layer {name!r} has no single output in the backbone's graph "
            f"(a layer called several times, or not connected): {error}"
        ) from None
    if not isinstance(output, keras.KerasTensor) or len(output.shape) < 2:
        raise ValueError(
            f"LayerwiseCollapse: layer {name!r} must output one tensor of features (batch, d) "
            f"or feature maps (batch, ..., channels); it outputs {output!r}."
        )
    return output


def graph_backbone(backbone):
    """The backbone when it has a layer graph; an error saying why otherwise.

    Args:
        backbone: the backbone of a `CollapseClassifier`.

    Returns:
        `backbone`, a functional or built `Sequential` `keras.Model`.

    Example:

    ```python
    names = block_outputs(graph_backbone(model.backbone))
    ```
    """
    inputs = getattr(backbone, "inputs", None) if isinstance(backbone, keras.Model) else None
    if not inputs and isinstance(backbone, keras.Sequential):
        raise ValueError(
            f"LayerwiseCollapse: the Sequential backbone {backbone.name!r} is not built; give it "
            "a keras.Input (or build it) so that its layers have symbolic outputs."
        )
    if not inputs:
        raise ValueError(
            "LayerwiseCollapse reads intermediate layers through the backbone's layer graph: it "
            "needs a functional or Sequential keras.Model backbone (built, with known inputs). "
            f"The backbone {getattr(backbone, 'name', '')!r} ({type(backbone).__name__}) has "
            "none: a subclassed model's layers are not connected symbolically. Build the "
            "backbone with the functional API (keras.Input ... keras.Model(inputs, outputs))."
        )
    return backbone


def depth_slopes(history, measure="nc1"):
    """Least-squares slope of `log10(measure)` against depth, per recorded epoch.

    A slope `s` means the measure is multiplied by `10**s` per layer: a
    geometric decay through depth has a straight line on a log scale and
    `s < 0`. Non-positive values are left out.

    Args:
        history: `LayerwiseCollapse.history` rows.
        measure: a positive measure of `LAYER_MEASURES` (NC1, CDNV).

    Returns:
        `{epoch: (slope, r_squared)}`; NaN when fewer than two points.

    Example:

    >>> rows = [{"epoch": 1, "depth": d, "nc1": 10.0 ** -d} for d in range(3)]
    >>> depth_slopes(rows)
    {1: (-1.0, 1.0)}
    """
    fits = {}
    for epoch in sorted({row["epoch"] for row in history}):
        points = [(r["depth"], r[measure]) for r in history if r["epoch"] == epoch]
        points = [(d, math.log10(v)) for d, v in points if v > 0 and math.isfinite(v)]
        if len(points) < 2:
            fits[epoch] = (math.nan, math.nan)
            continue
        depth, logs = np.array(points, dtype="float64").T
        slope, intercept = np.polyfit(depth, logs, 1)
        residual = np.sum((logs - (slope * depth + intercept)) ** 2)
        spread = np.sum((logs - logs.mean()) ** 2)
        r2 = 1.0 - residual / spread if spread > 0 else 1.0
        fits[epoch] = (round(float(slope), 6), round(float(r2), 6))
    return fits


def __getattr__(name):
    # The callback lives in `keras_nc.callbacks` (which imports this module): re-exported lazily.
    if name == "LayerwiseCollapse":
        from keras_nc.callbacks.layerwise_collapse import LayerwiseCollapse

        return LayerwiseCollapse
    if name == "log_prefix":
        from keras_nc.callbacks.evaluator import log_prefix
        from keras_nc.deprecation import warn_renamed

        warn_renamed("keras_nc.layerwise.log_prefix", "keras_nc.callbacks.evaluator.log_prefix")
        return log_prefix
    raise AttributeError(f"module 'keras_nc.layerwise' has no attribute {name!r}")
