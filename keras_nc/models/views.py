"""`collapse_view`: any classifier a user trains, seen as a `CollapseClassifier`."""

from keras_nc.models.collapse_classifier import CollapseClassifier


def collapse_view(model, features_layer=None, head_layer=None, caller="This callback"):
    """`model` itself when a `CollapseClassifier`, else `CollapseClassifier.from_model(model)`.

    The view through which callbacks (`CollapseMonitor`, `LayerwiseCollapse`)
    read features and head weights of any classifier a user trains.

    Args:
        model: a `CollapseClassifier`, or a functional `keras.Model` ending in
            a `Dense` logits head.
        features_layer: optional, plain models: the layer whose output are the
            features (see `CollapseClassifier.from_model`).
        head_layer: optional, plain models: the `Dense` head's name.
        caller: who asks, for the error message.

    Returns:
        A `CollapseClassifier` sharing the model's layers and weights.

    Example:

    ```python
    view = collapse_view(keras_model)  # a functional classifier with a Dense logits head
    features = view.extract_features(x)
    ```
    """
    if isinstance(model, CollapseClassifier):
        if features_layer is not None or head_layer is not None:
            raise ValueError(
                f"{caller}: `features_layer` and `head_layer` are for a plain functional "
                "model; a CollapseClassifier's features and head are its own."
            )
        return model
    try:
        return CollapseClassifier.from_model(
            model, features_layer=features_layer, head_layer=head_layer
        )
    except ValueError as error:
        raise ValueError(
            f"{caller} needs a keras_nc.models.CollapseClassifier, or a functional "
            "keras.Model with a Dense logits head (split with CollapseClassifier.from_model, "
            f"`features_layer` and `head_layer` naming its layers); {type(model).__name__} "
            f"{getattr(model, 'name', '')!r} cannot be used: {error}"
        ) from None
