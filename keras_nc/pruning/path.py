"""A model's loss, accuracy and collapse measures along a range of sparsities.

`sparsity_path` prunes copies of a model (`magnitude_prune`), optionally
fine-tunes each, evaluates them, and returns one row per sparsity;
`plot_sparsity` draws the rows. The measures are those of arXiv 2409.16767
(`keras_nc.metrics`); docs/pruning.md shows a study made with them.
"""

import math

import keras
import numpy as np

from keras_nc.pruning.magnitude import check_scope, check_sparsity, magnitude_prune

DEFAULT_KEYS = ("accuracy", "mir", "hdr", "nc1")


def sparsity_path(
    model,
    data,
    sparsities,
    *,
    scope="global",
    include=None,
    fine_tune=None,
    metrics=None,
    loss=None,
    batchnorm_data=None,
    batch_size=None,
    verbose=1,
):
    """Evaluates pruned copies of `model` at each of `sparsities`.

    For each sparsity `s`, `magnitude_prune(model, s, scope=scope,
    include=include)` makes a pruned copy (`model` is never changed);
    `fine_tune(pruned_model, masks)`, when given, trains it (with
    `keras_nc.callbacks.KeepPruned(masks)` to keep the zeros); then
    `keras_nc.paths.evaluate_model` evaluates it on `data`: an uncompiled
    copy is compiled with `loss` and `metrics` where given and otherwise like
    `model` (which then must be compiled); a copy that `fine_tune` compiled
    is evaluated as compiled.

    Args:
        model: a built Keras model (see `magnitude_prune`).
        data: `(x, y)` arrays or a dataset, as `evaluate_model` takes.
        sparsities: the fractions of prunable weights to zero, each in [0, 1).
        scope: `"global"` (one magnitude threshold) or `"layer"` (per tensor).
        include: which weights are prunable (see `prunable_weights`).
        fine_tune: optional callable `(pruned_model, masks) -> None` run
            before each evaluation.
        metrics: metrics to evaluate with (as `compile` takes them).
        loss: loss to evaluate with.
        batchnorm_data: if given, data (as `keras_nc.paths.interpolate` takes
            it) on which each pruned (and fine-tuned) copy's BatchNormalization
            statistics are recomputed before it is evaluated
            (`keras_nc.paths.recompute_batchnorm_statistics`): pruning changes
            the activations the stored moving statistics describe.
        batch_size: the evaluation's batch size for array `data` (Keras'
            default, 32, when None); per-batch measures such as sample-pairing
            `MIR`/`HDR` depend on it.
        verbose: 1 shows a `keras.utils.Progbar` over the sparsities, 0 nothing.

    Returns:
        A list of dicts, one per sparsity in the given order:
        `{"sparsity": s, "zeros": z, <evaluate_model's results>}`, `z` the
        measured fraction of zeros among the prunable weights.

    Example:

    >>> import keras, numpy as np
    >>> inputs = keras.Input((6,))
    >>> model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    >>> x, y = np.random.default_rng(0).normal(size=(12, 6)), np.arange(12) % 3
    >>> rows = sparsity_path(model, (x, y), [0.0, 0.5], verbose=0, metrics=["accuracy"],
    ...                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> for row in rows:
    ...     print(row["sparsity"], round(row["zeros"], 3))
    0.0 0.0
    0.5 0.5
    """
    from keras_nc.paths import evaluate_model, recompute_batchnorm_statistics

    sparsities = [check_sparsity(s) for s in sparsities]
    check_scope(scope)
    reference = model if getattr(model, "compiled", False) else None
    bar = keras.utils.Progbar(len(sparsities), unit_name="sparsity") if verbose else None
    rows = []
    for step, sparsity in enumerate(sparsities):
        pruned, masks = magnitude_prune(model, sparsity, scope=scope, include=include)
        if fine_tune is not None:
            fine_tune(pruned, masks)
        if batchnorm_data is not None:
            recompute_batchnorm_statistics(pruned, batchnorm_data, batch_size=batch_size)
        values = evaluate_model(
            pruned, data, reference=reference, metrics=metrics, loss=loss, batch_size=batch_size
        )
        rows.append({"sparsity": sparsity, "zeros": _zeros(pruned, masks), **values})
        if bar is not None:
            shown = [(k, v) for k, v in values.items() if k in ("loss", *DEFAULT_KEYS)]
            bar.update(step + 1, values=[("sparsity", sparsity), *shown], finalize=None)
    return rows


def _zeros(model, masks):
    """The fraction of exact zeros among the masked weights of `model`."""
    by_path = {variable.path: variable for variable in model.weights}
    values = [keras.ops.convert_to_numpy(by_path[path]) for path in masks]
    total = sum(v.size for v in values)
    return float(sum(int(np.sum(v == 0)) for v in values) / total) if total else math.nan


def plot_sparsity(path, keys=DEFAULT_KEYS, path_png=None, labels=None):
    """Plots `sparsity_path` rows: one panel per key, against sparsity.

    Args:
        path: the rows of `sparsity_path`, or a dict `{label: rows}` to draw
            several paths (e.g. with and without fine-tuning) on the same panels.
        keys: the measures to draw, one panel each (those that no row has are
            skipped).
        path_png: optional file to save the figure to.
        labels: unused unless `path` is a list: the legend label of its curve.

    Returns:
        A matplotlib `Figure` (needs matplotlib, `pip install keras-nc[plot]`).

    Example:

    ```python
    rows = keras_nc.pruning.sparsity_path(model, (x_test, y_test), [0, 0.5, 0.9])
    keras_nc.pruning.plot_sparsity(rows, path_png="sparsity.png")
    ```
    """
    from keras_nc.plotting import new_figure

    paths = path if isinstance(path, dict) else {labels or "pruned": path}
    keys = [k for k in keys if any(k in row for rows in paths.values() for row in rows)]
    if not keys:
        raise ValueError(f"No row has any of the keys to plot; rows hold {_row_keys(paths)}.")
    figure, axes = new_figure(1, len(keys), (3.2 * len(keys), 3.0))
    for ax, key in zip(axes[0], keys, strict=True):
        for label, rows in paths.items():
            points = [(row["sparsity"], row[key]) for row in rows if row.get(key) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=label)
        ax.set_xlabel("sparsity")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    figure.tight_layout()
    if path_png:
        figure.savefig(path_png)
    return figure


def _row_keys(paths):
    return sorted({key for rows in paths.values() for row in rows for key in row})
