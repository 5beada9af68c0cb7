"""Figures of the Neural Collapse measures (needs matplotlib: `pip install keras-nc[plot]`).

matplotlib is imported inside the functions that draw, so importing this module
(or `keras_nc`) does not import it. Figures are drawn on a
`matplotlib.figure.Figure` (no `pyplot`), so drawing a file never changes the
pyplot backend of the session (e.g. a notebook's).
"""

import warnings

import keras

from keras_nc import theory
from keras_nc.callbacks.evaluator import RENAMED_KEYS
from keras_nc.compat.backend import backend_name


def collapse_panels(num_classes):
    """The panels of `plot_collapse_history`: `(title, keys, reference, reference_label)`.

    `keys` name the measures of `keras_nc.callbacks.MEASURES` drawn in the
    panel; `reference` is the value at Neural Collapse drawn as a dotted line
    (`None`: no line); MIR* and log(C-1) are drawn only when `num_classes >= 3`.

    Example:

    >>> from keras_nc.plotting import collapse_panels
    >>> title, keys, reference, label = collapse_panels(10)[0]
    >>> keys, round(reference, 6), label
    (['mir_class'], 0.952351, 'MIR*')
    """
    reference = num_classes >= 3
    return [
        ("MIR (class pairing)", ["mir_class"],
         theory.mir_at_collapse(num_classes) if reference else None, "MIR*"),
        ("HDR (class pairing)", ["hdr_class"], 0.0, "HDR* = 0"),
        ("Matrix entropy (nats)", ["matrix_entropy", "head_entropy"],
         theory.entropy_at_collapse(num_classes) if reference else None, "log(C-1)"),
        ("NC1 and CDNV (log scale)", ["nc1", "cdnv"], None, None),
        ("NC2 / NC3", ["etf_error", "equinorm", "self_duality"], 0.0, "0 at collapse"),
        ("NC4: NCC agreement", ["ncc_agreement"], 1.0, "1 at collapse"),
    ]  # fmt: skip


