"""`CollapseClassifier`: a classifier whose training feeds features and head to collapse metrics."""

import contextlib
import inspect
import operator
import re
import warnings

import keras
from keras import ops

from keras_nc import compat
from keras_nc.losses import CollapseLoss
from keras_nc.metrics import ClassStatistics, CollapseMetric
from keras_nc.ops.guards import invalid_values_as_nan
from keras_nc.step import CollapseStep, check_sample_scope


@keras.saving.register_keras_serializable(package="keras_nc")
class CollapseClassifier(keras.Model):
    """A backbone and a linear head, trained and evaluated with collapse metrics.

    `call` and `predict` return logits, like any Keras classifier. During
    `fit` and `evaluate` the forward pass also hands the penultimate features
    and the head rows to the metrics and losses that need them (subclasses of
    `keras_nc.metrics.CollapseMetric` and `keras_nc.losses.CollapseLoss`), with
    one forward pass per step; ordinary Keras metrics and losses receive the
    logits as usual.

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
            head rows `W` of the mathematics (`head_rows()`).

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
        num_classes = _check_num_classes(num_classes)
        if not isinstance(backbone, keras.layers.Layer):
            raise ValueError(
                "`backbone` must be a Keras model or layer mapping inputs to features (a "
                "keras.Model, keras.Sequential or keras.layers.Layer); received "
                f"{_describe(backbone)}. Wrap a function in a layer of your own (a "
                "keras.layers.Layer whose `call` applies it), which Keras can save."
            )
        self.data_format = _check_data_format(data_format)
        if head is None:
            head = keras.layers.Dense(num_classes, name="head")
        if not isinstance(head, keras.layers.Dense):
            raise ValueError(
                f"`head` must be a keras.layers.Dense with num_classes={num_classes} units; "
                f"received {_describe(head)}."
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
        self.backbone = backbone
        self.num_classes = num_classes
        self.head = head
        # Plain (untracked) attributes: Keras' tracker must not collect these.
        object.__setattr__(self, "_collapse_outputs", False)
        object.__setattr__(self, "_collapse_metrics", [])
        object.__setattr__(self, "_collapse_losses", [])
        object.__setattr__(self, "_class_statistics", None)
        object.__setattr__(self, "_collapse_container", None)
        object.__setattr__(self, "_loss_term_trackers", [])
        inputs = _known_inputs(backbone)
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
        elif input_shape is not None or _known_outputs(self.backbone):
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
        outputs = _known_outputs(self.backbone)
        if outputs:
            shape = tuple(outputs[0].shape)
        elif input_shape is None:
            raise ValueError(
                f"Cannot infer the feature width of backbone {self.backbone.name!r} without "
                "an input shape: give it a `keras.Input`, or build the model with "
                "`model.build(input_shape)`."
            )
        else:
            shape = _output_shape(self.backbone, input_shape)
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

    def head_rows(self):
        """The head rows `W` `(C, d)` (a tensor): the transpose of `head.kernel`.

        What the collapse metrics and losses receive as `head_weights`, and
        what the class-statistics metrics (`NC1`, `MIR(pairing="class")`, ...)
        read at the end of an epoch. A subclass whose rows come from
        elsewhere overrides it together with `classify`.
        """
        return ops.transpose(self.head.kernel)

    def classify(self, features):
        """Logits `(n, C)` and head rows `(C, d)` of pooled features `(n, d)`.

        The one hook for a subclass with another head (see
        `recipes/clip/model.py`, whose rows are CLIP text embeddings): `call`
        returns these logits, and hands the features and these rows to the
        collapse metrics and losses during `fit` and `evaluate`; a subclass
        overrides this method and never sees how they are passed. Default:
        `(self.head(features), self.head_rows())`.
        """
        return self.head(features), self.head_rows()

    def call(self, inputs, training=None):
        features = self.extract_features(inputs, training=training)
        logits, head_rows = self.classify(features)
        if self._collapse_outputs:
            return {"logits": logits, "features": features, "head_weights": head_rows}
        return logits

    def compute_output_spec(self, inputs, training=None):
        # Symbolic builds (Keras' `_symbolic_build`) see logits only.
        previous = self._collapse_outputs
        object.__setattr__(self, "_collapse_outputs", False)
        try:
            return super().compute_output_spec(inputs, training=training)
        finally:
            object.__setattr__(self, "_collapse_outputs", previous)

    def _with_collapse_outputs(self, step, *args, **kwargs):
        # The flag is read while the step is traced (or run eagerly): y_pred then
        # carries logits, features and head rows out of the differentiated forward
        # pass, which is what JAX's stateless trainer needs for compute_metrics.
        # Bad values (a diverged run's NaN features) give NaN logs, as compiled
        # steps do on every backend, instead of raising out of an eager step.
        previous = self._collapse_outputs
        object.__setattr__(self, "_collapse_outputs", True)
        try:
            with invalid_values_as_nan():
                return step(*args, **kwargs)
        finally:
            object.__setattr__(self, "_collapse_outputs", previous)

    def train_step(self, *args, **kwargs):
        logs = self._with_collapse_outputs(super().train_step, *args, **kwargs)
        return self._logs_across_workers(logs)

    # ------------------------------------------------------------------ #
    # TensorFlow: MultiWorkerMirroredStrategy (replicas in several processes)
    # ------------------------------------------------------------------ #

    def _spans_workers(self):
        """True under a `tf.distribute` strategy whose replicas span several workers."""
        if keras.backend.backend() != "tensorflow":
            return False
        import tensorflow as tf

        strategy = self.distribute_strategy
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return False
        return strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)

    def _logs_across_workers(self, logs):
        # Keras 3.15 averages a step's logs over replicas with
        # `strategy.reduce("MEAN", value, axis=0)`; across workers that reduction
        # needs an axis to reduce (keras-team/keras#20585): give each scalar log
        # one of length 1. Elsewhere the logs pass unchanged.
        if not self._spans_workers():
            return logs
        return {key: ops.reshape(value, (1,)) for key, value in logs.items()}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 (TensorFlow) builds a distributed model from the first batch,
        # reduced over replicas with one `strategy.reduce` of the whole `(x, y)`
        # structure, which MultiWorkerMirroredStrategy refuses. Only the shapes
        # are used: across workers, take a local replica's batch instead.
        if iterator is not None and data_batch is None and self._spans_workers():
            local = self.distribute_strategy.experimental_local_results
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(lambda v: local(v)[0], next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _blas_threads(self):
        """One BLAS thread while JAX steps on the CPU compute collapse terms.

        JAX's CPU `eigh` calls LAPACK from scipy's OpenBLAS, whose own thread
        pool then competes with XLA's for the cores: measured on 2 cores, the
        collapse terms cost 1.27x the plain step with it and about 1.0x with one
        thread (docs/performance.md). The limit holds during `fit`/`evaluate`
        only and is lifted afterwards.
        """
        if (self._collapse_metrics or self._collapse_losses) and _jax_on_cpu():
            try:
                import threadpoolctl  # the `jax` extra installs it
            except ImportError:
                return contextlib.nullcontext()
            return threadpoolctl.threadpool_limits(1, user_api="blas")
        return contextlib.nullcontext()

    def fit(self, *args, **kwargs):
        with self._blas_threads(), invalid_values_as_nan():
            return super().fit(*args, **kwargs)

    def evaluate(self, *args, return_dict=False, **kwargs):
        with self._blas_threads(), invalid_values_as_nan():
            logs = super().evaluate(*args, return_dict=True, **kwargs)
        return logs if return_dict else self._values_in_order(logs)

    def train_on_batch(self, *args, return_dict=False, **kwargs):
        logs = super().train_on_batch(*args, return_dict=True, **kwargs)
        return logs if return_dict else self._values_in_order(logs)

    def test_on_batch(self, *args, return_dict=False, **kwargs):
        logs = super().test_on_batch(*args, return_dict=True, **kwargs)
        return logs if return_dict else self._values_in_order(logs)

    def test_step(self, *args, **kwargs):
        logs = self._with_collapse_outputs(super().test_step, *args, **kwargs)
        return self._logs_across_workers(logs)

    # ------------------------------------------------------------------ #
    # Compilation: split collapse metrics/losses from ordinary ones
    # ------------------------------------------------------------------ #

    def compile(self, optimizer="sgd", loss="auto", metrics="auto", **kwargs):
        """Configures the model for training; collapse metrics and losses welcome.

        Args:
            optimizer: as `keras.Model.compile`.
            loss: a loss, or a list whose terms are summed. `"auto"` (default):
                sparse categorical cross-entropy from logits. Ordinary Keras
                losses get `(y, logits)`; `keras_nc.losses.CollapseLoss`
                instances (`CMALoss`, `InformationRegularizer`) get labels,
                features and head rows.
            metrics: a list mixing ordinary metrics (fed logits) and
                `keras_nc.metrics.CollapseMetric` instances (fed labels,
                features, head rows and logits). `"auto"`: accuracy.
            **kwargs: passed to `keras.Model.compile` (`jit_compile`, ...).
                With collapse terms on TensorFlow without a GPU,
                `jit_compile="auto"` means `False`: XLA's CPU `eigh` is 30 to
                60 times slower than LAPACK's (see the Performance page). Pass
                `jit_compile=True` to force XLA.

        The compile config (saved in `.keras` files) keeps the arguments as
        passed, `jit_compile` included: a model compiled with
        `jit_compile="auto"` (the default) resolves it again on the backend
        that loads it (XLA on JAX, eager on PyTorch, graph mode on TensorFlow
        on CPU with collapse terms), while an explicit `True` or `False` is
        kept on every backend (`True` on PyTorch means `torch.compile`).
        """
        user_loss, user_metrics = loss, metrics
        user_jit_compile = kwargs.get("jit_compile", "auto")
        if isinstance(loss, str) and loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if isinstance(metrics, str) and metrics == "auto":
            # Keras resolves "accuracy" from the labels' shape at the first batch:
            # sparse labels (n,) or one-hot labels (n, C) alike.
            metrics = ["accuracy"]
        losses = list(loss) if isinstance(loss, (list, tuple)) else [loss]
        collapse_losses = [item for item in losses if isinstance(item, CollapseLoss)]
        plain_losses = [_logits_loss(item) for item in losses if not isinstance(item, CollapseLoss)]
        metrics = list(metrics or [])
        _check_unique_names(metrics)
        collapse_metrics = [item for item in metrics if isinstance(item, CollapseMetric)]
        plain_metrics = [item for item in metrics if not isinstance(item, CollapseMetric)]

        collapse_terms = collapse_losses or collapse_metrics
        if collapse_terms and kwargs.get("jit_compile", "auto") == "auto" and _tensorflow_on_cpu():
            # XLA's CPU eigh is 30-60x slower than LAPACK's (docs/performance.md):
            # TensorFlow on CPU runs collapse terms in graph mode unless asked.
            kwargs["jit_compile"] = False
        plain_loss = _SumOfLosses(plain_losses) if len(plain_losses) > 1 else None
        if len(plain_losses) == 1:
            plain_loss = plain_losses[0]
        super().compile(optimizer=optimizer, loss=plain_loss, metrics=plain_metrics, **kwargs)
        # Keep what the user passed, so that a saved model recompiles identically
        # ("auto" stays "auto" and is resolved by the backend that loads it).
        self._compile_config.config.update(
            loss=user_loss, metrics=user_metrics, jit_compile=user_jit_compile
        )

        self._install_collapse_terms(collapse_losses, collapse_metrics)

    def _install_collapse_terms(self, collapse_losses, collapse_metrics):
        """Shares one `ClassStatistics` among its readers and lists the terms in one container."""
        # One accumulator of class statistics for all the metrics that read them:
        # a step adds its batch once, and the epoch measures are computed once.
        readers = [m for m in collapse_metrics if getattr(m, "uses_class_statistics", False)]
        statistics = None
        if readers:
            statistics = ClassStatistics(
                self.num_classes,
                second_moment=any(m.needs_second_moment for m in readers),
                name="class_statistics",
            )
            statistics.read_head_from(self.head_rows)
            for metric in readers:
                metric.share_statistics(statistics)
        # The collapse losses' terms are logged as `<loss name>_loss`, as Keras
        # logs the terms of a multi-output loss.
        loss_trackers = [keras.metrics.Mean(name=f"{item.name}_loss") for item in collapse_losses]
        for tracker in loss_trackers:
            compat.set_metric_direction(tracker, "down")
        container = None
        if collapse_metrics or loss_trackers:
            container = CollapseMetrics(
                ([statistics] if statistics is not None else []) + loss_trackers + collapse_metrics
            )
        object.__setattr__(self, "_class_statistics", statistics)
        object.__setattr__(self, "_collapse_metrics", collapse_metrics)
        object.__setattr__(self, "_collapse_losses", collapse_losses)
        object.__setattr__(self, "_loss_term_trackers", loss_trackers)
        object.__setattr__(self, "_collapse_container", container)
        object.__setattr__(self, "_keras_metrics", list(super().metrics))
        self._build_collapse_state()

    def _build_collapse_state(self):
        """Sizes the collapse metrics' state `(C, d)` once the head is built.

        At `compile` when the model is built, else when `build` sees the first
        batch (an unbuilt backbone): before any step is traced either way.
        """
        if self.head.built:
            for metric in self._collapse_metrics:
                metric.build_for(self.num_classes, self.feature_dim)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(_portable_optimizer(config))
        self.compile(**config)
        if hasattr(self, "optimizer") and self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        # Keras' own metrics as listed at `compile`: torch.compile cannot trace
        # `super().metrics` (a property of the parent) inside a compiled step.
        keras_metrics = getattr(self, "_keras_metrics", None)
        if keras_metrics is None:
            keras_metrics = super().metrics
        container = getattr(self, "_collapse_container", None)
        return keras_metrics + ([container] if container is not None else [])

    @property
    def metrics_names(self):
        """The names of the values `evaluate()` returns, in its order.

        `loss`, the compiled metrics (`accuracy`, ...), the collapse losses'
        terms (`cma_loss`, ...) and the collapse metrics (`mir`, ...):
        `dict(zip(model.metrics_names, model.evaluate(x, y)))` pairs each value
        with its name.
        """
        names = []
        for metric in self.metrics:
            if isinstance(metric, (compat.CompileMetrics, compat.MetricsList)):
                names += [m.name for m in metric.metrics if not isinstance(m, ClassStatistics)]
            else:
                names.append(metric.name)
        return names

    def _values_in_order(self, logs):
        """`logs` as `evaluate()`'s list: in the order of `metrics_names`, the rest sorted."""
        names = self.metrics_names
        values = [logs[name] for name in names if name in logs]
        values += [logs[key] for key in sorted(logs) if key not in names]
        return values[0] if len(values) == 1 else values

    def _split(self, y_pred):
        if isinstance(y_pred, dict):
            return y_pred["logits"], y_pred["features"], y_pred["head_weights"]
        return y_pred, None, None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        logits, features, head_weights = self._split(y_pred)
        if self._compile_loss is None and self._collapse_losses:
            # Only collapse losses: Keras would refuse an empty plain loss.
            extra = [self._aggregate_additional_loss(loss) for loss in self.losses]
            total = ops.sum(extra) if extra else None
        else:
            total = super().compute_loss(x, y, logits, sample_weight, training=training)
        if self._collapse_losses and features is not None:
            step = CollapseStep(
                y, features, head_weights, sample_weight, sample_scope=self.sample_scope
            )
            terms = [
                loss(
                    y,
                    features=features,
                    head_weights=head_weights,
                    sample_weight=sample_weight,
                    step=step,
                )
                for loss in self._collapse_losses
            ]
            # Hand the step's values to compute_metrics through y_pred: the only
            # path out of JAX's differentiated function (its aux output).
            y_pred["collapse_cache"] = step.cache
            y_pred["collapse_loss_terms"] = [ops.cast(term, "float32") for term in terms]
            extra = terms[0]
            for term in terms[1:]:
                extra = extra + term
            total = extra if total is None else total + ops.cast(extra, total.dtype)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logits, features, head_weights = self._split(y_pred)
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, logits, sample_weight=sample_weight)
        terms = y_pred.get("collapse_loss_terms") if isinstance(y_pred, dict) else None
        if terms is not None:
            rows = ops.cast(ops.shape(logits)[0], "float32")
            for tracker, term in zip(self._loss_term_trackers, terms, strict=True):
                tracker.update_state(term, sample_weight=rows)
        if features is not None and self._collapse_metrics:
            # Shared by the metrics, with what the losses computed this step.
            cache = y_pred.get("collapse_cache")
            step = CollapseStep(
                y,
                features,
                head_weights,
                sample_weight,
                cache=cache,
                sample_scope=self.sample_scope,
            )
            for metric in self._collapse_metrics:
                metric.update_state(
                    y,
                    features=features,
                    head_weights=head_weights,
                    logits=logits,
                    sample_weight=sample_weight,
                    step=step,
                )
        statistics = getattr(self, "_class_statistics", None)
        if statistics is None:
            return self.get_metrics_result()
        # In the step, the epoch measures report their last value; Keras reads
        # the results again outside the step at the end of the epoch (and of
        # `evaluate`), where they are computed once from the whole epoch.
        with statistics.deferred():
            return self.get_metrics_result()

    # ------------------------------------------------------------------ #
    # Construction helpers and serialisation
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
        if not isinstance(model, keras.Model):
            raise ValueError(
                "`model` must be a functional keras.Model (or a built keras.Sequential); "
                f"received {_describe(model)}."
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
        backbone = keras.Model(inputs, feature_tensor, name=f"{model.name}_backbone")
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


def collapse_view(model, features_layer=None, head_layer=None, caller="This callback"):
    """`model` itself when a `CollapseClassifier`, else `CollapseClassifier.from_model(model)`.

    The view through which callbacks (`CollapseMonitor`, `LayerwiseCollapse`)
    read features and head rows of any classifier a user trains.

    Args:
        model: a `CollapseClassifier`, or a functional `keras.Model` ending in
            a `Dense` logits head.
        features_layer: optional, plain models: the layer whose output are the
            features (see `CollapseClassifier.from_model`).
        head_layer: optional, plain models: the `Dense` head's name.
        caller: who asks, for the error message.

    Returns:
        A `CollapseClassifier` sharing the model's layers and weights.
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


def _describe(value):
    """How an error message names a value: a layer by class, name and units."""
    if isinstance(value, keras.layers.Dense):
        return f"Dense {value.name!r} with {value.units} units"
    if isinstance(value, keras.layers.Layer):
        return f"{type(value).__name__} {value.name!r}"
    if callable(value):
        return f"the function {getattr(value, '__name__', repr(value))!r}"
    return repr(value)


def _check_num_classes(num_classes):
    """`num_classes` as an int >= 2 (any integer type: Python, NumPy), else a `ValueError`."""
    try:
        value = None if isinstance(num_classes, bool) else operator.index(num_classes)
    except TypeError:
        value = None
    if value is None or value < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2; received {num_classes!r}.")
    return int(value)


def _check_data_format(data_format):
    """`data_format`, or Keras' global image data format when None."""
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            '`data_format` must be "channels_last", "channels_first" or None; received '
            f"{data_format!r}."
        )
    return data_format


