"""`EpochEndEvaluator`: the base of the callbacks that measure something at chosen epoch ends.

It decides when to measure, gathers the features of a fixed labelled set
with the model's own `extract_features`, hands them to `measure`, keeps
`history` and puts the values into the epoch's `logs`, where Keras' own
callbacks placed after it (`CSVLogger`, `TensorBoard`, `EarlyStopping`,
`ModelCheckpoint`, the progress bar) read them. `CollapseMonitor` and
`LayerwiseCollapse` are its subclasses.
"""

import time

import keras
import numpy as np

from keras_nc.callbacks import data
from keras_nc.deprecation import warn_renamed
from keras_nc.models import collapse_view

# History-row keys renamed in keras-nc 0.2.0 (one meaning per key: `mir`/`hdr` are the
# sample pairing, `mir_class`/`hdr_class` the class pairing, see docs/log_keys.md).
RENAMED_KEYS = {"mir": "mir_class", "hdr": "hdr_class", "feature_entropy": "matrix_entropy"}


class HistoryRow(dict):
    """A row of an evaluator's `history`: a dict whose keys renamed in 0.2.0 still read.

    `row["mir"]` of a row holding `mir_class` returns it with a
    `DeprecationWarning` (see `RENAMED_KEYS`); every other use is a plain dict's.

    Example:

    >>> import warnings
    >>> row = HistoryRow(epoch=1, mir_class=0.5)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     row["mir"]
    0.5
    """

    def __missing__(self, key):
        new = RENAMED_KEYS.get(key)
        if new is None or new not in self:
            raise KeyError(key)
        warn_renamed(f'row["{key}"]', f'row["{new}"]')
        return self[new]


def log_prefix(prefix, owner):
    """`prefix` of logs keys, joined Keras' way: `"val"` and `"val_"` both give `"val_"`.

    An underscore is added after a prefix ending in a letter or digit (`""`
    and prefixes ending in `_`, `/`, `-` or `.` are kept as they are).

    Example:

    >>> log_prefix("val", "CollapseMonitor"), log_prefix("probe/", "CollapseMonitor")
    ('val_', 'probe/')
    """
    if not isinstance(prefix, str):
        raise ValueError(f"{owner}: `prefix` must be a string; received {prefix!r}.")
    return prefix + "_" if prefix[-1:].isalnum() else prefix


