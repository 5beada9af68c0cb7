"""`CollapseMonitor`: the Neural Collapse measures of a fixed dataset at epoch ends.

It only computes: it adds its values to the epoch's `logs`, and Keras' own
callbacks placed after it write them (`keras.callbacks.CSVLogger`,
`keras.callbacks.TensorBoard`, `History`, the progress bar). Figures are in
`keras_nc.plotting`.
"""

import keras

from keras_nc import ops as nc_ops
from keras_nc.callbacks.evaluator import EpochEndEvaluator, HistoryRow

# The measures of `collapse_report`, in the order of `CollapseMonitor.history`'s rows
# (one meaning per key, see docs/log_keys.md: `mir_class`/`hdr_class` are the class pairing).
MEASURES = (
    "mir_class",
    "hdr_class",
    "matrix_entropy",
    "head_entropy",
    "nc1",
    "cdnv",
    "etf_error",
    "equinorm",
    "self_duality",
    "ncc_agreement",
)

# Arguments of `CollapseMonitor` removed in favour of Keras' own writers.
_REMOVED_ARGUMENTS = ("output_dir", "tensorboard", "plot")


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
        A dict of Python floats keyed by `MEASURES`: the class-pairing
        `mir_class`/`hdr_class` (arXiv 2409.16767, the class means against
        the head rows), `matrix_entropy` (`H` of the centred features' Gram,
        `min(n, d)` side), `head_entropy`, and NC1, CDNV, ETF error,
        equinorm, self-duality and the exact NCC agreement (NC4, with the
        final class means). The keys `mir`, `hdr` and `feature_entropy` of
        keras-nc 0.1 still read, with a `DeprecationWarning`.

    Example:

    ```python
    report = collapse_report(z, y, model.head_weights, logits, 10)
    report["mir_class"], report["nc1"]
    ```
    """
    # Statistics of features * 2**-e (no overflow; the measures are scale-invariant).
    stats = nc_ops.class_statistics(features, labels, num_classes, exponent="auto")
    mir, hdr = nc_ops.class_pairing_ratios(stats["counts"], stats["sums"], head_weights, center)
    measures = nc_ops.neural_collapse_measures(stats, head_weights)
    means, _, present = nc_ops.class_means(stats["counts"], stats["sums"])
    values = {
        "mir_class": mir,
        "hdr_class": hdr,
        "matrix_entropy": nc_ops.feature_entropy(features, center=center),
        "head_entropy": nc_ops.matrix_entropy(nc_ops.gram(head_weights)),
        **measures,
        "ncc_agreement": nc_ops.ncc_agreement(
            features, logits, means, present, means_exponent=stats["exponent"]
        ),
    }
    return HistoryRow({key: float(keras.ops.convert_to_numpy(values[key])) for key in MEASURES})


class CollapseMonitor(EpochEndEvaluator):
    """Adds the Neural Collapse measures of a fixed dataset to the epoch logs.

    At the end of an epoch it computes the features, logits and head rows of
    the data (with `model.extract_features`, `model.classify` and
    `model.head_weights`), then, exactly and in two passes, the class-pairing
    MIR and HDR, the matrix entropies of features and head, NC1, CDNV, NC2
    (ETF error, equinorm), NC3 (self-duality) and the exact NC4
    (`collapse_report`). It adds them to the epoch's `logs` as
    `<prefix>_<measure>` (default `collapse_mir_class`, ...,
    `collapse_ncc_agreement`; see the [log keys](../log_keys.md) page) and
    appends a row to `history`. It writes no file: the Keras callbacks
    placed after it in `callbacks` receive the same `logs` and write them:
    `keras.callbacks.CSVLogger` (columns `collapse_*`), `keras.callbacks.TensorBoard`
    (scalars `epoch_collapse_*`), `History` and the progress bar; `EarlyStopping`
    or `ModelCheckpoint` can watch them too. These keys are logs, not Keras
    metrics, so Keras cannot tell their direction: pass `mode="max"` for
    `<prefix>_mir_class` and `<prefix>_ncc_agreement`, `mode="min"` for the
    others (`hdr_class`, `matrix_entropy`, `head_entropy`, `nc1`, `cdnv`,
    `etf_error`, `equinorm`, `self_duality`), e.g.
    `EarlyStopping(monitor="collapse_nc1", mode="min")`.
    `keras_nc.plotting.plot_collapse_history` draws `history` with the
    reference values.

    When it measures, the data it accepts and the checks when `fit` starts
    are those of `keras_nc.callbacks.EpochEndEvaluator`: after the first and
    the last epoch of each `fit` and every `every`-th epoch, epoch numbers
    continuing across `fit` calls. The model is a
    `keras_nc.models.CollapseClassifier`, or a functional `keras.Model` with a
    `Dense` logits head, which the monitor splits with
    `CollapseClassifier.from_model(model, features_layer, head_layer)`
    (sharing its layers).

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
            as Keras joins `val_`: `"val"` and `"val_"` both log
            `val_mir_class`, ... (a prefix ending in `_`, `/`, `-` or `.` is
            used as it is; `""` logs `mir_class`). Use `"val_collapse"` for a
            held-out set: Keras' `TensorBoard` then draws the values in its
            validation run, next to the `collapse_` values of a training subset.
        features_layer: for a plain functional model only: name of the layer
            whose output are the features (default: the input of the head).
        head_layer: for a plain functional model only: name of its `Dense`
            head (default: its last `Dense` layer).
        epochs: optional list of 1-based epoch numbers to evaluate instead.
        verbose: show a progress bar while extracting the features.

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

    def __init__(self, x, y=None, every=1, batch_size=256, center=True, prefix="collapse_",
                 features_layer=None, head_layer=None, epochs=None, verbose=False,
                 **kwargs):  # fmt: skip
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
        super().__init__(
            x, y, every=every, epochs=epochs, batch_size=batch_size, prefix=prefix,
            verbose=verbose, features_layer=features_layer, head_layer=head_layer,
        )  # fmt: skip
        self.center = center

    def measure(self, features, labels, logits, head_weights):
        """`collapse_report` of the gathered arrays."""
        return collapse_report(
            features, labels, head_weights, logits, self.classifier.num_classes, self.center
        )
