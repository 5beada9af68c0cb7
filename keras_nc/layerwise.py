"""`LayerwiseCollapse`: the Neural Collapse profile of a network through depth.

At chosen epochs the callback runs a fixed labelled set through one
multi-output sub-model of the backbone (`keras.Model(backbone.inputs,
[outputs of the chosen layers])`, feature maps globally average-pooled),
accumulates per-layer class statistics batch by batch and records, per layer,
NC1, CDNV, the matrix entropy and effective rank of the features, RankMe,
alpha-ReQ, the class-pairing MIR/HDR against the final head and the accuracy
of the nearest-class-centre classifier. Exported as
`keras_nc.callbacks.LayerwiseCollapse`.
"""

import csv
import math
import time

import keras
import numpy as np
from keras import ops

from keras_nc import ops as nc_ops
from keras_nc.models import collapse_view
from keras_nc.ops import normalize_rows
from keras_nc.ops.guards import check_flag

# The per-layer measures, in the order of `LayerwiseCollapse.history`'s columns.
LAYER_MEASURES = (
    "nc1",
    "cdnv",
    "ncc_accuracy",
    "mir",
    "hdr",
    "feature_entropy",
    "effective_rank",
    "rank_me",
    "alpha_req",
)


def _producers(layers):
    """`{id(output tensor): position}` of the layers called once (shared ones are skipped)."""
    index = {}
    for position, layer in enumerate(layers):
        try:
            outputs = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):
            continue
        index.update({id(tensor): position for tensor in outputs})
    return index


def block_outputs(model):
    """Names of the block outputs of a functional (or Sequential) model, in depth order.

    A layer is a *cut* of the graph when every tensor computed before it and
    used after it is its own output. Block outputs are the cuts followed by a
    layer that is not one (the start of a residual block, whose input is still
    used by the shortcut), plus the last layer. For a ResNet: the stem's last
    layer, every block's output and the pooled features. A plain chain (no
    residual block: every layer a cut) gives every layer. The last block's
    output is left out when pooling follows it directly (its pooled values
    are the pooled features).

    Args:
        model: a functional or built `Sequential` `keras.Model`.

    Returns:
        A list of layer names.

    Example:

    ```python
    block_outputs(build_backbone("resnet18", (28, 28, 1), width=0.125))
    # ['stem_relu', 'stage1_block1_out', ..., 'stage4_block1_out', 'pool']: 9 layers
    ```
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    index = _producers(layers)
    last_use = [-1] * len(layers)
    input_last_use = -1
    for position, layer in enumerate(layers):
        try:
            inputs = keras.tree.flatten(layer.input)
        except (AttributeError, ValueError):
            inputs = []
        for tensor in inputs:
            source = index.get(id(tensor))
            if source is None:
                input_last_use = position
            else:
                last_use[source] = max(last_use[source], position)
    cuts, reach = [], input_last_use
    for position in range(len(layers)):
        cuts.append(reach <= position)
        reach = max(reach, last_use[position])
    names = [
        layer.name
        for position, layer in enumerate(layers)
        if cuts[position] and (position == len(layers) - 1 or not cuts[position + 1])
    ]
    return names if len(names) >= 2 else [layer.name for layer in layers]


def log_prefix(prefix, owner):
    """`prefix` of logs keys, joined Keras' way: `"val"` and `"val_"` both give `"val_"`.

    An underscore is added after a prefix ending in a letter or digit (`""`
    and prefixes ending in `_`, `/`, `-` or `.` are kept as they are).
    """
    if not isinstance(prefix, str):
        raise ValueError(f"{owner}: `prefix` must be a string; received {prefix!r}.")
    return prefix + "_" if prefix[-1:].isalnum() else prefix


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; received {value!r}.")


def _labels(y):
    labels = np.asarray(keras.ops.convert_to_numpy(y))
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = np.argmax(labels, axis=-1)
    labels = labels.reshape(-1) if labels.ndim == 2 else labels
    if labels.ndim != 1 or not len(labels):
        raise ValueError(
            "LayerwiseCollapse: `y` must be non-empty integer labels (n,) or (n, 1), or one-hot "
            f"labels (n, num_classes); received shape {np.shape(y)}."
        )
    if labels.dtype.kind not in "iub" and not np.all(np.isfinite(labels) & (labels % 1 == 0)):
        raise ValueError("LayerwiseCollapse: `y` must hold integer class labels.")
    return labels.astype("int32")


def _layer_output(backbone, name):
    """The symbolic output of the backbone's layer `name`, or an error naming it."""
    try:
        layer = backbone.get_layer(name)
    except ValueError:
        known = [layer.name for layer in backbone.layers]
        raise ValueError(
            f"LayerwiseCollapse: the backbone {backbone.name!r} has no layer {name!r}; its "
            f"layers are {known}."
        ) from None
    try:
        output = layer.output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"LayerwiseCollapse: layer {name!r} has no single output in the backbone's graph "
            f"(a layer called several times, or not connected): {error}"
        ) from None
    if not isinstance(output, keras.KerasTensor) or len(output.shape) < 2:
        raise ValueError(
            f"LayerwiseCollapse: layer {name!r} must output one tensor of features (batch, d) "
            f"or feature maps (batch, ..., channels); it outputs {output!r}."
        )
    return output


