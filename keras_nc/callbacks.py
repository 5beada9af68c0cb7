"""Callbacks: `CollapseMonitor` (Neural Collapse measures of a dataset at epoch ends),
`LayerwiseCollapse` (the same through depth, from `keras_nc.layerwise`) and
`TerminateOnNonFiniteWeights`.

`CollapseMonitor` only computes: it adds its values to the epoch's `logs`, and
Keras' own callbacks placed after it write them (`keras.callbacks.CSVLogger`,
`keras.callbacks.TensorBoard`, `History`, the progress bar). Figures are in
`keras_nc.plotting`.
"""

import collections.abc
import warnings

import keras
import numpy as np

from keras_nc import ops as nc_ops
from keras_nc.layerwise import (
    LayerwiseCollapse,  # noqa: F401 (exported here)
    block_outputs,  # noqa: F401 (exported here)
    log_prefix,
)
from keras_nc.models import collapse_view

# The measures of `collapse_report`, in the order of `CollapseMonitor.history`'s rows.
MEASURES = (
    "mir",
    "hdr",
    "feature_entropy",
    "head_entropy",
    "nc1",
    "cdnv",
    "etf_error",
    "equinorm",
    "self_duality",
    "ncc_agreement",
)

# Names that lived here before the figures moved to `keras_nc.plotting` (0.1.0).
_MOVED_TO_PLOTTING = ("collapse_panels", "draw_panel", "plot_collapse_history")

# Arguments of `CollapseMonitor` removed in favour of Keras' own writers.
_REMOVED_ARGUMENTS = ("output_dir", "tensorboard", "plot")


def __getattr__(name):
    if name in _MOVED_TO_PLOTTING:
        warnings.warn(
            f"`keras_nc.callbacks.{name}` moved to `keras_nc.plotting.{name}`.",
            DeprecationWarning,
            stacklevel=2,
        )
        from keras_nc import plotting

        return getattr(plotting, name)
    raise AttributeError(f"module 'keras_nc.callbacks' has no attribute {name!r}")


def collapse_report(features, labels, head_weights, logits, num_classes, center=True):
    """All the measures of `CollapseMonitor` on one set of features (exact, two-pass).

    Args:
        features: `(n, d)` features.
        labels: `(n,)` integer labels.
        head_weights: `(C, d)` head rows.
        logits: `(n, C)` classifier outputs (for NC4).
        num_classes: `C`.
        center: centre features (global mean) for the entropies and pairings.

    Returns:
        A dict of Python floats keyed by `MEASURES`: class-pairing `mir`/`hdr`,
        `feature_entropy` (`H` of the centred features' Gram, `min(n, d)` side),
        `head_entropy`, and NC1, CDNV, ETF error, equinorm, self-duality and the
        exact NCC agreement (NC4, with the final class means).

    Example:

    ```python
    report = collapse_report(z, y, model.head.kernel.numpy().T, logits, 10)
    report["mir"], report["nc1"]
    ```
    """
    # Statistics of features * 2**-e (no overflow; the measures are scale-invariant).
    stats = nc_ops.class_statistics(features, labels, num_classes, exponent="auto")
    mir, hdr = nc_ops.class_pairing_ratios(stats["counts"], stats["sums"], head_weights, center)
    measures = nc_ops.neural_collapse_measures(stats, head_weights)
    means, _, present = nc_ops.class_means(stats["counts"], stats["sums"])
    values = {
        "mir": mir,
        "hdr": hdr,
        "feature_entropy": nc_ops.feature_entropy(features, center=center),
        "head_entropy": nc_ops.matrix_entropy(nc_ops.gram(head_weights)),
        **measures,
        "ncc_agreement": nc_ops.ncc_agreement(
            features, logits, means, present, means_exponent=stats["exponent"]
        ),
    }
    return {key: float(keras.ops.convert_to_numpy(values[key])) for key in MEASURES}