def _known_inputs(layer):
    """The symbolic inputs of a functional model (or built Sequential), else None."""
    try:
        return getattr(layer, "inputs", None)
    except (AttributeError, ValueError):  # a Sequential without Input raises
        return None


def _known_outputs(layer):
    """The symbolic outputs of a functional model (or built Sequential), else None."""
    try:
        return getattr(layer, "outputs", None)
    except (AttributeError, ValueError):
        return None


def _output_shape(layer, input_shape):
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


def _snake_case(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# Keras' loss classes that read logits with `from_logits=True`, by function name.
_LOGITS_LOSSES = {
    _snake_case(name): getattr(keras.losses, name)
    for name in dir(keras.losses)
    if name[:1].isupper()
    and isinstance(getattr(keras.losses, name), type)
    and "from_logits" in inspect.signature(getattr(keras.losses, name).__init__).parameters
}


def _logits_loss(loss):
    """A loss of the classifier's logits: strings resolved with `from_logits=True`.

    `CollapseClassifier` outputs logits. A string names a Keras loss whose
    default reads probabilities; it is resolved, as `keras.losses.get` would,
    with `from_logits=True`, or refused when that loss has no logits form. A loss
    object is used as given, with a warning when it says `from_logits=False`.
    """
    if loss is None:
        raise ValueError("`loss` entries must be losses; received None.")
    if isinstance(loss, str):
        resolved = keras.losses.get(loss)
        function = getattr(resolved, "fn", resolved)
        loss_class = _LOGITS_LOSSES.get(getattr(function, "__name__", ""))
        if loss_class is None:
            raise ValueError(
                f"`loss={loss!r}` reads probabilities or values, but a CollapseClassifier "
                "outputs logits. Use a cross-entropy (`'sparse_categorical_crossentropy'`, "
                "`'categorical_crossentropy'`, ... are resolved with `from_logits=True`), or "
                "pass a loss object to apply it to the logits on purpose."
            )
        return loss_class(from_logits=True)
    config = loss.get_config() if isinstance(loss, keras.losses.Loss) else {}
    if config.get("from_logits") is False:
        warnings.warn(
            f"The loss {loss.name!r} has `from_logits=False`, but a CollapseClassifier "
            "outputs logits: pass `from_logits=True` (the loss reads the logits as "
            "probabilities otherwise).",
            stacklevel=3,
        )
    return loss


class CollapseMetrics(compat.MetricsList):
    """The collapse metrics and loss-term trackers of a `CollapseClassifier`, as one container.

    Listed in `model.metrics` like Keras' own compiled metrics, so that Keras'
    callbacks read each metric's direction (`EarlyStopping(monitor="val_mir")`
    in `mode="auto"`) and `model.metrics_names` lists their names. Updated by
    the model's `compute_metrics`, never by Keras.
    """

    def __init__(self, metrics, name="collapse_metrics"):
        super().__init__(metrics, name=name)
        for metric in metrics:
            direction = getattr(metric, "direction", None)
            if direction is not None:
                compat.set_metric_direction(metric, direction)

    def update_state(self, *args, **kwargs):
        raise NotImplementedError("CollapseClassifier.compute_metrics updates these metrics.")

    def result(self):
        results = {}
        for metric in self.metrics:
            value = metric.result()
            if isinstance(value, dict):
                results.update(value)
            else:
                results[metric.name] = value
        return results


def _check_unique_names(metrics):
    """Two metrics with one name would log one value: refuse them with a clear error."""
    names = [item if isinstance(item, str) else getattr(item, "name", None) for item in metrics]
    seen, repeated = set(), []
    for name in names:
        if name is not None and name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise ValueError(
            f"`metrics` holds several metrics named {repeated}: only one value per name "
            "would be logged. Give them distinct names, e.g. "
            '`MIR(pairing="class", name="mir_class")`.'
        )


def _portable_optimizer(config):
    """A compile config whose optimizer is named by its public Keras class.

    On PyTorch, Keras' optimizers are backend subclasses saved under their
    module (`keras.src.backend.torch.optimizers.torch_sgd`): loaded as such on
    another backend they would run torch code on its tensors. Naming them by
    `keras.optimizers.<class>` gives the loading backend's own optimizer.
    """
    optimizer = config.get("optimizer")
    module = optimizer.get("module") if isinstance(optimizer, dict) else None
    if isinstance(module, str) and module.startswith("keras.src.backend."):
        config = {**config, "optimizer": {**optimizer, "module": "keras.optimizers"}}
    return config


def _jax_on_cpu():
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def _tensorflow_on_cpu():
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU")


@keras.saving.register_keras_serializable(package="keras_nc")
class _SumOfLosses(keras.losses.Loss):
    """Sum of ordinary Keras losses on the same `(y, logits)`.

    Sums the per-sample values of the terms, so sample weights and the
    reduction apply once, to the sum.
    """

    def __init__(self, losses, name="sum_of_losses", **kwargs):
        super().__init__(name=name, **kwargs)
        self.losses = [keras.losses.get(item) for item in losses]

    def call(self, y_true, y_pred):
        total = None
        for loss in self.losses:
            per_sample = loss.call if isinstance(loss, keras.losses.Loss) else loss
            value = per_sample(y_true, y_pred)
            total = value if total is None else total + value
        return total

    def get_config(self):
        return {
            "name": self.name,
            "losses": [keras.saving.serialize_keras_object(item) for item in self.losses],
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["losses"] = [keras.saving.deserialize_keras_object(c) for c in config["losses"]]
        return cls(**config)
