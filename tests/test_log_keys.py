"""docs/log_keys.md lists exactly the log keys keras-nc emits, with the metrics' directions.

A tiny `CollapseClassifier` is fitted for one epoch with every metric, both
collapse losses, `CollapseMonitor` and `LayerwiseCollapse`; the keys of its
`History` are compared with the tables of the page (in both directions), and
the page's direction of each metric key with the metric's own `direction`.
"""

import pathlib
import re

import keras
import numpy as np
import pytest

import keras_nc
from keras_nc import losses
from keras_nc import metrics as nc_metrics
from keras_nc.callbacks import MEASURES, CollapseMonitor, LayerwiseCollapse
from keras_nc.layerwise import LAYER_MEASURES

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "log_keys.md"
KERAS_KEYS = {"loss"}  # Keras' own
LAYERS = ("hidden", "features")


def _table():
    """`{key: direction}` of every table row of the page (first and last cells)."""
    rows = {}
    for line in PAGE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 4 or cells[0] in ("key", "---"):
            continue
        keys = re.findall(r"`([^`]+)`", cells[0])
        assert keys, f"a table row of {PAGE.name} without a key: {line}"
        for key in keys:
            assert key not in rows, f"{key} is listed twice"
            rows[key] = cells[-1]
    return rows


def _matches(key, pattern):
    regex = re.escape(pattern).replace(re.escape("<layer>"), "(.+)")
    return re.fullmatch(regex, key) is not None


def _metrics():
    return [
        nc_metrics.MIR(),
        nc_metrics.HDR(),
        nc_metrics.ClassMIR(),
        nc_metrics.ClassHDR(),
        nc_metrics.ClassMIR(baseline="chance"),
        nc_metrics.ClassHDR(baseline="chance"),
        nc_metrics.ClassMIR(baseline="excess"),
        nc_metrics.ClassHDR(baseline="excess"),
        nc_metrics.MatrixEntropy(),
        nc_metrics.MatrixEntropy(of="head"),
        nc_metrics.NC1(),
        nc_metrics.CDNV(),
        nc_metrics.ETFError(),
        nc_metrics.Equinorm(),
        nc_metrics.SelfDuality(),
        nc_metrics.NCCAgreement(),
        nc_metrics.RankMe(),
        nc_metrics.CMA(),
    ]


def _fitted_keys(metrics):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8).astype("int32")
    x = (rng.normal(size=(3, 6))[y] + 0.5 * rng.normal(size=(24, 6))).astype("float32")
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="relu", name=LAYERS[0])(inputs)
    features = keras.layers.Dense(4, activation="relu", name=LAYERS[1])(hidden)
    model = keras_nc.models.CollapseClassifier(keras.Model(inputs, features), num_classes=3)
    model.compile(
        optimizer="sgd",
        loss=[
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            losses.CMALoss(),
            losses.InformationRegularizer(),
        ],
        metrics=metrics,
    )
    callbacks = [CollapseMonitor(x, y), LayerwiseCollapse(x, y, layers=list(LAYERS))]
    history = model.fit(x, y, epochs=1, batch_size=12, callbacks=callbacks, verbose=0)
    return set(history.history)


@pytest.fixture(scope="module")
def logged():
    metrics = _metrics()
    return metrics, _fitted_keys(metrics)


def test_every_logged_key_is_in_the_table_and_every_table_key_is_logged(logged):
    _, keys = logged
    table = _table()
    unlisted = sorted(k for k in keys - KERAS_KEYS if not any(_matches(k, p) for p in table))
    assert unlisted == [], f"logged but missing from {PAGE.name}"
    never = sorted(p for p in table if not any(_matches(k, p) for k in keys))
    assert never == [], f"in {PAGE.name} but never logged"


def test_the_callbacks_keys_are_their_measures_with_the_default_prefixes(logged):
    _, keys = logged
    assert {f"collapse_{m}" for m in MEASURES} <= keys
    assert {f"layerwise_{layer}_{m}" for layer in LAYERS for m in LAYER_MEASURES} <= keys
    assert not {"collapse_mir", "collapse_hdr", "collapse_feature_entropy"} & keys


def test_directions_are_the_metrics_own_and_one_per_quantity(logged):
    metrics, _ = logged
    table = _table()
    assert set(table.values()) <= {"up", "down", "none"}
    for metric in metrics:
        assert table[metric.name] == (metric.direction or "none"), metric.name
    # The callbacks' keys name the same quantities as the metrics: the same direction.
    for key, direction in table.items():
        measure = re.sub(r"^(collapse_|layerwise_<layer>_)", "", key)
        if measure != key and measure in table:
            assert direction == table[measure], key
