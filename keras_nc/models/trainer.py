"""`CollapseTrainer`: the Keras training loop of a model whose steps feed collapse terms.

The base of `CollapseClassifier`, as keras-hub's `PipelineModel` is the base of
its `Task`s: it holds what `fit`, `evaluate` and `compile` need, and leaves
construction, the forward pass and the config to the model. A subclass
provides `num_classes`, `feature_dim` (None until built), `sample_scope`, the
current head weights (`_current_head_weights()`), and a `call` that returns
`{"logits", "features", "head_weights"}` while `_collapse_outputs` is set
(during the steps of `fit` and `evaluate`), logits otherwise.

`compile` splits ordinary Keras losses and metrics from collapse ones
(`keras_nc.models.collapse_terms`); `compute_loss` and `compute_metrics` route
the step's features and head weights to the collapse ones.
"""

import contextlib

import keras

from keras_nc import compat, multi_worker
from keras_nc.compat import training as compat_training
from keras_nc.models import collapse_terms
from keras_nc.ops.guards import invalid_values_as_nan

untracked_setattr = compat_training.untracked_setattr


class CollapseTrainer(compat_training.LocalBatchSymbolicBuild, keras.Model):
    """A `keras.Model` whose `fit` and `evaluate` feed collapse losses and metrics.

    Not used on its own: see `keras_nc.models.CollapseClassifier`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Plain (untracked) attributes: Keras' tracker must not collect these.
        untracked_setattr(self, "_collapse_outputs", False)
        untracked_setattr(self, "_collapse_terms", collapse_terms.CollapseTerms())
        untracked_setattr(self, "_compile_arguments", None)

    def compile(self, optimizer="sgd", loss="auto", metrics="auto", **kwargs):
        """Configures the model for training; collapse metrics and losses welcome.

        Args:
            optimizer: as `keras.Model.compile`.
            loss: a loss, or a list whose terms are summed. `"auto"` (default):
                sparse categorical cross-entropy from logits. Ordinary Keras
                losses get `(y, logits)`; `keras_nc.losses.CollapseLoss`
                instances (`CMALoss`, `InformationRegularizer`) get labels,
                features and head weights.
            metrics: a list mixing ordinary metrics (fed logits) and
                `keras_nc.metrics.CollapseMetric` instances (fed labels,
                features, head weights and logits). `"auto"`: accuracy.
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
        # Kept as passed, so that a saved model recompiles identically ("auto"
        # stays "auto" and is resolved by the backend that loads it).
        passed = {
            "loss": loss,
            "metrics": metrics,
            "jit_compile": kwargs.get("jit_compile", "auto"),
        }
        plain_loss, plain_metrics, losses, metrics = collapse_terms.split_compile_arguments(
            loss, metrics
        )
        terms = collapse_terms.CollapseTerms(
            losses, metrics, self.num_classes, read_head_weights=self._current_head_weights
        )
        if terms and passed["jit_compile"] == "auto" and compat_training.tensorflow_on_cpu():
            # XLA's CPU eigh is 30-60x slower than LAPACK's (docs/performance.md):
            # TensorFlow on CPU runs collapse terms in graph mode unless asked.
            kwargs["jit_compile"] = False
        super().compile(optimizer=optimizer, loss=plain_loss, metrics=plain_metrics, **kwargs)
        keras_metrics = list(super().metrics)
        untracked_setattr(self, "_compile_arguments", passed)
        untracked_setattr(self, "_has_plain_loss", plain_loss is not None)
        untracked_setattr(self, "_keras_metrics", keras_metrics)
        # Keras lists the container of the compiled metrics in `model.metrics`.
        plain = [m for m in keras_metrics if isinstance(m, compat.CompileMetrics)]
        untracked_setattr(self, "_plain_metrics", plain[0] if plain else None)
        untracked_setattr(self, "_collapse_terms", terms)
        self._build_collapse_state()

    def _build_collapse_state(self):
        """Sizes the collapse metrics' state `(C, d)` once the model is built.

        At `compile` when the model is built, else when `build` sees the first
        batch (an unbuilt backbone): before any step is traced either way.
        """
        if self.feature_dim is not None:
            self._collapse_terms.build(self.num_classes, self.feature_dim)

    def get_compile_config(self):
        """The arguments of `compile` as passed (serialised), for saving."""
        config = super().get_compile_config()
        if config and self._compile_arguments is not None:
            config.update(keras.saving.serialize_keras_object(self._compile_arguments))
        return config

    def compile_from_config(self, config):
        """Compiles from a saved compile config, with the loading backend's optimizer."""
        config = compat_training.portable_optimizer_config(config)
        self.compile(**keras.saving.deserialize_keras_object(config))
        if hasattr(self, "optimizer") and self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        logits, _, _ = collapse_terms.split_outputs(y_pred)
        total = None
        # Only collapse losses: Keras would refuse an empty ordinary loss.
        if self._has_plain_loss or self.losses or not self._collapse_terms.losses:
            total = super().compute_loss(x, y, logits, sample_weight, training=training)
        return self._collapse_terms.add_losses(
            y, y_pred, sample_weight, total, sample_scope=self.sample_scope
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logits, _, _ = collapse_terms.split_outputs(y_pred)
        if self._plain_metrics is not None:
            self._plain_metrics.update_state(y, logits, sample_weight=sample_weight)
        self._collapse_terms.update_state(
            y, y_pred, sample_weight=sample_weight, sample_scope=self.sample_scope
        )
        with self._collapse_terms.in_step():
            return self.get_metrics_result()

    @property
    def metrics(self):
        # Keras' own metrics as listed at `compile`: torch.compile cannot trace
        # `super().metrics` (a property of the parent) inside a compiled step.
        keras_metrics = getattr(self, "_keras_metrics", None)
        if keras_metrics is None:
            keras_metrics = super().metrics
        terms = getattr(self, "_collapse_terms", None)
        container = terms.container if terms is not None else None
        return keras_metrics + ([container] if container is not None else [])

    @property
    def metrics_names(self):
        """The names of the values `evaluate()` returns, in its order.

        `loss`, the compiled metrics (`accuracy`, ...), the collapse losses'
        terms (`cma_loss`, ...) and the collapse metrics (`mir`, ...):
        `dict(zip(model.metrics_names, model.evaluate(x, y)))` pairs each value
        with its name.
        """
        return collapse_terms.metric_names(self.metrics)

    def _values_in_order(self, logs):
        """`logs` as `evaluate()`'s list: in the order of `metrics_names`, the rest sorted."""
        names = self.metrics_names
        values = [logs[name] for name in names if name in logs]
        values += [logs[key] for key in sorted(logs) if key not in names]
        return values[0] if len(values) == 1 else values

    # ------------------------------------------------------------------ #
    # Keras' loop: steps with collapse outputs, logs in evaluate()'s order
    # ------------------------------------------------------------------ #

    def _with_collapse_outputs(self, step, *args, **kwargs):
        # The flag is read while the step is traced (or run eagerly): y_pred then
        # carries logits, features and head weights out of the differentiated
        # forward pass, which is what JAX's stateless trainer needs for
        # compute_metrics. Bad values (a diverged run's NaN features) give NaN
        # logs, as compiled steps do on every backend, instead of raising out
        # of an eager step.
        previous = self._collapse_outputs
        untracked_setattr(self, "_collapse_outputs", True)
        try:
            with invalid_values_as_nan():
                logs = step(*args, **kwargs)
        finally:
            untracked_setattr(self, "_collapse_outputs", previous)
        return multi_worker.logs_across_workers(self, logs)

    def compute_output_spec(self, inputs, training=None):
        # Symbolic builds (Keras' `_symbolic_build`) see logits only.
        previous = self._collapse_outputs
        untracked_setattr(self, "_collapse_outputs", False)
        try:
            return super().compute_output_spec(inputs, training=training)
        finally:
            untracked_setattr(self, "_collapse_outputs", previous)

    def train_step(self, *args, **kwargs):
        return self._with_collapse_outputs(super().train_step, *args, **kwargs)

    def test_step(self, *args, **kwargs):
        return self._with_collapse_outputs(super().test_step, *args, **kwargs)

    def _blas_threads(self):
        """One BLAS thread while JAX on the CPU computes collapse terms, during `fit`/`evaluate`."""
        if self._collapse_terms:
            return compat_training.one_blas_thread()
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
