"""The Keras private name that `keras_nc.pruning` relies on: every layer of a model.

`tests/compat/test_pruning.py` fails, naming `keras.__version__`, when a Keras
release changes it.

- `flatten_layers`: every layer of a model, nested ones included, in Keras'
  own order (`Layer._flatten_layers`). The public `Model.layers` lists a
  model's direct layers only and a plain `keras.layers.Layer` that holds
  sublayers (a residual block) has no public list of them, so the kernels
  inside such a block would escape pruning.

The rest of the pruning machinery is public Keras: `keras.Variable.constraint`
(applied by every optimizer after each update, on every backend, and inside
JAX's stateless step) and `Model.make_train_function(force=True)`.
"""


def flatten_layers(model):
    """Every layer of `model` (itself first, then nested layers, depth first).

    Example:

    >>> import keras
    >>> inputs = keras.Input((3,), name="x")
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs), name="m")
    >>> print(*(layer.name for layer in flatten_layers(model)))
    m x d
    """
    return list(model._flatten_layers(include_self=True, recursive=True))
