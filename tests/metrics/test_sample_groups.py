"""Per-sample measures on groups of `sample_size` rows: independent of the loader's batch size."""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import metrics
from keras_nc.models import CollapseClassifier
from tests.helpers import to_numpy
from tests.tolerances import entropy_tolerance, ratio_tolerance

C, D, N, SIZE = 5, 8, 512, 128  # SIZE: the default `sample_size`


def _data(rng):
    centres = 2.0 * rng.normal(size=(C, D))
    y = rng.integers(0, C, N)
    z = centres[y] + rng.normal(size=(N, D))
    head = rng.normal(size=(C, D))
    return z.astype("float32"), y.astype("int32"), head.astype("float32")


def _model(head):
    inputs = keras.Input((D,))
    model = CollapseClassifier(keras.Model(inputs, keras.layers.Identity()(inputs)), C)
    model.head.kernel.assign(head.T)
    return model


def _group_reference(z, y, head, rows):
    """MIR, HDR and entropy of each group of rows (float64) and their float32 bounds."""
    values, bounds = [], []
    for group in rows:
        k_z, k_w = ref.gram(z[group], center=True), ref.gram(head[y[group]])
        h = [ref.entropy(k_z), ref.entropy(k_w), ref.entropy(k_z * k_w)]
        e = [entropy_tolerance(k_z), entropy_tolerance(k_w), entropy_tolerance(k_z * k_w)]
        values.append([ref.mir(k_z, k_w), ref.hdr(k_z, k_w), h[0]])
        bounds.append([ratio_tolerance(*h, *e, "mir"), ratio_tolerance(*h, *e, "hdr"), e[0]])
    return np.mean(values, axis=0), np.mean(bounds, axis=0)


def _sample_metrics(**kwargs):
    return [metrics.MIR(**kwargs), metrics.HDR(**kwargs), metrics.MatrixEntropy(**kwargs)]


def test_evaluate_is_independent_of_the_batch_size(rng):
    z, y, head = _data(rng)
    model = _model(head)
    model.compile(loss="sparse_categorical_crossentropy", metrics=_sample_metrics())
    groups = [slice(i, i + SIZE) for i in range(0, N, SIZE)]
    expected, bound = _group_reference(z, y, head, groups)
    # 73: groups span batches, and the last batch (512 = 7 * 73 + 1) is one
    # row, which completes the last group.
    for batch_size in (8, 32, 73, 128, 512):
        result = model.evaluate(z, y, batch_size=batch_size, verbose=0, return_dict=True)
        got = [result["mir"], result["hdr"], result["matrix_entropy"]]
        error = np.abs(np.asarray(got) - expected)
        assert np.all(error <= bound), (batch_size, got, expected, bound)


def test_without_sample_size_each_batch_is_an_estimate(rng):
    """`sample_size=None` is the per-batch mean: it changes with the batch size."""
    z, y, head = _data(rng)
    model = _model(head)
    model.compile(loss="sparse_categorical_crossentropy", metrics=_sample_metrics(sample_size=None))
    small = model.evaluate(z, y, batch_size=16, verbose=0, return_dict=True)
    large = model.evaluate(z, y, batch_size=N, verbose=0, return_dict=True)
    batches = [slice(i, i + 16) for i in range(0, N, 16)]
    expected_small, bound_small = _group_reference(z, y, head, batches)
    expected_large, bound_large = _group_reference(z, y, head, [slice(0, N)])
    assert small["mir"] == pytest.approx(expected_small[0], abs=bound_small[0])
    assert large["mir"] == pytest.approx(expected_large[0], abs=bound_large[0])
    assert abs(small["mir"] - large["mir"]) > 0.05  # why `sample_size` exists


def test_fewer_rows_than_a_group_measure_those_rows(rng):
    z, y, head = _data(rng)
    rows = slice(0, 41)  # in batches of 8, the last one of a single row
    metric = metrics.MIR()
    for start in range(0, 41, 8):
        batch = slice(start, min(start + 8, 41))
        metric.update_state(y[batch], features=z[batch], head_weights=head)
    expected, bound = _group_reference(z, y, head, [rows])
    assert float(to_numpy(metric.result())) == pytest.approx(expected[0], abs=bound[0])
    metric.reset_state()
    assert float(to_numpy(metric.result())) == 0.0
    # The same inside compiled steps (the rows gathered so far are measured
    # by one more turn of the loop that measures the groups).
    model = _model(head)
    model.compile(loss="sparse_categorical_crossentropy", metrics=_sample_metrics())
    result = model.evaluate(z[rows], y[rows], batch_size=8, verbose=0, return_dict=True)
    got = [result["mir"], result["hdr"], result["matrix_entropy"]]
    assert np.all(np.abs(np.asarray(got) - expected) <= bound), (got, expected, bound)


