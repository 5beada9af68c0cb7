"""The CLIP program's measures and its before/after table (`recipes.clip.train`).

On the embedded images of a split and a classifier's head rows: accuracy,
class-pairing MIR and HDR (docs/concepts.md) and CMA's within-class entropy
(arXiv 2409.16767), as `python -m recipes.clip` reports them before and after
fine-tuning (docs/clip.md).

Example:

```python
features, labels = embed(model, test_dataset)
measure(features, labels, current_head_weights(model))
# {"accuracy": ..., "mir": ..., "hdr": ..., "within_class_entropy": ...}
```
"""

import csv

import keras
import numpy as np

from keras_nc import ops as nc_ops

SPLITS = ("test", "train")


def within_class_entropy(features, head_weights, labels):
    """CMA's within-class entropy (arXiv 2409.16767), averaged over the classes present.

    For class `c`: the normalised matrix entropy of the cosine Gram of
    `{z_i : y_i = c} U {t_c}` (`keras_nc.ops.feature_entropy`, which uses the
    smaller of the Gram and the `d x d` side). One class at a time: a whole
    test set is too large for `keras_nc.ops.cma_entropy`'s one-batch layout.
    """
    labels = np.asarray(labels).reshape(-1)
    values = []
    for c in np.unique(labels):
        group = np.vstack([features[labels == c], head_weights[c : c + 1]])
        values.append(float(nc_ops.feature_entropy(group.astype("float32"), normalize=True)))
    return float(np.mean(values))


def class_pairing_ratios(features, labels, head_weights):
    """Class-pairing MIR and HDR (docs/concepts.md), as `CollapseMonitor` reports them.

    The cosine Gram of the class means (centred by the global mean) of the
    classes present against the cosine Gram of their head weights
    (`keras_nc.ops.class_statistics` and `keras_nc.ops.class_pairing_ratios`).
    """
    head_weights = np.asarray(head_weights, "float32")
    stats = nc_ops.class_statistics(
        np.asarray(features, "float32"), labels, head_weights.shape[0], second_moment=False
    )
    mir, hdr = nc_ops.class_pairing_ratios(stats["counts"], stats["sums"], head_weights)
    return float(mir), float(hdr)


def embed(model, dataset):
    """Image features `(n, d)` (compiled `predict`) and labels of a dataset in order."""
    features = model.backbone.predict(dataset.map(lambda x, y: x), verbose=0)
    labels = np.concatenate([np.asarray(y) for _, y in dataset])
    return np.asarray(features, np.float64), labels


def measure(features, labels, head_weights):
    """Accuracy, class-pairing MIR/HDR and within-class entropy with the given head weights."""
    head_weights = np.asarray(head_weights, np.float64)
    logits = features @ head_weights.T  # the logit scale does not change the argmax
    mir, hdr = class_pairing_ratios(features, labels, head_weights)
    return {
        "accuracy": float(np.mean(np.argmax(logits, axis=1) == labels)),
        "mir": mir,
        "hdr": hdr,
        "within_class_entropy": within_class_entropy(features, head_weights, labels),
    }


def current_head_weights(model):
    """The model's head weights `(C, d)` as NumPy: learned prompts' embeddings or the head."""
    return keras.ops.convert_to_numpy(model.head_weights).astype("float64")


def table_rows(before, after, zero_shot):
    """The `(measure, before, after)` rows of the table (`after` is `None` for zero-shot)."""
    rows = [("zero-shot accuracy (templates)", zero_shot["test"]["accuracy"], None)]
    names = {
        "accuracy": "accuracy",
        "mir": "MIR, class pairing",
        "hdr": "HDR, class pairing",
        "within_class_entropy": "within-class entropy (CMA)",
    }
    for split in SPLITS:
        for key, label in names.items():
            rows.append((f"{split}: {label}", before[split][key], after[split][key]))
    return rows


def format_table(rows):
    """The rows as aligned text (a missing number, e.g. a NaN measure, as `nan`)."""
    lines = [f"{'measure':<38} {'before':>8} {'after':>8}", "-" * 56]
    for name, before, after in rows:
        after_text = "" if after is None else f"{after:8.4f}"
        lines.append(f"{name:<38} {before:8.4f} {after_text:>8}")
    return "\n".join(lines)


def evaluate(model, datasets, head_weights=None):
    """`measure` of every split; returns `(results, embedded)` (the embedded splits too).

    Args:
        model: a `CLIPClassifier`.
        datasets: `{split: dataset}` of `(images, labels)` batches.
        head_weights: the head rows to measure with; default: the model's.
    """
    head = current_head_weights(model) if head_weights is None else head_weights
    results, embedded = {}, {}
    for split, dataset in datasets.items():
        embedded[split] = embed(model, dataset)
        results[split] = measure(*embedded[split], head)
    return results, embedded


def write_csv(path, rows):
    """Writes the table as CSV (`measure,before,after`)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["measure", "before", "after"])
        for name, value_before, value_after in rows:
            writer.writerow([name, value_before, "" if value_after is None else value_after])
