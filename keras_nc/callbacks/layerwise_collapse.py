"""`LayerwiseCollapse`: the Neural Collapse profile of a network through depth at epoch ends.

The layer-wise analysis it relies on (`block_outputs`, `LAYER_MEASURES`,
`depth_slopes`) lives in `keras_nc.layerwise`.
"""

import csv

import keras
import numpy as np
from keras import ops

from keras_nc import ops as nc_ops
from keras_nc.callbacks.evaluator import EpochEndEvaluator, HistoryRow
from keras_nc.layerwise import LAYER_MEASURES, block_outputs, graph_backbone, layer_output
from keras_nc.ops import normalize_rows
from keras_nc.ops.guards import check_flag


class LayerwiseCollapse(EpochEndEvaluator):
    """Records the Neural Collapse profile of a network through depth at chosen epochs.

    At the end of the chosen epochs the labelled set `(x, y)` (class-balanced,
    fixed: e.g. 100 training images per class) runs through ONE multi-output
    sub-model of the backbone, `keras.Model(backbone.inputs, [outputs of
    layers])`, sharing its layers; outputs of rank > 2 are averaged over every
    axis but the first and the last (global average pooling of feature maps,
    channels last). Per layer it accumulates `keras_nc.ops.class_statistics`
    batch by batch (counts, class sums, the `d x d` second moment), then a
    second pass over the set gives the nearest-class-centre accuracy and the
    second moment of the centred, row-normalised features. Per layer it records
    (`keras_nc.layerwise.LAYER_MEASURES`):

    - `nc1`, `cdnv` (`keras_nc.ops.neural_collapse_measures`);
    - `ncc_accuracy`: fraction of the set whose nearest class mean (at that
      layer) is its label: the "linear separability" of the layer;
    - `mir_class`, `hdr_class`: the class pairing
      (`keras_nc.ops.class_pairing_ratios`): the `C x C` cosine Gram of the
      layer's centred class means against that of the final head's rows.
      Both Grams are `C x C` whatever the layer's width, so the ratios are
      defined at every layer: they say how close the geometry of the layer's
      class means is to that of the classifier;
    - `matrix_entropy`, `effective_rank`: matrix entropy (nats) of the cosine
      Gram of the features centred by the set's mean (as `CollapseMonitor`),
      and its exponential;
    - `rank_me`: `keras_nc.ops.rank_me` of the (uncentred) features;
    - `alpha_req`: `keras_nc.ops.alpha_req` of the feature covariance.

    Memory: one batch of the sub-model's activations, plus per layer `C d + d^2`
    floats of statistics (`d` the layer's width after pooling); never the
    features of the whole set. Cost: two forward passes of the set through the
    backbone per recorded epoch, and nothing at all in other epochs or steps
    (no batch hook, nothing added to the train step).

    Values are added to the epoch's `logs` as `<prefix>_<layer>_<measure>`
    (`layerwise_stem_relu_nc1`, ...; see the [log keys](../log_keys.md) page),
    so `keras.callbacks.CSVLogger` and `TensorBoard` placed after it write
    them (and `EarlyStopping` can watch them with an explicit `mode`: `"max"`
    for `ncc_accuracy`, `mir_class`, `effective_rank` and `rank_me`, `"min"`
    for the others; these are logs, not Keras metrics, so `mode="auto"`
    cannot tell); `history` holds one row per (epoch, layer); `csv_path`
    writes those rows (rewritten at every recording) and `plot_path` a figure
    at the end of training (`keras_nc.plotting.plot_layerwise`).

    Epochs: with `epochs` (1-based numbers) exactly those; otherwise after the
    first and the last epoch of each `fit` and after every epoch whose number
    is a multiple of `every`. Numbers continue across `fit` calls
    (`keras_nc.callbacks.EpochEndEvaluator`).

    The model is a `keras_nc.models.CollapseClassifier` whose backbone is a
    functional or Sequential `keras.Model`, or a plain functional classifier
    (split with `CollapseClassifier.from_model`, as `CollapseMonitor` does). The
    layers are checked when `fit` starts (`set_model`, or `on_train_begin` for a
    backbone built by the first batch): unknown names, layers without a single
    tensor output and subclassed backbones (no layer graph) raise a
    `ValueError` naming the layer or the backbone.

    Args:
        x: inputs (an array, or a dict or list of arrays) with `y`; or, with
            `y=None`, a re-iterable dataset of `(inputs, labels)` batches (as
            `CollapseMonitor` accepts).
        y: integer labels `(n,)`/`(n, 1)` or one-hot `(n, C)`.
        layers: names of backbone layers, shallow to deep (default:
            `block_outputs(backbone)`: the stem, every block and the features
            of a ResNet).
        every: record after every `every`-th epoch (plus the first and last).
        epochs: optional list of 1-based epoch numbers to record instead.
        batch_size: batch size of the forward passes.
        center: centre by the set's mean for the entropies and the class pairing.
        prefix: prefix of the keys added to `logs`, joined with an underscore
            as Keras joins `val_`: `"val"` and `"val_"` both give
            `val_<layer>_<measure>`.
        csv_path: optional path of a CSV of `history`.
        plot_path: optional path of a PNG written at the end of training.
        features_layer: for a plain functional model only (see `CollapseMonitor`).
        head_layer: for a plain functional model only.
        verbose: show a progress bar during the two passes.

    Attributes:
        history: list of dicts, one per recorded (epoch, layer): `epoch`,
            `layer`, `depth` (0-based position in `layers`), `width` and
            `LAYER_MEASURES`.
        seconds: wall-clock seconds of each recording (both passes and the
            measures).

    Example:

    ```python
    profile = LayerwiseCollapse(x_sub, y_sub, epochs=[1, 10, 50], plot_path="layers.png")
    model.fit(x, y, epochs=50, callbacks=[profile, keras.callbacks.CSVLogger("log.csv")])
    ```
    """

    def __init__(self, x, y=None, layers=None, every=1, epochs=None, batch_size=256,
                 center=True, prefix="layerwise_", csv_path=None, plot_path=None,
                 features_layer=None, head_layer=None, verbose=False):  # fmt: skip
        if layers is not None and (
            isinstance(layers, str) or not all(isinstance(n, str) for n in layers) or not layers
        ):
            raise ValueError(
                f"`layers` must be a non-empty list of layer names; received {layers!r}."
            )
        super().__init__(
            x, y, every=every, epochs=epochs, batch_size=batch_size, prefix=prefix,
            verbose=verbose, features_layer=features_layer, head_layer=head_layer,
        )  # fmt: skip
        self.layers = None if layers is None else list(layers)
        self.center = check_flag(center, "center")
        self.csv_path, self.plot_path = csv_path, plot_path
        self._extractor = None

    def set_model(self, model):
        super().set_model(model)
        self._extractor = None
        if getattr(self.classifier.backbone, "built", True):  # else in on_train_begin, once built
            self._build_extractor()

    def _build_extractor(self):
        backbone = graph_backbone(self.classifier.backbone)
        names = self.layers if self.layers is not None else block_outputs(backbone)
        outputs = [layer_output(backbone, name) for name in names]
        inputs = backbone.inputs[0] if len(backbone.inputs) == 1 else backbone.inputs
        self._extractor = keras.Model(inputs, outputs, name="layerwise_extractor")
        self.layer_names = list(names)
        self.widths = [int(output.shape[-1]) for output in outputs]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # its forward pass builds a backbone built by its first batch
        if self._extractor is None:
            self._build_extractor()

    def layer_features(self, inputs):
        """Pooled features `(n, d_l)` of each chosen layer for a batch (float32 NumPy)."""
        # `predict_on_batch`: the backend's compiled, gradient-free inference path.
        outputs = self._extractor.predict_on_batch(inputs)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        pooled = []
        for output in outputs:
            output = self.classifier.pool_features(output)  # its data_format
            pooled.append(np.asarray(ops.convert_to_numpy(output), dtype="float32"))
        return pooled

    def _first_pass(self, num_classes):
        totals = None
        for x, y in self.batches(progress=self.verbose):
            batch = []
            for z in self.layer_features(x):
                stats = nc_ops.class_statistics(z, y, num_classes)
                batch.append({k: np.asarray(ops.convert_to_numpy(v), "float64")
                              for k, v in stats.items()})  # fmt: skip
            if totals is None:
                totals = batch
                continue
            for total, new in zip(totals, batch, strict=True):
                for key in total:
                    total[key] = total[key] + new[key]
        return totals

    def _second_pass(self, totals, num_classes):
        """NCC accuracy and the second moment of the centred, row-normalised features."""
        centres = [nc_ops.class_means(t["counts"], t["sums"]) for t in totals]
        correct = [0.0] * len(totals)
        normalised = [0.0] * len(totals)
        for x, y in self.batches(progress=self.verbose):
            one_hot = np.eye(num_classes, dtype="float32")[y]
            for i, z in enumerate(self.layer_features(x)):
                means, global_mean, present = centres[i]
                accuracy = nc_ops.ncc_agreement(z, one_hot, means, present)
                correct[i] += float(ops.convert_to_numpy(accuracy)) * len(y)
                mean = ops.convert_to_numpy(global_mean) if self.center else 0.0
                zhat = ops.convert_to_numpy(normalize_rows(ops.convert_to_tensor(
                    (z - mean).astype("float32")), 1e-6))  # fmt: skip
                zhat = np.asarray(zhat, "float64")
                normalised[i] = normalised[i] + zhat.T @ zhat
        samples = max(float(np.sum(totals[0]["counts"])), 1.0)
        return [c / samples for c in correct], normalised

    def gather(self):
        """Per layer: the set's class statistics, NCC accuracy and normalised second moment.

        Returns:
            A dict of the keyword arguments of `measure`: `statistics`,
            `ncc_accuracy` and `normalised` (lists, one item per layer) and
            the model's `head_weights` `(C, d)` (float64).
        """
        if self._extractor is None:
            self._build_extractor()
        num_classes = self.classifier.num_classes
        head = np.asarray(ops.convert_to_numpy(self.classifier.head_weights), "float64")
        totals = self._first_pass(num_classes)
        accuracies, normalised = self._second_pass(totals, num_classes)
        return {"statistics": totals, "ncc_accuracy": accuracies, "normalised": normalised,
                "head_weights": head}  # fmt: skip

    def _layer_measures(self, stats, normalised, head):
        values = nc_ops.neural_collapse_measures(stats)
        mir, hdr = nc_ops.class_pairing_ratios(stats["counts"], stats["sums"], head, self.center)
        entropy = nc_ops.matrix_entropy(normalised)
        total = max(float(np.sum(stats["counts"])), 1.0)
        mean = np.sum(stats["sums"], axis=0) / total
        covariance = stats["second_moment"] / total - np.outer(mean, mean)
        result = {
            "nc1": values["nc1"],
            "cdnv": values["cdnv"],
            "mir_class": mir,
            "hdr_class": hdr,
            "matrix_entropy": entropy,
            "effective_rank": ops.exp(entropy),
            "rank_me": nc_ops.rank_me_of_gram(stats["second_moment"]),
            "alpha_req": nc_ops.alpha_req_of_gram(covariance),
        }
        return {k: float(ops.convert_to_numpy(v)) for k, v in result.items()}

    def measure(self, statistics, ncc_accuracy, normalised, head_weights):
        """`{"<layer>_<measure>": value}` for every chosen layer and `LAYER_MEASURES`."""
        values = {}
        for depth, name in enumerate(self.layer_names):
            measures = self._layer_measures(statistics[depth], normalised[depth], head_weights)
            measures["ncc_accuracy"] = ncc_accuracy[depth]
            values.update({f"{name}_{key}": measures[key] for key in LAYER_MEASURES})
        return values

    def record(self, epoch, values):
        """Adds one row per layer to `history` (and rewrites `csv_path`); returns the rows."""
        rows = []
        for depth, name in enumerate(self.layer_names):
            row = HistoryRow(epoch=int(epoch), layer=name, depth=depth, width=self.widths[depth])
            row.update({key: values[f"{name}_{key}"] for key in LAYER_MEASURES})
            rows.append(row)
        self.history.extend(rows)
        if self.csv_path:
            self.write_csv(self.csv_path)
        return rows

    def write_csv(self, path):
        """Writes `history` to `path` (one row per recorded epoch and layer)."""
        columns = ["epoch", "layer", "depth", "width", *LAYER_MEASURES]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.history)

    def on_train_end(self, logs=None):
        if self.plot_path and self.history:
            from keras_nc import plotting

            plotting.plot_layerwise(self.history, self.plot_path)