def _graph_backbone(backbone):
    """The backbone when it has a layer graph; an error saying why otherwise."""
    inputs = getattr(backbone, "inputs", None) if isinstance(backbone, keras.Model) else None
    if not inputs and isinstance(backbone, keras.Sequential):
        raise ValueError(
            f"LayerwiseCollapse: the Sequential backbone {backbone.name!r} is not built; give it "
            "a keras.Input (or build it) so that its layers have symbolic outputs."
        )
    if not inputs:
        raise ValueError(
            "LayerwiseCollapse reads intermediate layers through the backbone's layer graph: it "
            "needs a functional or Sequential keras.Model backbone (built, with known inputs). "
            f"The backbone {getattr(backbone, 'name', '')!r} ({type(backbone).__name__}) has "
            "none: a subclassed model's layers are not connected symbolically. Build the "
            "backbone with the functional API (keras.Input ... keras.Model(inputs, outputs))."
        )
    return backbone


class LayerwiseCollapse(keras.callbacks.Callback):
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
    (`LAYER_MEASURES`):

    - `nc1`, `cdnv` (`keras_nc.ops.neural_collapse_measures`);
    - `ncc_accuracy`: fraction of the set whose nearest class mean (at that
      layer) is its label: the "linear separability" of the layer;
    - `mir`, `hdr`: the class pairing (`keras_nc.ops.class_pairing_ratios`):
      the `C x C` cosine Gram of the layer's centred class means against that
      of the final head's rows. Both Grams are `C x C` whatever the layer's
      width, so the ratios are defined at every layer: they say how close the
      geometry of the layer's class means is to that of the classifier;
    - `feature_entropy`, `effective_rank`: matrix entropy (nats) of the cosine
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
    (`layerwise_stem_relu_nc1`, ...), so `keras.callbacks.CSVLogger` and
    `TensorBoard` placed after it write them (and `EarlyStopping` can watch
    them with an explicit `mode`: `"max"` for `ncc_accuracy`, `mir`,
    `effective_rank` and `rank_me`, `"min"` for the others; these are logs, not
    Keras metrics, so `mode="auto"` cannot tell); `history` holds one row per
    (epoch, layer); `csv_path` writes those rows (rewritten at every
    recording) and `plot_path` a figure at the end of training
    (`keras_nc.plotting.plot_layerwise`).

    Epochs: with `epochs` (1-based numbers) exactly those; otherwise after the
    first and the last epoch of each `fit` and after every epoch whose number
    is a multiple of `every`. Numbers continue across `fit` calls as in
    `CollapseMonitor`.

    The model is a `keras_nc.models.CollapseClassifier` whose backbone is a
    functional or Sequential `keras.Model`, or a plain functional classifier
    (split with `CollapseClassifier.from_model`, as `CollapseMonitor` does). The
    layers are checked when `fit` starts (`set_model`, or `on_train_begin` for a
    backbone built by the first batch): unknown names, layers without a single
    tensor output and subclassed backbones (no layer graph) raise a
    `ValueError` naming the layer or the backbone.

    Args:
        x: inputs (an array, or a dict or list of arrays).
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

    def __init__(self, x, y, layers=None, every=1, epochs=None, batch_size=256, center=True,
                 prefix="layerwise_", csv_path=None, plot_path=None, features_layer=None,
                 head_layer=None):  # fmt: skip
        super().__init__()
        _check_positive_int(every, "every")
        _check_positive_int(batch_size, "batch_size")
        if epochs is not None:
            epochs = list(epochs)
            for value in epochs:
                _check_positive_int(value, "epochs")
        if layers is not None and (
            isinstance(layers, str) or not all(isinstance(n, str) for n in layers) or not layers
        ):
            raise ValueError(
                f"`layers` must be a non-empty list of layer names; received {layers!r}."
            )
        self.x, self.y = x, _labels(y)
        sizes = {int(leaf.shape[0]) for leaf in keras.tree.flatten(x)}
        if sizes != {len(self.y)}:
            raise ValueError(
                f"LayerwiseCollapse: `x` and `y` must hold the same number of samples; received "
                f"{sorted(sizes)} inputs and {len(self.y)} labels."
            )
        self.layers = None if layers is None else list(layers)
        self.every, self.epochs, self.batch_size = every, epochs, batch_size
        self.center = check_flag(center, "center")
        self.prefix = log_prefix(prefix, "LayerwiseCollapse")
        self.csv_path, self.plot_path = csv_path, plot_path
        self.features_layer, self.head_layer = features_layer, head_layer
        self.history, self.seconds = [], []
        self._classifier = self._extractor = None
        self._last_epoch, self._epoch_offset = 0, None

    def set_model(self, model):
        super().set_model(model)
        self._classifier = collapse_view(
            model, self.features_layer, self.head_layer, "LayerwiseCollapse"
        )
        num_classes = self._classifier.num_classes
        if self.y.min() < 0 or self.y.max() >= num_classes:
            raise ValueError(
                f"LayerwiseCollapse: labels must be in [0, {num_classes}); received labels from "
                f"{self.y.min()} to {self.y.max()}."
            )
        self._extractor = None
        backbone = self._classifier.backbone
        if getattr(backbone, "built", True):  # else in on_train_begin, once built
            self._build_extractor()

    def _build_extractor(self):
        backbone = _graph_backbone(self._classifier.backbone)
        names = self.layers if self.layers is not None else block_outputs(backbone)
        outputs = [_layer_output(backbone, name) for name in names]
        inputs = backbone.inputs[0] if len(backbone.inputs) == 1 else backbone.inputs
        self._extractor = keras.Model(inputs, outputs, name="layerwise_extractor")
        self.layer_names = list(names)
        self.widths = [int(output.shape[-1]) for output in outputs]

    def on_train_begin(self, logs=None):
        self._epoch_offset = None
        if self._extractor is None:  # a backbone built by the first batch: build it now
            inputs, _ = next(self._batches())
            self._classifier.extract_features(inputs, training=False)
            self._build_extractor()

    def _batches(self):
        for start in range(0, len(self.y), self.batch_size):
            rows = slice(start, start + self.batch_size)
            yield keras.tree.map_structure(lambda a, r=rows: a[r], self.x), self.y[rows]

    def layer_features(self, inputs):
        """Pooled features `(n, d_l)` of each chosen layer for a batch (float32 NumPy)."""
        # `predict_on_batch`: the backend's compiled, gradient-free inference path.
        outputs = self._extractor.predict_on_batch(inputs)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        pooled = []
        for output in outputs:
            output = self._classifier.pool_features(output)  # its data_format
            pooled.append(np.asarray(ops.convert_to_numpy(output), dtype="float32"))
        return pooled

    def _first_pass(self, num_classes):
        totals = None
        for x, y in self._batches():
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
        for x, y in self._batches():
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
        return [c / len(self.y) for c in correct], normalised

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
            "mir": mir,
            "hdr": hdr,
            "feature_entropy": entropy,
            "effective_rank": ops.exp(entropy),
            "rank_me": nc_ops.rank_me_of_gram(stats["second_moment"]),
            "alpha_req": nc_ops.alpha_req_of_gram(covariance),
        }
        return {k: float(ops.convert_to_numpy(v)) for k, v in result.items()}

    def evaluate(self, epoch):
        """Records the profile now; returns the rows added to `history`.

        Args:
            epoch: 0-based index of the epoch just finished.
        """
        start = time.perf_counter()
        classifier = self._classifier
        self.model  # noqa: B018 (on JAX, this syncs the training state into the variables)
        if self._extractor is None:
            self._build_extractor()
        num_classes = classifier.num_classes
        head = np.asarray(ops.convert_to_numpy(classifier.head_rows()), "float64")
        totals = self._first_pass(num_classes)
        accuracies, normalised = self._second_pass(totals, num_classes)
        rows = []
        for depth, name in enumerate(self.layer_names):
            measures = self._layer_measures(totals[depth], normalised[depth], head)
            measures["ncc_accuracy"] = accuracies[depth]
            row = {"epoch": int(epoch) + 1, "layer": name, "depth": depth,
                   "width": self.widths[depth]}  # fmt: skip
            row.update({key: measures[key] for key in LAYER_MEASURES})
            rows.append(row)
        self.history.extend(rows)
        self.seconds.append(time.perf_counter() - start)
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

    def _due(self, epoch):
        first = self._epoch_offset is None
        if first:
            self._epoch_offset = max(0, self._last_epoch - epoch)
        number = epoch + 1 + self._epoch_offset
        self._last_epoch = number
        if self.epochs is not None:
            return number if number in self.epochs else None
        last = (self.params or {}).get("epochs") == epoch + 1
        return number if first or last or number % self.every == 0 else None

    def on_epoch_end(self, epoch, logs=None):
        number = self._due(epoch)
        if number is None:
            return
        rows = self.evaluate(number - 1)
        if logs is not None:
            for row in rows:
                logs.update(
                    {f"{self.prefix}{row['layer']}_{key}": row[key] for key in LAYER_MEASURES}
                )

    def on_train_end(self, logs=None):
        if self.plot_path and self.history:
            from keras_nc import plotting

            plotting.plot_layerwise(self.history, self.plot_path)