def test_rows_of_zero_weight_are_left_out_of_the_groups(rng):
    z, y, head = _data(rng)
    weights = (rng.random(N) < 0.6).astype("float32")
    kept = np.flatnonzero(weights)
    metric = metrics.MIR()
    for start in range(0, N, 32):
        rows = slice(start, start + 32)
        metric.update_state(
            y[rows], features=z[rows], head_weights=head, sample_weight=weights[rows]
        )
    groups = [kept[i : i + SIZE] for i in range(0, len(kept) - SIZE + 1, SIZE)]
    expected, bound = _group_reference(z, y, head, groups)
    assert float(to_numpy(metric.result())) == pytest.approx(expected[0], abs=bound[0])
    # Compiled steps: `evaluate(sample_weight=...)` gathers the same groups.
    model = _model(head)
    model.compile(loss="sparse_categorical_crossentropy", metrics=_sample_metrics())
    result = model.evaluate(z, y, sample_weight=weights, batch_size=48, verbose=0, return_dict=True)
    got = [result["mir"], result["hdr"], result["matrix_entropy"]]
    assert np.all(np.abs(np.asarray(got) - expected) <= bound), (got, expected, bound)


def test_cma_metric_uses_groups(rng):
    z, y, head = _data(rng)
    values = {}
    for batch_size in (16, 128):
        metric = metrics.CMA()
        for start in range(0, N, batch_size):
            rows = slice(start, start + batch_size)
            metric.update_state(y[rows], features=z[rows], head_weights=head)
        values[batch_size] = float(to_numpy(metric.result()))
    expected = np.mean([ref.cma(z[i : i + SIZE], head, y[i : i + SIZE]) for i in range(0, N, SIZE)])
    # CMA: a normalised entropy per class group of at most SIZE + 1 rows.
    bound = 2 * entropy_tolerance(np.eye(SIZE + 1)) + 1e-5
    assert values[16] == pytest.approx(expected, abs=bound)
    assert values[128] == pytest.approx(expected, abs=bound)


@pytest.mark.parametrize("sample_size", [1, 0, 2.5, "64", True])
def test_bad_sample_size_names_the_argument(sample_size):
    with pytest.raises(ValueError, match="`sample_size`"):
        metrics.MIR(sample_size=sample_size)


def test_the_class_pairing_takes_no_sample_size():
    with pytest.raises(ValueError, match="`sample_size`"):
        metrics.MIR(pairing="class", sample_size=64)
    assert isinstance(metrics.HDR(pairing="class"), metrics.ClassHDR)


def test_sample_size_survives_a_keras_save(rng, tmp_path):
    z, y, head = _data(rng)
    model = _model(head)
    model.compile(loss="sparse_categorical_crossentropy", metrics=_sample_metrics(sample_size=32))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    config = metrics.MIR(sample_size=32).get_config()
    assert config["sample_size"] == 32
    assert metrics.MIR.from_config(config).sample_size == 32
    first = model.evaluate(z[:128], y[:128], batch_size=16, verbose=0, return_dict=True)
    again = loaded.evaluate(z[:128], y[:128], batch_size=64, verbose=0, return_dict=True)
    # The loaded metric groups 32 rows too: the same value from batches of 64 (two
    # float32 evaluations of the same groups, each within its bound: within twice).
    groups = [slice(i, i + 32) for i in range(0, 128, 32)]
    _, bound = _group_reference(z[:128], y[:128], head, groups)
    assert again["mir"] == pytest.approx(first["mir"], abs=2 * bound[0])


def test_devices_measured_apart_keep_per_batch_estimates_and_say_why(rng, monkeypatch):
    """Replicas of a `tf.distribute` strategy (or `sample_scope="device"`) share no buffer."""
    from keras_nc import sharding

    z, y, head = _data(rng)
    monkeypatch.setattr(sharding, "replicas_in_sync", lambda: 2)
    metric = metrics.MIR()
    with pytest.warns(UserWarning, match="sample_size=128.*per-device rows"):
        for start in range(0, 64, 32):
            rows = slice(start, start + 32)
            metric.update_state(y[rows], features=z[rows], head_weights=head)
    expected, bound = _group_reference(z, y, head, [slice(0, 32), slice(32, 64)])
    assert float(to_numpy(metric.result())) == pytest.approx(expected[0], abs=bound[0])
