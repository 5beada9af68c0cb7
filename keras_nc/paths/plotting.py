"""The figure of an interpolation path (`plot_interpolation`; needs matplotlib).

matplotlib is imported inside the function, so `import keras_nc` needs only
Keras and NumPy.
"""

from keras_nc.paths import barriers

# Keys whose barrier is annotated: (higher is better, label).
BARRIER_KEYS = {"loss": (False, "loss barrier"), "accuracy": (True, "accuracy barrier")}
TITLES = {"loss": "Loss", "accuracy": "Accuracy", "mir": "MIR", "hdr": "HDR", "nc1": "NC1"}


def plot_interpolation(path, keys=("loss", "accuracy", "mir", "hdr"), path_png=None, title=None):
    """Draws the values of `path` against alpha, one panel per key present.

    Each panel shows the values along the path and, dotted, the straight
    line between the end points' values; the loss and accuracy panels
    state their barrier (`loss_barrier`, `accuracy_barrier`).

    Args:
        path: rows as returned by `interpolation_path`.
        keys: the keys drawn, in order; keys absent from the path are skipped.
        path_png: optional file name; the figure is saved there.
        title: optional title of the figure.

    Returns:
        A `matplotlib.figure.Figure` (drawn outside pyplot).

    Raises:
        ValueError: when none of `keys` is in the path.

    Example:

    >>> from keras_nc.paths import plot_interpolation
    >>> path = [{"alpha": a, "loss": 1.0 + a * (1 - a)} for a in (0.0, 0.5, 1.0)]
    >>> figure = plot_interpolation(path)
    >>> len(figure.axes)
    1
    """
    from keras_nc.plotting import new_figure

    rows = sorted(path, key=lambda row: row["alpha"])
    present = [key for key in keys if rows and all(key in row for row in rows)]
    if not present:
        available = sorted(key for key in (rows[0] if rows else {}) if key != "alpha")
        raise ValueError(f"None of {list(keys)} is in the path; its keys: {available}.")
    figure, axes = new_figure(1, len(present), (3.6 * len(present), 3.2))
    alphas = [row["alpha"] for row in rows]
    ends = {row["alpha"]: row for row in rows if row["alpha"] in (0.0, 1.0)}
    for ax, key in zip(axes[0], present, strict=True):
        ax.plot(alphas, [row[key] for row in rows], marker=".", label=key)
        if len(ends) == 2:
            ax.plot([0.0, 1.0], [ends[0.0][key], ends[1.0][key]], "k:", lw=1, label="line")
        ax.set(title=TITLES.get(key, key), xlabel="alpha")
        if key in BARRIER_KEYS and len(ends) == 2:
            higher, label = BARRIER_KEYS[key]
            value = barriers.barrier(rows, key, higher_is_better=higher)
            ax.text(0.03, 0.95, f"{label} {value:.3g}", transform=ax.transAxes, va="top")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    if path_png is not None:
        figure.savefig(path_png, dpi=100)
    return figure
