"""`keras_nc.plotting`: the collapse history figure, old history rows, no matplotlib needed."""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_nc import plotting
from keras_nc.callbacks import MEASURES, CollapseMonitor
from tests.helpers import BLOCK_MATPLOTLIB, small_classifier_and_data


def test_plot_collapse_history_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [
        {"epoch": e, **{key: 1.0 / e for key in MEASURES}} for e in (1, 2, 3)
    ]  # fmt: skip
    path = str(tmp_path / "collapse.png")
    plotting.plot_collapse_history(rows, num_classes=4, path=path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # The old location still works, with a warning naming the new one.
    with pytest.warns(DeprecationWarning, match="keras_nc.plotting.plot_collapse_history"):
        from keras_nc.callbacks import plot_collapse_history
    assert plot_collapse_history is plotting.plot_collapse_history


def test_the_library_works_without_matplotlib(tmp_path):
    # Keras imports matplotlib itself when it is installed: block it instead.
    code = BLOCK_MATPLOTLIB + (
        "import keras_nc, keras_nc.callbacks, keras_nc.plotting\n"
        "try:\n"
        f"    keras_nc.plotting.plot_collapse_history([], 4, {str(tmp_path / 'c.png')!r})\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert "needs matplotlib: `pip install keras-nc[plot]`" in out.stdout, out.stderr[-2000:]


def test_history_rows_of_0_1_keys_read_with_a_warning_and_plotting_draws_old_rows():
    model, x, y = small_classifier_and_data()
    monitor = CollapseMonitor(x, y)
    monitor.set_model(model)
    row = monitor.evaluate(0)
    assert "mir" not in row and "feature_entropy" not in row
    with pytest.warns(DeprecationWarning, match=r'row\["mir_class"\]'):
        assert row["mir"] == row["mir_class"]
    with pytest.warns(DeprecationWarning, match="matrix_entropy"):
        assert row["feature_entropy"] == row["matrix_entropy"]
    with pytest.raises(KeyError):
        row["rank_me"]
    pytest.importorskip("matplotlib")
    renamed = {"mir_class": "mir", "hdr_class": "hdr", "matrix_entropy": "feature_entropy"}
    old = [{renamed.get(key, key): value for key, value in row.items()}]
    with pytest.warns(DeprecationWarning, match="keys of keras-nc 0.1"):
        figure = plotting.plot_collapse_history(old, num_classes=4)
    new = plotting.plot_collapse_history([row], num_classes=4)
    for old_axes, new_axes in zip(figure.axes, new.axes, strict=True):
        for old_line, new_line in zip(old_axes.lines, new_axes.lines, strict=True):
            np.testing.assert_array_equal(old_line.get_ydata(), new_line.get_ydata())