def draw_panel(
    ax, title, curves, reference=None, reference_label=None, log_scale=False, integer_x=True
):
    """Draws `curves` and a reference line on the matplotlib axes `ax`.

    Args:
        ax: a `matplotlib.axes.Axes`.
        title: panel title.
        curves: `{label: (epochs, values)}`.
        reference: optional value drawn as a dotted horizontal line.
        reference_label: legend label of the reference line.
        log_scale: logarithmic y axis (when every value is positive).
        integer_x: ticks of the x axis on integers only (epochs and steps:
            a run of 2 or 3 epochs gets no tick at epoch 1.5). A later
            `ax.set_xscale("log")` or `ax.set_xticks(...)` replaces them.

    Example:

    ```python
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    draw_panel(ax, "NC1", {"nc1": ([1, 2, 3], [0.9, 0.4, 0.1])}, 0.0, "0 at collapse")
    ```
    """
    for label, (epochs, values) in curves.items():
        ax.plot(epochs, values, marker=".", label=label)
    if reference is not None:
        ax.axhline(reference, color="k", lw=1, ls=":", label=reference_label)
    values = [v for _, vs in curves.values() for v in vs]
    if log_scale and values and all(v > 0 for v in values):
        ax.set_yscale("log")
    ax.set(title=title, xlabel="epoch")
    if integer_x:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def new_figure(rows, columns, figsize):
    """A matplotlib `Figure` with a `rows x columns` grid of axes, outside pyplot.

    Args:
        rows: number of rows of panels.
        columns: number of columns of panels.
        figsize: `(width, height)` in inches.

    Returns:
        A tuple `(figure, axes)`, `axes` a `(rows, columns)` array. Save with
        `figure.savefig(path)`; nothing is shown and pyplot's state is untouched.

    Example:

    ```python
    fig, axes = new_figure(1, 2, (8, 3))
    draw_panel(axes[0, 0], "loss", {"loss": ([1, 2], [0.9, 0.5])})
    fig.savefig("loss.png")
    ```
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "keras_nc.plotting needs matplotlib: `pip install keras-nc[plot]` "
            "(or `pip install matplotlib`)."
        ) from None
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(rows, columns, squeeze=False)


def plot_collapse_history(rows, num_classes, path=None, title=None):
    """Plots `CollapseMonitor.history` with the Neural Collapse reference values.

    Six panels: class-pairing MIR (`mir_class`, with MIR*), HDR (`hdr_class`,
    with 0), the feature and head entropies (with log(C-1)), NC1 and CDNV
    (log scale), NC2/NC3 and NC4.
    Epoch ticks fall on integers.

    Args:
        rows: list of dicts with an `epoch` key and the measures of
            `keras_nc.callbacks.MEASURES` (`CollapseMonitor.history`). Rows of
            keras-nc 0.1 (keys `mir`, `hdr`, `feature_entropy`) are drawn too,
            with a `DeprecationWarning`.
        num_classes: `C`, for MIR* and log(C-1) (drawn when `C >= 3`).
        path: optional output path (PNG, or any format `Figure.savefig`
            reads from the extension); `None` saves nothing.
        title: optional figure title.

    Returns:
        The `matplotlib.figure.Figure` (not attached to pyplot: show it in a
        notebook by evaluating it, or save it with `figure.savefig`).

    Example:

    ```python
    monitor = CollapseMonitor(x_sub, y_sub)
    model.fit(x, y, epochs=30, callbacks=[monitor])
    plot_collapse_history(monitor.history, num_classes=10, path="collapse.png")
    figure = plot_collapse_history(monitor.history, num_classes=10)  # no file
    ```
    """
    rows = _history_rows(rows, "plot_collapse_history", "CollapseMonitor")
    epochs = [row["epoch"] for row in rows]
    fig, axes = new_figure(2, 3, (15, 8))
    panels = collapse_panels(num_classes)
    for ax, (name, keys, ref, ref_label) in zip(axes.flat, panels, strict=True):
        curves = {key: (epochs, [row[key] for row in rows]) for key in keys}
        draw_panel(ax, name, curves, ref, ref_label, log_scale=keys[0] == "nc1")
    fig.suptitle(title or f"Neural Collapse measures ({backend_name()})")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_layerwise(rows, path=None,
                   measures=("nc1", "ncc_accuracy", "mir_class", "hdr_class", "rank_me"),
                   title=None):  # fmt: skip
    """Plots `LayerwiseCollapse.history`: each measure against depth and against epochs.

    Top row: one panel per measure against depth (the layers, shallow to
    deep), one line per recorded epoch. Bottom row: the same measure against
    the epoch, one line per layer. NC1 and CDNV are drawn on a log scale.

    Args:
        rows: list of dicts with `epoch`, `layer`, `depth` and the measures
            (`keras_nc.callbacks.LayerwiseCollapse.history`).
        path: optional output path (PNG, or any format `Figure.savefig`
            reads from the extension); `None` saves nothing.
        measures: names of the measures to draw (`keras_nc.layerwise.LAYER_MEASURES`).
            The names and rows of keras-nc 0.1 (`mir`, `hdr`, `feature_entropy`)
            still work, with a `DeprecationWarning`.
        title: optional figure title.

    Returns:
        The `matplotlib.figure.Figure` (not attached to pyplot).

    Example:

    ```python
    profile = LayerwiseCollapse(x_sub, y_sub, every=10)
    model.fit(x, y, epochs=50, callbacks=[profile])
    plot_layerwise(profile.history, "layers.png")
    ```
    """
    rows = _history_rows(rows, "plot_layerwise", "LayerwiseCollapse")
    measures = [_new_key(measure, "plot_layerwise") for measure in measures]
    epochs = sorted({row["epoch"] for row in rows})
    layers = [r["layer"] for r in sorted({r["depth"]: r for r in rows}.values(),
                                         key=lambda r: r["depth"])]  # fmt: skip
    fig, axes = new_figure(2, len(measures), (3.6 * len(measures), 7))
    for column, measure in enumerate(measures):
        log_scale = measure in ("nc1", "cdnv")
        by_epoch = {
            f"epoch {e}": ([r["depth"] for r in rows if r["epoch"] == e],
                           [r[measure] for r in rows if r["epoch"] == e])
            for e in epochs
        }  # fmt: skip
        top = axes[0, column]
        draw_panel(top, f"{measure} vs depth", by_epoch, log_scale=log_scale)
        top.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
        top.set_xlabel("")
        by_layer = {
            name: ([r["epoch"] for r in rows if r["layer"] == name],
                   [r[measure] for r in rows if r["layer"] == name])
            for name in layers
        }  # fmt: skip
        draw_panel(axes[1, column], f"{measure} vs epoch", by_layer, log_scale=log_scale)
    fig.suptitle(title or f"Layer-wise collapse profile ({backend_name()})")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def _history_rows(rows, function, callback):
    """`rows` as a list of dicts; a clear error for Keras' `History` (the wrong history)."""
    if isinstance(rows, (keras.callbacks.History, dict)):
        received = "a dict" if isinstance(rows, dict) else "the `History` returned by `fit`"
        raise TypeError(
            f"`{function}` draws the `history` attribute of a `{callback}` callback (a list of "
            f"dicts, one per evaluation), e.g. `{function}(callback.history, ...)`; received "
            f"{received}."
        )
    rows = list(rows)
    if not all(isinstance(row, dict) for row in rows):
        raise TypeError(
            f"`{function}` expects a list of dicts (`{callback}.history`); received items of "
            f"types {sorted({type(row).__name__ for row in rows})}."
        )
    if any(old in row and new not in row for row in rows for old, new in RENAMED_KEYS.items()):
        warnings.warn(
            f"`{function}`: rows with the keys of keras-nc 0.1 (`mir`, `hdr`, `feature_entropy`) "
            "are deprecated since keras-nc 0.2.0; the class-pairing values are now "
            "`mir_class`, `hdr_class` and the features' entropy `matrix_entropy` "
            "(see the log keys page).",
            DeprecationWarning,
            stacklevel=3,
        )
        rows = [_renamed_row(row) for row in rows]
    return rows


def _renamed_row(row):
    """A copy of `row` with the keys of keras-nc 0.1 under their new names."""
    renamed = dict(row)
    for old, new in RENAMED_KEYS.items():
        if old in renamed and new not in renamed:
            renamed[new] = renamed.pop(old)
    return renamed


def _new_key(measure, function):
    """The 0.2.0 name of a measure named as in keras-nc 0.1, with a warning."""
    if measure not in RENAMED_KEYS:
        return measure
    warnings.warn(
        f"`{function}`: the measure `{measure}` is deprecated since keras-nc 0.2.0; use "
        f"`{RENAMED_KEYS[measure]}`.",
        DeprecationWarning,
        stacklevel=3,
    )
    return RENAMED_KEYS[measure]
