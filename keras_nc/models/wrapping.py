"""How a `CollapseClassifier` reads its backbone and head: layer graphs, shapes, argument checks.

`split_at_head` cuts a functional classifier into the feature extractor and
the `Dense` logits head that `CollapseClassifier.from_model` wraps; the other
functions read a backbone's symbolic inputs and outputs, and check the
constructor's arguments with errors that say what to pass instead.

Example:

>>> import keras
>>> inputs = keras.Input((4,))
>>> features = keras.layers.Dense(3, name="features")(inputs)
>>> model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(features))
>>> backbone, head = split_at_head(model)
>>> head.name, tuple(backbone.output.shape)
('logits', (None, 3))
"""

import operator

import keras


def describe(value):
    """How an error message names a value: a layer by class, name and units."""
    if isinstance(value, keras.layers.Dense):
        return f"Dense {value.name!r} with {value.units} units"
    if isinstance(value, keras.layers.Layer):
        return f"{type(value).__name__} {value.name!r}"
    if callable(value):
        return f"the function {getattr(value, '__name__', repr(value))!r}"
    return repr(value)


def check_num_classes(num_classes):
    """`num_classes` as an int >= 2 (any integer type: Python, NumPy), else a `ValueError`."""
    try:
        value = None if isinstance(num_classes, bool) else operator.index(num_classes)
    except TypeError:
        value = None
    if value is None or value < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2; received {num_classes!r}.")
    return int(value)


def check_data_format(data_format):
    """`data_format`, or Keras' global image data format when None."""
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            '`data_format` must be "channels_last", "channels_first" or None; received '
            f"{data_format!r}."
        )
    return data_format


def check_backbone(backbone):
    """`backbone` if it is a Keras layer (or model), else a `ValueError` saying how to wrap it."""
    if not isinstance(backbone, keras.layers.Layer):
        raise ValueError(
            "`backbone` must be a Keras model or layer mapping inputs to features (a "
            "keras.Model, keras.Sequential or keras.layers.Layer); received "
            f"{describe(backbone)}. Wrap a function in a layer of your own (a "
            "keras.layers.Layer whose `call` applies it), which Keras can save."
        )
    return backbone


def check_head(head, num_classes):
    """`head` if it is a `Dense` layer giving `num_classes` logits (None: a new one, `"head"`)."""
    if head is None:
        return keras.layers.Dense(num_classes, name="head")
    if not isinstance(head, keras.layers.Dense):
        raise ValueError(
            f"`head` must be a keras.layers.Dense with num_classes={num_classes} units; "
            f"received {describe(head)}."
        )
    if head.units != num_classes:
        raise ValueError(
            f"`head` must be a keras.layers.Dense with num_classes={num_classes} units; "
            f"received Dense {head.name!r} with {head.units} units."
        )
    if head.activation not in (keras.activations.linear, None):
        raise ValueError(
            f"`head` must output logits (a Dense layer without activation); received "
            f"activation={head.activation.__name__!r}. The collapse measures read its "
            "kernel as the linear classifier W, and the losses expect logits: use "
            "`from_logits=True` losses and apply softmax when you need probabilities."
        )
    return head


def known_inputs(layer):
    """The symbolic inputs of a functional model (or built Sequential), else None."""
    try:
        return getattr(layer, "inputs", None)
    except (AttributeError, ValueError):  # a Sequential without Input raises
        return None


def known_outputs(layer):
    """The symbolic outputs of a functional model (or built Sequential), else None."""
    try:
        return getattr(layer, "outputs", None)
    except (AttributeError, ValueError):
        return None


def output_shape(layer, input_shape):
    """The output shape of `layer` on inputs of `input_shape`, traced when not declared.

    Subclassed models and custom layers often implement no
    `compute_output_shape`; Keras' `compute_output_spec` then traces `call`
    on symbolic inputs.
    """
    try:
        shape = layer.compute_output_shape(input_shape)
    except NotImplementedError:
        spec = layer.compute_output_spec(keras.KerasTensor(tuple(input_shape)))
        shape = spec.shape
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        raise ValueError(
            f"The backbone {layer.name!r} returns several outputs; it must return one "
            "features tensor."
        )
    return tuple(shape)