def depth_slopes(history, measure="nc1"):
    """Least-squares slope of `log10(measure)` against depth, per recorded epoch.

    A slope `s` means the measure is multiplied by `10**s` per layer: a
    geometric decay through depth has a straight line on a log scale and
    `s < 0`. Non-positive values are left out.

    Args:
        history: `LayerwiseCollapse.history` rows.
        measure: a positive measure of `LAYER_MEASURES` (NC1, CDNV).

    Returns:
        `{epoch: (slope, r_squared)}`; NaN when fewer than two points.

    Example:

    >>> rows = [{"epoch": 1, "depth": d, "nc1": 10.0 ** -d} for d in range(3)]
    >>> depth_slopes(rows)
    {1: (-1.0, 1.0)}
    """
    fits = {}
    for epoch in sorted({row["epoch"] for row in history}):
        points = [(r["depth"], r[measure]) for r in history if r["epoch"] == epoch]
        points = [(d, math.log10(v)) for d, v in points if v > 0 and math.isfinite(v)]
        if len(points) < 2:
            fits[epoch] = (math.nan, math.nan)
            continue
        depth, logs = np.array(points, dtype="float64").T
        slope, intercept = np.polyfit(depth, logs, 1)
        residual = np.sum((logs - (slope * depth + intercept)) ** 2)
        spread = np.sum((logs - logs.mean()) ** 2)
        r2 = 1.0 - residual / spread if spread > 0 else 1.0
        fits[epoch] = (round(float(slope), 6), round(float(r2), 6))
    return fits