class CollapseMonitor(keras.callbacks.Callback):
    """Adds the Neural Collapse measures of a fixed dataset to the epoch logs.

    At the end of an epoch it computes the features, logits and head rows of
    the data (with `model.extract_features`, `model.classify` and
    `model.head_rows`), then, exactly and in two
    passes, the class-pairing MIR and HDR, the matrix entropies of features
    and head, NC1, CDNV, NC2 (ETF error, equinorm), NC3 (self-duality) and the
    exact NC4 (`collapse_report`). It adds them to the epoch's `logs` as
    `<prefix>_<measure>` (default `collapse_mir`, ..., `collapse_ncc_agreement`)
    and appends a row to `history`. It writes no file: the Keras callbacks
    placed after it in `callbacks` receive the same `logs` and write them:
    `keras.callbacks.CSVLogger` (columns `collapse_*`), `keras.callbacks.TensorBoard`
    (scalars `epoch_collapse_*`), `History` and the progress bar; `EarlyStopping`
    or `ModelCheckpoint` can watch them too. These keys are logs, not Keras
    metrics, so Keras cannot tell their direction: pass `mode="max"` for
    `<prefix>_mir` and `<prefix>_ncc_agreement`, `mode="min"` for the others
    (`hdr`, `feature_entropy`, `head_entropy`, `nc1`, `cdnv`, `etf_error`,
    `equinorm`, `self_duality`), e.g.
    `EarlyStopping(monitor="collapse_nc1", mode="min")`.
    `keras_nc.plotting.plot_collapse_history` draws `history` with the
    reference values.

    It evaluates after the first and the last epoch of each `fit`, and after
    every epoch whose number is a multiple of `every`. Epoch numbers continue
    across `fit` calls: they are Keras' (1-based) epoch numbers, which continue
    with `fit(initial_epoch=...)`; a later `fit` that restarts at epoch 0
    continues after the last epoch this monitor saw.

    The model is a `keras_nc.models.CollapseClassifier`, or a functional
    `keras.Model` with a `Dense` logits head, which the monitor splits with
    `CollapseClassifier.from_model(model, features_layer, head_layer)` (sharing
    its layers). The arguments and the model are checked when `fit` starts
    (`set_model`, then one forward pass of the first batch in
    `on_train_begin`), not after the first epoch.

    Args:
        x: inputs (an array, or a dict or list of arrays for several inputs)
            with `y`; or, with `y=None`, a re-iterable, finite dataset of
            `(inputs, labels)` or `(inputs, labels, sample_weight)` batches
            (a `tf.data.Dataset`, a `keras.utils.PyDataset`, a torch
            `DataLoader`, a list of tuples). Sample weights are ignored: the
            measures are those of the set as given.
        y: labels when `x` holds the inputs: integers `(n,)` or `(n, 1)`, or
            one-hot `(n, num_classes)` (as the losses and metrics accept).
        every: evaluate after every `every`-th epoch (and after the first and
            the last epoch of each `fit`).
        batch_size: batch size of the feature extraction when `x` is an array.
        center: centre features by the global mean (see the Concepts page).
        prefix: prefix of the keys added to `logs`, joined with an underscore
            as Keras joins `val_`: `"val"` and `"val_"` both log `val_mir`, ...
            (a prefix ending in `_`, `/`, `-` or `.` is used as it is; `""`
            logs `mir`). Use `"val_collapse"` for a held-out set: Keras'
            `TensorBoard` then draws the values in its validation run, next
            to the `collapse_` values of a training subset.
        features_layer: for a plain functional model only: name of the layer
            whose output are the features (default: the input of the head).
        head_layer: for a plain functional model only: name of its `Dense`
            head (default: its last `Dense` layer).

    Attributes:
        history: list of dicts, one per evaluation: `epoch` (1-based) and the
            measures of `MEASURES`, kept across `fit` calls.

    Example:

    ```python
    from keras_nc.callbacks import CollapseMonitor
    from keras_nc.plotting import plot_collapse_history

    monitor = CollapseMonitor(x_val, y_val, every=5)
    model.fit(
        x, y, epochs=100,
        callbacks=[monitor, keras.callbacks.CSVLogger("log.csv")],  # the monitor first
    )
    plot_collapse_history(monitor.history, num_classes=10, path="collapse.png")
    ```
    """

    def __init__(
        self,
        x,
        y=None,
        every=1,
        batch_size=256,
        center=True,
        prefix="collapse_",
        features_layer=None,
        head_layer=None,
        **kwargs,
    ):
        removed = [name for name in _REMOVED_ARGUMENTS if name in kwargs]
        if removed:
            raise TypeError(
                f"CollapseMonitor no longer takes {', '.join(f'`{n}`' for n in removed)}: it "
                "adds its values to the epoch logs and writes no file. Put "
                "keras.callbacks.CSVLogger / keras.callbacks.TensorBoard after it in "
                "`callbacks`, and draw its figure with "
                "keras_nc.plotting.plot_collapse_history(monitor.history, num_classes, path)."
            )
        if kwargs:
            raise TypeError(f"CollapseMonitor got unexpected arguments {sorted(kwargs)}.")
        super().__init__()
        _check_positive_int(every, "every")
        _check_positive_int(batch_size, "batch_size")
        prefix = log_prefix(prefix, "CollapseMonitor")
        self.every, self.batch_size, self.center, self.prefix = every, batch_size, center, prefix
        self.features_layer, self.head_layer = features_layer, head_layer
        self.x = x
        self.y = None if y is None else _integer_labels(y, "`y`")
        _check_data(x, self.y)
        self.history = []
        self._classifier = None
        self._last_epoch = 0  # number (1-based) of the last epoch seen
        self._epoch_offset = None  # set at the first epoch of each fit

    def set_model(self, model):
        super().set_model(model)
        # A model that cannot give features and head rows fails here, when fit starts.
        self._classifier = collapse_view(
            self.model, self.features_layer, self.head_layer, "CollapseMonitor"
        )

    def on_train_begin(self, logs=None):
        self._epoch_offset = None
        self._check_first_batch()

    def _check_first_batch(self):
        """One forward pass of the first batch and its labels, before training."""
        inputs, labels = next(iter(self._batches()), (None, None))
        if inputs is None:
            raise ValueError("CollapseMonitor: `x` holds no batch; it needs samples to measure.")
        features = self._classifier.extract_features(inputs, training=False)
        self._classifier.classify(features)
        if len(labels) != features.shape[0]:
            raise ValueError(
                f"CollapseMonitor: a batch holds {features.shape[0]} inputs and "
                f"{len(labels)} labels; they must match."
            )
        checked = labels if self.y is None else self.y
        num_classes = self._classifier.num_classes
        if checked.size and (checked.min() < 0 or checked.max() >= num_classes):
            raise ValueError(
                f"CollapseMonitor: labels must be in [0, {num_classes}) for a model with "
                f"{num_classes} classes; received labels from {checked.min()} to {checked.max()}."
            )

    def _batches(self):
        """`(inputs, integer labels)` batches of the data."""
        if self.y is not None:
            for start in range(0, len(self.y), self.batch_size):
                rows = slice(start, start + self.batch_size)
                yield keras.tree.map_structure(lambda a, r=rows: a[r], self.x), self.y[rows]
            return
        for batch in self.x:
            if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
                length = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
                raise ValueError(
                    "CollapseMonitor: each batch of `x` must be `(inputs, labels)` or "
                    "`(inputs, labels, sample_weight)`; received a "
                    f"{type(batch).__name__}{length}."
                )
            yield batch[0], _integer_labels(batch[1], "the labels of `x`'s batches")

    def _collect(self):
        features, logits, labels = [], [], []
        for x, y in self._batches():
            z = self._classifier.extract_features(x, training=False)
            features.append(keras.ops.convert_to_numpy(z))
            logits.append(keras.ops.convert_to_numpy(self._classifier.classify(z)[0]))
            labels.append(y)
        return np.concatenate(features), np.concatenate(logits), np.concatenate(labels)

    def evaluate(self, epoch):
        """Computes the measures now; returns the row added to `history`.

        Args:
            epoch: 0-based index of the epoch just finished (the row's `epoch`
                is `epoch + 1`).
        """
        model = self.model  # on JAX, this syncs the training state into the variables
        if self._classifier is None:
            self._classifier = collapse_view(
                model, self.features_layer, self.head_layer, "CollapseMonitor"
            )
        features, logits, labels = self._collect()
        head = keras.ops.convert_to_numpy(self._classifier.head_rows())
        report = collapse_report(
            features.astype("float32"),
            labels,
            head.astype("float32"),
            logits.astype("float32"),
            self._classifier.num_classes,
            center=self.center,
        )
        row = {"epoch": int(epoch) + 1, **report}
        self.history.append(row)
        return row

    def on_epoch_end(self, epoch, logs=None):
        first = self._epoch_offset is None
        if first:  # continue after the epochs of an earlier fit that restarted at 0
            self._epoch_offset = max(0, self._last_epoch - epoch)
        number = epoch + 1 + self._epoch_offset
        self._last_epoch = number
        last = (self.params or {}).get("epochs") == epoch + 1
        if not (first or last or number % self.every == 0):
            return
        row = self.evaluate(number - 1)
        if logs is not None:
            logs.update({self.prefix + key: row[key] for key in MEASURES})


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; received {value!r}.")