def split_at_head(model, features_layer=None, head_layer=None):
    """`(backbone, head)` of a functional classifier: its feature extractor and `Dense` head.

    Args:
        model: a functional `keras.Model` (or a `Sequential` with a known
            input) ending in a `Dense` layer that outputs logits.
        features_layer: optional name of the layer whose output are the
            features (default: the input of the head).
        head_layer: optional name of the `Dense` head (default: the last
            `Dense` layer of the model).

    Returns:
        A functional `keras.Model` from `model`'s inputs to the features, and
        the head layer; both share `model`'s layers and weights.
    """
    model_inputs = _graph_inputs(model)
    head = _find_head(model, head_layer)
    after = _layers_after(model, head)
    if after:
        raise ValueError(
            f"`model` {model.name!r} applies {after} after its head {head.name!r}: a "
            "CollapseClassifier returns the head's logits, so the wrapped model would "
            "return something else than `model` does. Build the model without them (e.g. "
            "`classifier_activation=None` in keras.applications, or "
            "`keras.Model(model.inputs, model.get_layer(head_name).output)`), train with "
            "`from_logits=True` losses, and apply `keras.ops.softmax` to the predictions "
            "when you need probabilities."
        )
    feature_tensor = (
        model.get_layer(features_layer).output if features_layer is not None else head.input
    )
    # One input as a tensor, not a list of one (a list makes every call warn).
    inputs = model_inputs[0] if len(model_inputs) == 1 else model_inputs
    return keras.Model(inputs, feature_tensor, name=f"{model.name}_backbone"), head


def _graph_inputs(model):
    """The symbolic inputs of `model`, or a `ValueError` when it has no graph of layers."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            "`model` must be a functional keras.Model (or a built keras.Sequential); "
            f"received {describe(model)}."
        )
    try:
        model_inputs, model_outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        model_inputs = model_outputs = None
    if not model_inputs or not model_outputs:
        raise ValueError(
            f"`model` {model.name!r} ({type(model).__name__}) has no graph of layers to "
            "split at its head. A Sequential model needs a known input: start it with "
            "`keras.Input(shape)` or call `model.build(input_shape)` first. A subclassed "
            "model has no graph: pass its feature extractor and head to "
            "`CollapseClassifier(backbone, num_classes, head=...)` instead."
        )
    return model_inputs


def _find_head(model, head_layer):
    """The `Dense` logits head named `head_layer`, or the last `Dense` layer of `model`."""
    if head_layer is None:
        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        if not dense:
            raise ValueError("`model` has no Dense layer to use as the head.")
        head = dense[-1]
    else:
        head = model.get_layer(head_layer)
    if not isinstance(head, keras.layers.Dense):
        raise ValueError(f"`head_layer` {head.name!r} must be a keras.layers.Dense layer.")
    if head.activation not in (keras.activations.linear, None):
        raise ValueError(
            f"The head {head.name!r} has activation {head.activation.__name__!r}; a "
            "CollapseClassifier head must output logits (activation=None)."
        )
    return head


def _layers_after(model, head):
    """Names of the layers that transform the head's output into the model's output.

    Layers that leave values unchanged (a linear `Activation`, e.g. the float32
    cast of mixed precision; `Dropout`, `Identity`) are allowed.
    """
    outputs = model.outputs
    if any(output is head.output for output in outputs):
        return []
    try:  # the sub-graph from the head's output to the model's output
        tail = keras.Model(head.output, outputs[0] if len(outputs) == 1 else outputs)
    except ValueError:
        return ["layers that combine the head's output with other tensors"]
    changing = []
    for layer in tail.layers:
        passthrough = isinstance(
            layer, (keras.layers.InputLayer, keras.layers.Dropout, keras.layers.Identity)
        ) or (
            isinstance(layer, keras.layers.Activation)
            and layer.activation is keras.activations.linear
        )
        if not passthrough:
            changing.append(layer.name)
    return changing