class EpochEndEvaluator(keras.callbacks.Callback):
    """Base of the callbacks that measure a model at chosen epoch ends and log the values.

    It measures after the first and the last epoch of each `fit` and after
    every epoch whose number is a multiple of `every`, or, with `epochs`,
    after exactly those epochs. Epoch numbers continue across `fit` calls:
    they are Keras' (1-based) numbers, which continue with
    `fit(initial_epoch=...)`; a later `fit` that restarts at epoch 0
    continues after the last epoch the callback saw.

    With data (`x` and `y`, or `x` a dataset of batches), the model is read
    through `keras_nc.models.collapse_view` (a `CollapseClassifier`, or a
    functional `keras.Model` with a `Dense` logits head) and checked when
    `fit` starts (`set_model`, then a forward pass of the first batch in
    `on_train_begin`). At a measured epoch, `gather` runs the set through
    `extract_features` and `classify` (under a `keras.utils.Progbar` when
    `verbose`) and `measure(features=..., labels=..., logits=...,
    head_weights=...)` turns the NumPy arrays into a dict of floats. Without
    data, `gather` gives nothing and `measure()` computes its values itself
    (e.g. a `model.evaluate` of its own).

    The values go into the epoch's `logs` as `<prefix><key>` (the prefix
    joined Keras' way: `"val"` and `"val_"` both give `val_<key>`), so Keras'
    callbacks placed after it in `callbacks` see them: `CSVLogger`,
    `TensorBoard`, `History`, the progress bar, and `EarlyStopping` or
    `ModelCheckpoint` with an explicit `mode`. Each measured epoch adds a row
    `{"epoch": number, **values}` to `history` (`record`).

    Subclasses implement `measure`; they may override `gather` (other arrays
    than the final features) and `record` (other rows than one per epoch).

    Args:
        x: optional. Inputs (an array, or a dict or list of arrays) with
            `y`; or, with `y=None`, a re-iterable, finite dataset of
            `(inputs, labels)` or `(inputs, labels, sample_weight)` batches
            (a `tf.data.Dataset`, a `keras.utils.PyDataset`, a torch
            `DataLoader`, a list of tuples). Sample weights are ignored.
        y: labels when `x` holds the inputs: integers `(n,)` or `(n, 1)`, or
            one-hot `(n, num_classes)`.
        every: measure after every `every`-th epoch (and after the first and
            the last epoch of each `fit`).
        epochs: optional list of 1-based epoch numbers to measure instead.
        batch_size: batch size of the feature extraction when `x` is an array.
        prefix: prefix of the keys added to `logs` (see above).
        verbose: show a progress bar while gathering.
        features_layer: for a plain functional model only: name of the layer
            whose output are the features (default: the input of the head).
        head_layer: for a plain functional model only: name of its `Dense` head.

    Attributes:
        history: list of dicts, one per measured epoch (see `record`), kept
            across `fit` calls.
        seconds: wall-clock seconds of each evaluation (gathering and measures).

    Example:

    ```python
    class MeanNorm(keras_nc.callbacks.EpochEndEvaluator):
        \"\"\"Logs `norm_mean`: the mean feature norm of a held-out set.\"\"\"

        def measure(self, features, labels, logits, head_weights):
            return {"mean": float(np.linalg.norm(features, axis=1).mean())}

    model.fit(x, y, epochs=10, callbacks=[MeanNorm(x_val, y_val, every=2, prefix="norm"),
                                          keras.callbacks.CSVLogger("log.csv")])
    ```

    Without data, a subclass measures what it likes, e.g. a test set with
    the model's own compiled metrics (as the recipes' epoch-end evaluations do):

    ```python
    class TestSet(keras_nc.callbacks.EpochEndEvaluator):
        \"\"\"Logs `test_loss`, `test_accuracy`, ... of a test set.\"\"\"

        def __init__(self, test):
            super().__init__(prefix="test")
            self.test = test

        def measure(self):
            return self.model.evaluate(self.test, verbose=0, return_dict=True)
    ```
    """

    def __init__(self, x=None, y=None, every=1, epochs=None, batch_size=256, prefix="",
                 verbose=False, features_layer=None, head_layer=None):  # fmt: skip
        super().__init__()
        owner = type(self).__name__
        self.every = data.check_positive_int(every, "every")
        self.batch_size = data.check_positive_int(batch_size, "batch_size")
        self.epochs = None if epochs is None else list(epochs)
        for value in self.epochs or ():
            data.check_positive_int(value, "epochs")
        self.prefix = log_prefix(prefix, owner)
        self.verbose = verbose
        self.features_layer, self.head_layer = features_layer, head_layer
        if x is None and y is not None:
            raise ValueError(f"{owner}: `y` was given without `x`.")
        self.x = x
        self.y = None if y is None else data.integer_labels(y, "`y`", owner)
        if x is not None:
            data.check_data(x, self.y, owner)
        self.history, self.seconds = [], []
        self._classifier = None
        self._last_epoch = 0  # number (1-based) of the last epoch seen
        self._epoch_offset = None  # set at the first epoch of each fit

    @property
    def classifier(self):
        """The `CollapseClassifier` view of the model (`collapse_view`); `None` without data."""
        return self._classifier

    def set_model(self, model):
        super().set_model(model)
        if self.x is None:
            return
        # A model that cannot give features and head rows fails here, when fit starts.
        self._classifier = collapse_view(
            model, self.features_layer, self.head_layer, type(self).__name__
        )
        if self.y is not None:
            data.check_label_range(self.y, self._classifier.num_classes, type(self).__name__)

    def on_train_begin(self, logs=None):
        self._epoch_offset = None
        if self.x is not None:
            self.check_first_batch()

    def check_first_batch(self):
        """One forward pass of the first batch and its labels, before training."""
        owner = type(self).__name__
        inputs, labels = next(iter(self.batches()), (None, None))
        if inputs is None:
            raise ValueError(f"{owner}: `x` holds no batch; it needs samples to measure.")
        features = self._classifier.extract_features(inputs, training=False)
        self._classifier.classify(features)
        if len(labels) != features.shape[0]:
            raise ValueError(
                f"{owner}: a batch holds {features.shape[0]} inputs and "
                f"{len(labels)} labels; they must match."
            )
        checked = labels if self.y is None else self.y
        data.check_label_range(checked, self._classifier.num_classes, owner)

    def batches(self, progress=False):
        """`(inputs, integer labels)` batches of the data, under a progress bar if `progress`."""
        batches = data.labelled_batches(self.x, self.y, self.batch_size, type(self).__name__)
        if not progress:
            yield from batches
            return
        bar = keras.utils.Progbar(data.batch_count(self.x, self.y, self.batch_size))
        for step, batch in enumerate(batches):
            yield batch
            bar.update(step + 1)

    def gather(self):
        """NumPy `features`, `logits`, `labels` of the data and the model's `head_weights`.

        Returns:
            A dict of the keyword arguments of `measure`: `features` `(n, d)`,
            `logits` `(n, C)` (float32), `labels` `(n,)` (int32),
            `head_weights` `(C, d)` (float32); `{}` without data.
        """
        if self.x is None:
            return {}
        features, logits, labels = [], [], []
        for x, y in self.batches(progress=self.verbose):
            z = self._classifier.extract_features(x, training=False)
            features.append(keras.ops.convert_to_numpy(z))
            logits.append(keras.ops.convert_to_numpy(self._classifier.classify(z)[0]))
            labels.append(y)
        head = keras.ops.convert_to_numpy(self._classifier.head_weights)
        return {
            "features": np.concatenate(features).astype("float32"),
            "logits": np.concatenate(logits).astype("float32"),
            "labels": np.concatenate(labels),
            "head_weights": np.asarray(head, "float32"),
        }

    def measure(self, **arrays):
        """The values of this evaluation: a dict `{key: float}` (subclasses implement it).

        Args:
            **arrays: what `gather` returns (nothing without data).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `measure`.")

    def record(self, epoch, values):
        """Adds `{"epoch": epoch, **values}` to `history` and returns it (1-based `epoch`)."""
        row = HistoryRow(epoch=int(epoch), **values)
        self.history.append(row)
        return row

    def evaluate(self, epoch):
        """Measures now; returns what `record` returns (the row added to `history`).

        Args:
            epoch: 0-based index of the epoch just finished (recorded as `epoch + 1`).
        """
        return self._evaluate(epoch)[1]

    def _evaluate(self, epoch):
        start = time.perf_counter()
        self.model  # noqa: B018 (on JAX, reading it syncs the training state into the variables)
        if self.x is not None and self._classifier is None:
            self.set_model(self.model)
        values = self.measure(**self.gather())
        self.seconds.append(time.perf_counter() - start)
        return values, self.record(int(epoch) + 1, values)

    def due(self, epoch):
        """The 1-based number of the epoch that just ended (0-based `epoch`) if due, else None."""
        first = self._epoch_offset is None
        if first:  # continue after the epochs of an earlier fit that restarted at 0
            self._epoch_offset = max(0, self._last_epoch - epoch)
        number = epoch + 1 + self._epoch_offset
        self._last_epoch = number
        if self.epochs is not None:
            return number if number in self.epochs else None
        last = (self.params or {}).get("epochs") == epoch + 1
        return number if first or last or number % self.every == 0 else None

    def on_epoch_end(self, epoch, logs=None):
        number = self.due(epoch)
        if number is None:
            return
        values, _ = self._evaluate(number - 1)
        if logs is not None:
            logs.update({self.prefix + key: value for key, value in values.items()})
