"""Evaluating a model as another one is compiled (`evaluate_model`).

The weight-space tools of `keras_nc.paths` (and pruning's sparsity paths)
evaluate models they build, which Keras leaves uncompiled: `evaluate_model`
compiles such a model like a compiled reference model, or with a given loss
and metrics, and returns `model.evaluate`'s results as Python floats.
"""

import keras


def evaluate_model(model, data, *, reference=None, metrics=None, loss=None, batch_size=None):
    """Evaluates `model` on `data` and returns `{name: float}`.

    Runs `model.evaluate(..., return_dict=True, verbose=0)`. A compiled
    `model` is evaluated as compiled (`loss` and `metrics` are then not used).
    An uncompiled one is compiled first:

    - with `loss` and/or `metrics` where given; what is not given is taken
      from `reference`'s compile arguments (when `reference` is given);
    - else like `reference`, a compiled model: its compile config
      (`get_compile_config`, as saved in `.keras` files) is deserialised, so
      the loss and the metrics are new objects with fresh state (the
      measures of arXiv 2409.16767, `keras_nc.metrics`, included).

    Args:
        model: a `keras.Model`, compiled or not.
        data: `(x, y)` (or `(x, y, sample_weight)`) arrays, or a dataset
            that `model.evaluate` accepts (`tf.data.Dataset`, a
            `keras.utils.PyDataset`, a PyTorch `DataLoader`).
        reference: a compiled `keras.Model` whose compile arguments are
            reused for an uncompiled `model`.
        metrics: metrics for an uncompiled `model` (as `keras.Model.compile`).
        loss: loss for an uncompiled `model` (as `keras.Model.compile`).
        batch_size: for array `data` (Keras' default, 32, when None).

    Returns:
        A dict `{name: float}` of the loss and the compiled metrics.

    Raises:
        ValueError: when `model` is not compiled and none of `reference`,
            `loss` or `metrics` says how to evaluate it, or when `reference`
            is not compiled.

    Example:

    >>> import keras, numpy as np
    >>> from keras_nc.paths import evaluate_model
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> x, y = np.zeros((4, 3)), np.array([0, 1, 0, 1])
    >>> result = evaluate_model(
    ...     model, (x, y), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> sorted(result)
    ['accuracy', 'loss']
    >>> result["accuracy"]
    0.5
    """
    if not model.compiled:
        model.compile(**compile_arguments(reference, loss, metrics))
    if isinstance(data, (tuple, list)):
        if len(data) not in (2, 3):
            raise ValueError(
                "`data` must be `(x, y)`, `(x, y, sample_weight)` or a dataset; "
                f"got a sequence of {len(data)} items."
            )
        x, y, *weights = data
        results = model.evaluate(
            x,
            y,
            sample_weight=weights[0] if weights else None,
            batch_size=batch_size,
            return_dict=True,
            verbose=0,
        )
    else:
        results = model.evaluate(data, return_dict=True, verbose=0)
    return {name: float(keras.ops.convert_to_numpy(value)) for name, value in results.items()}


def compile_arguments(reference, loss, metrics):
    """The `compile` arguments of an uncompiled model (see `evaluate_model`).

    Example:

    >>> from keras_nc.paths.evaluation import compile_arguments
    >>> compile_arguments(None, "mse", None)
    {'loss': 'mse'}
    """
    if reference is None and loss is None and metrics is None:
        raise ValueError(
            "The model is not compiled and nothing says how to evaluate it: pass "
            "`reference` (a compiled model whose loss and metrics are reused) or "
            "`loss` and/or `metrics`."
        )
    arguments = {}
    if reference is not None:
        config = reference.get_compile_config() if reference.compiled else None
        if not config:
            raise ValueError(
                "`reference` must be a compiled model (its loss and metrics are reused); "
                f"{reference.name!r} is not compiled."
            )
        arguments = keras.saving.deserialize_keras_object(config)
        # Evaluation never takes a step: no optimizer is rebuilt.
        arguments["optimizer"] = "sgd"
    if loss is not None:
        arguments["loss"] = loss
    if metrics is not None:
        arguments["metrics"] = metrics
    return arguments
