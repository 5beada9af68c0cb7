"""`CollapseClassifier`: a classifier whose training feeds features and head to collapse metrics."""

import keras
from keras import ops

from keras_nc.deprecation import warn_renamed
from keras_nc.models import wrapping
from keras_nc.models.trainer import CollapseTrainer
from keras_nc.step import check_sample_scope


@keras.saving.register_keras_serializable(package="keras_nc")
class CollapseClassifier(CollapseTrainer):
    """A backbone and a linear head, trained and evaluated with collapse metrics.

    `call` and `predict` return logits, like any Keras classifier. During
    `fit` and `evaluate` the forward pass also hands the penultimate features
    and the head weights to the metrics and losses that need them (subclasses
    of `keras_nc.metrics.CollapseMetric` and `keras_nc.losses.CollapseLoss`),
    with one forward pass per step; ordinary Keras metrics and losses receive
    the logits as usual.

    Args:
        backbone: a Keras model or layer mapping inputs to features `(n, d)`, or
            to feature maps `(n, ..., d)` (`(n, d, ...)` with `channels_first`)
            which are globally average-pooled; functional, `Sequential` or
            subclassed.
            A backbone without a known input shape (a `Sequential` without
            `Input`, a bare layer) is built, with the head, from the first
            batch, as Keras builds its models.
        num_classes: number of classes `C`.
        head: optional `keras.layers.Dense(num_classes)` to use as the head
            (default: a new one, named `"head"`, with a bias).
        sample_scope: where the per-batch collapse terms (sample-pairing
            `MIR`/`HDR`, `MatrixEntropy`, `InformationRegularizer`) are
            computed when a JAX `keras.distribution` splits the batch over
            devices: `"global"` (default) on the global batch, as on one
            device; `"device"` on each device's rows, averaged over the
            devices (cheaper: one `n/S x n/S` eigendecomposition per device
            instead of an `n x n` one on every device; a different statistic,
            see the Scaling page). TensorFlow's `tf.distribute` replicas
            always compute them on their own rows; without a distribution both
            settings are the same.
        data_format: where the channels of a backbone's feature maps are:
            `"channels_last"` (`(n, ..., d)`) or `"channels_first"`
            (`(n, d, ...)`); the other axes are average-pooled. Default:
            `keras.config.image_data_format()` at construction, as Keras'
            convolution layers resolve it.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Attributes:
        backbone: the feature extractor.
        head: the `Dense` head; `head.kernel` is `(d, C)`, its transpose the
            head weights `W` of the mathematics (`head_weights`).

    Example:

    ```python
    import keras
    from keras_nc.metrics import MIR, HDR, MatrixEntropy
    from keras_nc.losses import CMALoss

    inputs = keras.Input((64,))
    features = keras.layers.Dense(32, activation="relu")(inputs)
    backbone = keras.Model(inputs, features)
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=10)
    model.compile(
        optimizer="sgd",
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), CMALoss(weight=0.5)],
        metrics=["accuracy", MIR(), HDR(), MatrixEntropy()],
    )
    model.fit(x, y, epochs=10)  # logs accuracy, mir, hdr, matrix_entropy
    ```
    """

    def __init__(
        self,
        backbone,
        num_classes,
        head=None,
        sample_scope="global",
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sample_scope = check_sample_scope(sample_scope)
        num_classes = wrapping.check_num_classes(num_classes)
        self.backbone = wrapping.check_backbone(backbone)
        self.data_format = wrapping.check_data_format(data_format)
        self.head = wrapping.check_head(head, num_classes)
        self.num_classes = num_classes
        if type(self).head_rows is not CollapseClassifier.head_rows:
            name = type(self).__name__
            warn_renamed(f"{name}.head_rows() (overridden)", f"{name}.head_weights (a property)")
        inputs = wrapping.known_inputs(backbone)
        if inputs:
            self.build(tuple(inputs[0].shape) if len(inputs) == 1 else None)

    # ------------------------------------------------------------------ #
    # Forward pass
    # ------------------------------------------------------------------ #

    def build(self, input_shape=None):
        """Builds the backbone (if needed), the head and the collapse metrics' state.

        A backbone with known inputs is built at construction; an unbuilt one
        (a `Sequential` without `Input`, a bare layer) is built here from the
        first batch's shape, as Keras builds its models: by `fit`, `evaluate`,
        `predict`, a first call or an explicit `model.build(input_shape)`.
        """
        if self.built:
            return
        if input_shape is not None and not getattr(self.backbone, "built", True):
            # A symbolic call builds any backbone, subclassed models without a
            # `build` method included (their layers are built as `call` runs).
            self.backbone(keras.KerasTensor(tuple(input_shape)))
        if not self.head.built:
            self.head.build(self._feature_shape(input_shape))
        elif input_shape is not None or wrapping.known_outputs(self.backbone):
            width = self._feature_shape(input_shape)[1]
            expected = int(self.head.kernel.shape[0])
            if width is not None and int(width) != expected:
                raise ValueError(
                    f"The backbone's features have width {width} (pooled over every axis but "
                    f"the channels, data_format={self.data_format!r}), but the head "
                    f"{self.head.name!r} expects inputs of width {expected}. Pick the features "
                    "layer whose output feeds the head (`features_layer=`), or a head of "
                    "matching input width."
                )
        self._build_collapse_state()
        self.built = True

    def _feature_shape(self, input_shape):
        outputs = wrapping.known_outputs(self.backbone)
        if outputs:
            shape = tuple(outputs[0].shape)
        elif input_shape is None:
            raise ValueError(
                f"Cannot infer the feature width of backbone {self.backbone.name!r} without "
                "an input shape: give it a `keras.Input`, or build the model with "
                "`model.build(input_shape)`."
            )
        else:
            shape = wrapping.output_shape(self.backbone, input_shape)
        return (shape[0], shape[self._channel_axis(len(shape))])

    def _channel_axis(self, rank):
        """The axis of the features' channels in a backbone output of `rank` dimensions."""
        if rank > 2 and self.data_format == "channels_first":
            return 1
        return rank - 1

    @property
    def feature_dim(self):
        """Width `d` of the (pooled) features; `None` until the model is built."""
        if not self.head.built:
            return None
        return int(self.head.kernel.shape[0])

    def extract_features(self, inputs, training=False):
        """Pooled backbone features `(n, d)` of a batch of inputs."""
        return self.pool_features(self.backbone(inputs, training=training))

    def pool_features(self, features):
        """Feature maps averaged over every axis but the channels (`data_format`): `(n, d)`.

        `(n, d)` features are returned as they are; `(n, ..., d)` maps (`(n, d, ...)`
        with `channels_first`) are globally average-pooled.
        """
        rank = len(features.shape)
        if rank > 2:
            channels = self._channel_axis(rank)
            features = ops.mean(features, axis=tuple(a for a in range(1, rank) if a != channels))
        return features

    @property
    def head_weights(self):
        """The head weights `W` `(C, d)` (a tensor): the transpose of `head.kernel`.

        What the collapse metrics and losses receive as `head_weights`, and
        what the class-statistics metrics (`NC1`, `MIR(pairing="class")`, ...)
        read at the end of an epoch. A subclass whose weights come from
        elsewhere overrides this property together with `classify`.
        """
        return ops.transpose(self.head.kernel)

    def head_rows(self):
        """Deprecated since keras-nc 0.2.0: the property `head_weights`."""
        warn_renamed("CollapseClassifier.head_rows()", "CollapseClassifier.head_weights")
        return self.head_weights

    def classify(self, features):
        """Logits `(n, C)` and head weights `(C, d)` of pooled features `(n, d)`.

        The one hook for a subclass with another head (see
        `recipes/clip/classifier.py`, whose rows are CLIP text embeddings): `call`
        returns these logits, and hands the features and these weights to the
        collapse metrics and losses during `fit` and `evaluate`; a subclass
        overrides this method and never sees how they are passed. Default:
        `(self.head(features), self.head_weights)`.
        """
        return self.head(features), self._current_head_weights()

    def _current_head_weights(self):
        # A subclass written for keras-nc 0.1 overrides `head_rows()` (warned at
        # construction); its rows are the head weights until it moves to the property.
        if type(self).head_rows is not CollapseClassifier.head_rows:
            return self.head_rows()
        return self.head_weights

    def call(self, inputs, training=None):
        features = self.extract_features(inputs, training=training)
        logits, head_weights = self.classify(features)
        if self._collapse_outputs:
            return {"logits": logits, "features": features, "head_weights": head_weights}
        return logits

    # ------------------------------------------------------------------ #
    # Construction from a functional classifier, and serialisation
    # ------------------------------------------------------------------ #

    @classmethod
    def from_model(cls, model, features_layer=None, head_layer=None, **kwargs):
        """Wraps an existing functional classifier, splitting it at its head.

        Args:
            model: a functional `keras.Model` (or a `Sequential` with a known
                input) ending in a `Dense` layer that outputs logits: no
                softmax, neither in the `Dense` nor in a layer after it
                (refused with an error saying how to rebuild the model).
            features_layer: optional name of the layer whose output are the
                features (default: the input of the head).
            head_layer: optional name of the `Dense` head (default: the last
                `Dense` layer of the model).
            **kwargs: passed to the constructor (e.g. `name`).

        Returns:
            A `CollapseClassifier` sharing the layers (and weights) of `model`.

        Example:

        ```python
        clf = CollapseClassifier.from_model(keras_model)
        clf.compile(metrics=["accuracy", MIR()])
        ```
        """
        backbone, head = wrapping.split_at_head(model, features_layer, head_layer)
        return cls(backbone, head.units, head=head, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "head": keras.saving.serialize_keras_object(self.head),
            "sample_scope": self.sample_scope,
            "data_format": self.data_format,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        config["head"] = keras.saving.deserialize_keras_object(config["head"])
        return cls(**config)