def _integer_labels(y, name):
    """`(n,)` int32 labels from integer `(n,)`/`(n, 1)` or one-hot `(n, C)` labels."""
    labels = np.asarray(keras.ops.convert_to_numpy(y))
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot (or class probabilities)
        labels = np.argmax(labels, axis=-1)
    elif labels.ndim == 2:
        labels = labels.reshape(-1)
    if labels.ndim != 1:
        raise ValueError(
            f"CollapseMonitor: {name} must be integer labels of shape (n,) or (n, 1), or "
            f"one-hot labels (n, num_classes); received shape {labels.shape}."
        )
    if labels.dtype.kind not in "iub":
        if labels.dtype.kind != "f" or not np.all(np.isfinite(labels) & (labels % 1 == 0)):
            raise ValueError(
                f"CollapseMonitor: {name} must hold integer class labels; received "
                f"{labels.dtype} values such as {labels[:3].tolist()}."
            )
    return labels.astype("int32")


def _check_data(x, y):
    """Checks `x`/`y` at construction (the model is checked by `set_model`)."""
    if y is not None:
        leaves = keras.tree.flatten(x)
        if not leaves or not all(hasattr(leaf, "shape") for leaf in leaves):
            raise ValueError(
                "CollapseMonitor: with `y`, `x` must be an array (or a dict or list of arrays); "
                f"received {type(x).__name__}. Pass a dataset of batches as `x` with `y=None`."
            )
        sizes = {int(leaf.shape[0]) for leaf in leaves}
        if sizes != {len(y)}:
            raise ValueError(
                f"CollapseMonitor: `x` and `y` must hold the same number of samples; received "
                f"{sorted(sizes)} inputs and {len(y)} labels."
            )
        if not len(y):
            raise ValueError("CollapseMonitor: `x` and `y` are empty; it needs samples to measure.")
        return
    if hasattr(x, "shape"):
        raise ValueError(
            "CollapseMonitor: `y` is required when `x` is an array; or pass a dataset of "
            "`(inputs, labels)` batches as `x`."
        )
    if isinstance(x, collections.abc.Iterator) or not isinstance(x, collections.abc.Iterable):
        raise ValueError(
            "CollapseMonitor: `x` must be arrays with `y`, or a re-iterable dataset of "
            "`(inputs, labels)` batches (a tf.data.Dataset, a keras.utils.PyDataset, a torch "
            f"DataLoader, a list); received a {type(x).__name__}, which "
            + (
                "would be exhausted after the first evaluation."
                if isinstance(x, collections.abc.Iterator)
                else "is not iterable."
            )
        )


