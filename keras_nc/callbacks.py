"""`CollapseMonitor`: Neural Collapse measures of a held-out set at epoch ends."""

import csv
import os

import keras
import numpy as np

from keras_nc import ops as nc_ops
from keras_nc import theory

# Keys added to the logs, in the order of the CSV columns.
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


def collapse_panels(num_classes):
    """The panels of `plot_collapse_history`: `(title, keys, reference, reference_label)`.

    `reference` is the value at Neural Collapse drawn as a dotted line (`None`:
    no line); MIR* and log(C-1) are drawn only when `num_classes >= 3`.
    """
    reference = num_classes >= 3
    return [
        ("MIR (class pairing)", ["mir"], theory.mir_at_collapse(num_classes) if reference else None,
         "MIR*"),
        ("HDR (class pairing)", ["hdr"], 0.0, "HDR* = 0"),
        ("Matrix entropy (nats)", ["feature_entropy", "head_entropy"],
         theory.entropy_at_collapse(num_classes) if reference else None, "log(C-1)"),
        ("NC1 and CDNV (log scale)", ["nc1", "cdnv"], None, None),
        ("NC2 / NC3", ["etf_error", "equinorm", "self_duality"], 0.0, "0 at collapse"),
        ("NC4: NCC agreement", ["ncc_agreement"], 1.0, "1 at collapse"),
    ]  # fmt: skip


def draw_panel(ax, title, curves, reference=None, reference_label=None, log_scale=False):
    """Draws `curves` (`{label: (epochs, values)}`) and a reference line on `ax`."""
    for label, (epochs, values) in curves.items():
        ax.plot(epochs, values, marker=".", label=label)
    if reference is not None:
        ax.axhline(reference, color="k", lw=1, ls=":", label=reference_label)
    values = [v for _, vs in curves.values() for v in vs]
    if log_scale and values and all(v > 0 for v in values):
        ax.set_yscale("log")
    ax.set(title=title, xlabel="epoch")
    ax.legend(fontsize=8)


def plot_collapse_history(rows, num_classes, path, title=None):
    """Plots `CollapseMonitor` rows with the Neural Collapse reference values; writes a PNG.

    Args:
        rows: list of dicts with an `epoch` key and the `MEASURES` keys.
        num_classes: `C`, for MIR* and log(C-1) (drawn when `C >= 3`).
        path: output PNG path.
        title: optional figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in rows]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    panels = collapse_panels(num_classes)
    for ax, (name, keys, ref, ref_label) in zip(axes.flat, panels, strict=True):
        curves = {key: (epochs, [row[key] for row in rows]) for key in keys}
        draw_panel(ax, name, curves, ref, ref_label, log_scale=keys[0] == "nc1")
    fig.suptitle(title or f"Neural Collapse measures ({keras.backend.backend()})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class CollapseMonitor(keras.callbacks.Callback):
    """Evaluates Neural Collapse measures of a dataset every `every` epochs.

    At the end of an epoch it computes the features and logits of the given
    data with `model.extract_features` and `model.head` (a
    `keras_nc.models.CollapseClassifier`), then the class-pairing MIR and HDR,
    the matrix entropies of features and head, and NC1, CDNV, NC2 (ETF error,
    equinorm), NC3 (self-duality) and the exact NC4 (`collapse_report`). The
    values are added to `logs` with the prefix `collapse_`, so `History`,
    `CSVLogger` (placed after this callback) and the progress bar see them; they
    are also appended to `collapse.csv`, drawn into `collapse.png` with the
    reference values MIR*, HDR* = 0 and log(C-1), and written as TensorBoard
    scalars when asked.

    Args:
        x: inputs (array), or a dataset / iterable of `(x, y)` batches.
        y: integer labels when `x` is an array.
        every: evaluate every `every` epochs (and after the first and the
            last epoch of `fit`).
        output_dir: folder for `collapse.csv`, `collapse.png` and TensorBoard
            logs; `None` keeps results in `logs` and `history` only.
        tensorboard: write TensorBoard scalars under `output_dir/tensorboard`.
        plot: redraw `collapse.png` at every evaluation.
        center: centre features by the global mean (see the Concepts page).
        batch_size: batch size of the feature extraction for array inputs.

    Attributes:
        history: list of dicts, one per evaluation (`epoch` and the measures).

    Example:

    ```python
    monitor = CollapseMonitor(x_val, y_val, every=5, output_dir="runs/nc")
    model.fit(x, y, epochs=100, callbacks=[monitor, keras.callbacks.CSVLogger("log.csv")])
    ```
    """

    def __init__(
        self,
        x,
        y=None,
        every=1,
        output_dir=None,
        tensorboard=False,
        plot=True,
        center=True,
        batch_size=256,
    ):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"`every` must be a positive integer; received {every!r}.")
        if tensorboard and output_dir is None:
            raise ValueError("`tensorboard=True` needs an `output_dir` to write to.")
        self.x, self.y = x, y
        self.every, self.output_dir = every, output_dir
        self.tensorboard, self.plot, self.center = tensorboard, plot, center
        self.batch_size = batch_size
        self.history = []
        self._writer = None

    def _batches(self):
        if self.y is not None:
            x, y = self.x, np.asarray(self.y)
            for start in range(0, len(y), self.batch_size):
                yield x[start : start + self.batch_size], y[start : start + self.batch_size]
        else:
            yield from self.x

    def _collect(self):
        features, logits, labels = [], [], []
        for x, y in self._batches():
            z = self.model.extract_features(x, training=False)
            features.append(keras.ops.convert_to_numpy(z))
            logits.append(keras.ops.convert_to_numpy(self.model.head(z)))
            labels.append(np.asarray(keras.ops.convert_to_numpy(y)).reshape(-1))
        return np.concatenate(features), np.concatenate(logits), np.concatenate(labels)

    def evaluate(self, epoch):
        """Computes the measures now; returns the row added to `history`."""
        features, logits, labels = self._collect()
        head = keras.ops.convert_to_numpy(self.model.head.kernel).T
        row = {"epoch": epoch + 1}
        row.update(
            collapse_report(
                features.astype("float32"),
                labels.astype("int32"),
                head.astype("float32"),
                logits.astype("float32"),
                self.model.num_classes,
                center=self.center,
            )
        )
        self.history.append(row)
        if self.output_dir is not None:
            self._write(row)
        return row

    def on_epoch_end(self, epoch, logs=None):
        last = (self.params or {}).get("epochs") == epoch + 1
        if epoch != 0 and (epoch + 1) % self.every and not last:
            return
        row = self.evaluate(epoch)
        if logs is not None:
            logs.update({f"collapse_{key}": row[key] for key in MEASURES})

    def _write(self, row):
        os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, "collapse.csv")
        new = not os.path.exists(path) or len(self.history) == 1
        with open(path, "w" if new else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", *MEASURES])
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.plot:
            plot_collapse_history(
                self.history, self.model.num_classes, os.path.join(self.output_dir, "collapse.png")
            )
        if self.tensorboard:
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(
                    os.path.join(self.output_dir, "tensorboard")
                )
            with self._writer.as_default():
                for key in MEASURES:
                    tf.summary.scalar(f"collapse/{key}", row[key], step=row["epoch"])
            self._writer.flush()


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
