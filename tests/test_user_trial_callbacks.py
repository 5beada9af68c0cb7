"""Issue 30 (a new user's trial), the callbacks and figures: items 12, 14 and 15.

- `import keras_nc` alone reaches every public submodule (`keras_nc.callbacks`,
  `keras_nc.plotting`, ...), in a fresh process, without matplotlib;
- `plot_collapse_history` / `plot_layerwise` return the figure (`path=None`
  saves nothing) and put epoch ticks on integers only;
- a logs prefix joins its keys as Keras joins `val_`: `prefix="val"` and
  `prefix="val_"` both give `val_mir_class` (`CollapseMonitor` and `LayerwiseCollapse`).
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_nc
from keras_nc import plotting
from keras_nc.callbacks import MEASURES, CollapseMonitor, LayerwiseCollapse
from keras_nc.layerwise import LAYER_MEASURES
from tests.helpers import BLOCK_MATPLOTLIB

PUBLIC_SUBMODULES = (
    "callbacks",
    "layerwise",
    "losses",
    "metrics",
    "models",
    "ops",
    "plotting",
    "sharding",
    "step",
    "theory",
)


def test_import_keras_nc_reaches_the_public_submodules_without_matplotlib():
    code = BLOCK_MATPLOTLIB + (
        "import keras_nc\n"  # nothing else: the submodules must come with it
        f"for name in {PUBLIC_SUBMODULES!r}:\n"
        "    assert name in keras_nc.__all__, name\n"
        "    getattr(keras_nc, name)\n"
        "print(keras_nc.callbacks.CollapseMonitor.__name__)\n"
        "print(keras_nc.callbacks.LayerwiseCollapse.__name__)\n"
        "print(keras_nc.plotting.plot_collapse_history.__name__)\n"
        "print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == [
        "CollapseMonitor",
        "LayerwiseCollapse",
        "plot_collapse_history",
        "False",
    ], out.stderr[-3000:]


def test_public_submodules_are_attributes_of_the_package():
    for name in PUBLIC_SUBMODULES:
        assert getattr(keras_nc, name).__name__ == f"keras_nc.{name}"


def _rows(epochs):
    return [{"epoch": e, **{key: 1.0 / e for key in MEASURES}} for e in epochs]


def _visible_ticks(axis_values, limits):
    low, high = sorted(limits)
    return [v for v in axis_values if low <= v <= high]


def test_plot_collapse_history_returns_the_figure_and_saves_only_with_a_path(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)  # a stray file written by path=None would land here
    figure = plotting.plot_collapse_history(_rows([1, 2, 3]), 4, path=None)
    assert isinstance(figure, Figure)
    assert os.listdir(tmp_path) == []
    assert len(figure.axes) == 6
    mir_axes = figure.axes[0]
    np.testing.assert_allclose(mir_axes.lines[0].get_ydata(), [1.0, 0.5, 1 / 3])
    assert plotting.plot_collapse_history(_rows([1, 2]), 4) is not None  # path by default None
    # With a path: the same Figure back, and the file.
    path = str(tmp_path / "collapse.png")
    saved = plotting.plot_collapse_history(_rows([1, 2, 3]), num_classes=4, path=path)
    assert isinstance(saved, Figure)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_collapse_history_refuses_the_history_returned_by_fit():
    pytest.importorskip("matplotlib")
    history = keras.callbacks.History()
    history.history = {"collapse_mir_class": [0.1, 0.2]}
    with pytest.raises(TypeError, match=r"`history` attribute of a `CollapseMonitor`"):
        plotting.plot_collapse_history(history, 4)
    with pytest.raises(TypeError, match="received a dict"):
        plotting.plot_collapse_history(history.history, 4)


@pytest.mark.parametrize("epochs", [[1, 2], [1, 2, 3], [1, 3, 5, 7]])
def test_epoch_ticks_are_integers_on_short_runs(epochs):
    pytest.importorskip("matplotlib")
    figure = plotting.plot_collapse_history(_rows(epochs), 4)
    figure.canvas.draw()  # the locators place their ticks
    for ax in figure.axes:
        ticks = _visible_ticks(ax.get_xticks(), ax.get_xlim())
        assert len(ticks) >= 2, (ax.get_title(), ticks)
        assert all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)


def test_plot_layerwise_returns_the_figure_with_integer_epoch_ticks(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    rows = [
        {"epoch": e, "layer": name, "depth": depth, **{key: 0.5 + depth for key in LAYER_MEASURES}}
        for e in (1, 2)
        for depth, name in enumerate(["stem", "block"])
    ]
    figure = plotting.plot_layerwise(rows, measures=("nc1", "mir_class"))
    figure.canvas.draw()
    assert os.listdir(tmp_path) == []
    by_epoch = [ax for ax in figure.axes if ax.get_title().endswith("vs epoch")]
    assert len(by_epoch) == 2
    for ax in by_epoch:
        ticks = _visible_ticks(ax.get_xticks(), ax.get_xlim())
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    path = str(tmp_path / "layers.png")
    plotting.plot_layerwise(rows, path, measures=("nc1",))
    assert os.path.getsize(path) > 0


def _classifier():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8).astype("int32")
    x = (rng.normal(size=(3, 6))[y] + 0.5 * rng.normal(size=(24, 6))).astype("float32")
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    features = keras.layers.Dense(4, activation="relu", name="features")(hidden)
    model = keras_nc.models.CollapseClassifier(keras.Model(inputs, features), num_classes=3)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model, x, y


@pytest.mark.parametrize(
    "prefix, expected",
    [
        ("val", "val_"),
        ("val_", "val_"),
        ("val_collapse", "val_collapse_"),
        ("collapse_", "collapse_"),
        ("probe/", "probe/"),
        ("", ""),
    ],
)
def test_collapse_monitor_joins_its_prefix_as_keras_joins_val(prefix, expected):
    model, x, y = _classifier()
    monitor = CollapseMonitor(x, y, prefix=prefix)
    logs = model.fit(x, y, batch_size=12, epochs=1, callbacks=[monitor], verbose=0).history
    for key in MEASURES:
        assert logs[expected + key] == [monitor.history[0][key]], key
    assert "valmir_class" not in logs and "val__mir_class" not in logs


def test_layerwise_collapse_joins_its_prefix_as_keras_joins_val():
    model, x, y = _classifier()
    layers = ["hidden", "features"]
    short, underscored = (
        LayerwiseCollapse(x, y, layers=layers, prefix="val"),
        LayerwiseCollapse(x, y, layers=layers, prefix="val_"),
    )
    logs = model.fit(x, y, epochs=1, callbacks=[short, underscored], verbose=0).history
    for layer in layers:
        for key in LAYER_MEASURES:
            assert f"val_{layer}_{key}" in logs, (layer, key)
    assert not any(name.startswith("valhidden") for name in logs)
    assert short.history == underscored.history


@pytest.mark.parametrize("callback", [CollapseMonitor, LayerwiseCollapse])
def test_a_prefix_that_is_not_a_string_is_refused(callback):
    x, y = np.zeros((4, 6), "float32"), np.arange(4) % 2
    with pytest.raises(ValueError, match=r"`prefix` must be a string; received 3"):
        callback(x, y, prefix=3)