@keras.saving.register_keras_serializable(package="keras_nc")
class TerminateOnNonFiniteWeights(keras.callbacks.Callback):
    """Stops training when a weight of the model holds NaN or inf.

    `keras.callbacks.TerminateOnNaN` watches the loss. A diverged run can
    keep a finite loss: on TensorFlow with oneDNN's fused CPU kernels (the x86
    default), NaN weights can come out of a layer as zero activations, so the
    loss sits at `log(C)` and the collapse metrics report total collapse while
    the weights are NaN; no NaN ever reaches the loss or the metrics. This
    callback looks at the weights themselves, after every epoch (and every
    `every_n_batches` batches when given), and stops training with a message
    naming the first bad weight.

    Args:
        every_n_batches: optional; also check every this many training
            batches (each check reads every weight: cheap next to a step for
            ordinary models, but not free).

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[keras_nc.callbacks.TerminateOnNonFiniteWeights()])
    ```
    """

    def __init__(self, every_n_batches=None):
        super().__init__()
        if every_n_batches is not None and (
            isinstance(every_n_batches, bool)
            or not isinstance(every_n_batches, int)
            or every_n_batches < 1
        ):
            raise ValueError(
                f"`every_n_batches` must be None or a positive integer; received "
                f"{every_n_batches!r}."
            )
        self.every_n_batches = every_n_batches
        self.stopped_on = None

    def _check(self, where):
        for weight in self.model.weights:
            if not bool(np.all(np.isfinite(keras.ops.convert_to_numpy(weight.value)))):
                self.stopped_on = weight.path
                print(
                    f"\n{where}: weight {weight.path!r} holds NaN or infinite values; "
                    "terminating training (the run diverged: check the learning rate and "
                    "the loss)."
                )
                self.model.stop_training = True
                return

    def on_train_batch_end(self, batch, logs=None):
        if self.every_n_batches and (batch + 1) % self.every_n_batches == 0:
            self._check(f"Batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(f"Epoch {epoch + 1}")

    def get_config(self):
        return {"every_n_batches": self.every_n_batches}
