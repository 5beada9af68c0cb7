"""The classic NC measures and the class pairing: exact on hard data, cheap in `fit`, any C.

Against the float64 NumPy reference (tests/reference.py) within 1%: the measures
are computed from float32 sums (relative rounding `n * eps`) in float64 where the
backend has it, with the pseudo-inverse cut at round-off (`max(C, d) * eps *
sigma_max`), so 1% leaves a wide margin on data whose between-class spectrum
spans six orders of magnitude (tests/tolerances.py).
"""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import metrics
from keras_nc import ops as nc_ops
from keras_nc.models import CollapseClassifier
from tests.helpers import BACKEND
from tests.tolerances import NC_RTOL, float32_tolerance

NC_KEYS = ("nc1", "cdnv", "etf_error", "equinorm", "self_duality")


def _class_metrics():
    return [
        metrics.NC1(),
        metrics.CDNV(),
        metrics.ETFError(),
        metrics.Equinorm(),
        metrics.SelfDuality(),
        metrics.MIR(pairing="class", name="mir_class"),
        metrics.HDR(pairing="class", name="hdr_class"),
        metrics.NCCAgreement(),
    ]


def _identity_classifier(d, num_classes, seed=0):
    """A CollapseClassifier whose features are its inputs, with a random head."""
    inputs = keras.Input((d,))
    model = CollapseClassifier(keras.Model(inputs, keras.layers.Identity()(inputs)), num_classes)
    rng = np.random.default_rng(seed)
    model.head.kernel.assign(rng.normal(size=(d, num_classes)).astype("float32"))
    return model


def _ill_conditioned(rng, num_classes=10, d=16, n=3000, offset=5.0, noise=0.05):
    """Class means spanning directions with scales 1e1 .. 1e-2 (cond(M M^T) = 1e6)."""
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    centred = rng.normal(size=(num_classes, num_classes - 1))
    centred -= centred.mean(axis=0)
    u, _, _ = np.linalg.svd(centred, full_matrices=False)
    scales = np.logspace(1, -2, num_classes - 1)
    means = (u[:, : num_classes - 1] * scales) @ basis[: num_classes - 1] + offset
    y = rng.integers(0, num_classes, n)
    z = means[y] + noise * rng.normal(size=(n, d))
    return z.astype("float32"), y.astype("int32")


def _reference(z, y, head, num_classes):
    want = ref.neural_collapse(z, y, head, num_classes)
    k_m, k_w = ref.class_pairing(np.asarray(z, np.float64), y, head, num_classes)
    want["mir_class"], want["hdr_class"] = ref.mir(k_m, k_w), ref.hdr(k_m, k_w)
    return want


def _assert_within_one_percent(result, want, keys):
    for key in keys:
        assert result[key] == pytest.approx(want[key], rel=NC_RTOL), key


def test_ill_conditioned_class_means_match_float64(rng):
    z, y = _ill_conditioned(rng)
    means = np.stack([z[y == c].mean(axis=0, dtype=np.float64) for c in range(10)])
    centred = means - z.mean(axis=0, dtype=np.float64)
    singular = np.linalg.svd(centred, compute_uv=False)
    # The data is what the test claims: cond(M M^T) = 1e6 over the non-degenerate directions.
    # The sample means move the smallest scale 1e-2 by noise / sqrt(n / C) = 3e-3.
    # tol: statistical (that 30% on the smallest scale): only the order 1e6 is claimed
    assert (singular[0] / singular[-2]) ** 2 == pytest.approx(1e6, rel=0.5)
    model = _identity_classifier(16, 10)
    model.compile(loss="sparse_categorical_crossentropy", metrics=_class_metrics())
    result = model.evaluate(z, y, batch_size=256, verbose=0, return_dict=True)
    head = keras.ops.convert_to_numpy(model.head.kernel).T
    _assert_within_one_percent(result, _reference(z, y, head, 10), (*NC_KEYS, "mir_class",
                                                                      "hdr_class"))  # fmt: skip


def test_a_thousand_classes_with_classes_missing(rng):
    num_classes, d = 1000, 512
    present = np.sort(rng.choice(num_classes, size=300, replace=False))
    centres = 3.0 * rng.normal(size=(num_classes, d))
    y = present[rng.integers(0, len(present), 1500)].astype("int32")
    z = (centres[y] + rng.normal(size=(len(y), d))).astype("float32")
    model = _identity_classifier(d, num_classes)
    model.compile(loss="sparse_categorical_crossentropy", metrics=_class_metrics())
    result = model.evaluate(z, y, batch_size=500, verbose=0, return_dict=True)
    head = keras.ops.convert_to_numpy(model.head.kernel).T
    _assert_within_one_percent(result, _reference(z, y, head, num_classes),
                               (*NC_KEYS, "mir_class", "hdr_class"))  # fmt: skip


@pytest.mark.parametrize("num_classes", [1000, 10_000])
def test_fit_with_every_class_measure_at_large_c(num_classes, rng):
    d = 8
    y = rng.integers(0, num_classes, 96).astype("int32")
    x = rng.normal(size=(96, d)).astype("float32")
    inputs = keras.Input((d,))
    model = CollapseClassifier(keras.Model(inputs, keras.layers.Dense(d)(inputs)), num_classes)
    model.compile(optimizer="sgd", metrics=_class_metrics())
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    for key in ("nc1", "cdnv", "etf_error", "equinorm", "self_duality", "mir_class", "hdr_class",
                "ncc_agreement"):  # fmt: skip
        values = history.history[key]
        assert len(values) == 2 and np.all(np.isfinite(values)), key


def test_epoch_measures_are_computed_once_per_epoch_not_per_step(rng, monkeypatch):
    calls = {"measures": 0, "pairing": 0}
    measures, pairing = nc_ops.neural_collapse_measures, nc_ops.class_pairing_ratios

    def counted_measures(*args, **kwargs):
        calls["measures"] += 1
        return measures(*args, **kwargs)

    def counted_pairing(*args, **kwargs):
        calls["pairing"] += 1
        return pairing(*args, **kwargs)

    monkeypatch.setattr(nc_ops, "neural_collapse_measures", counted_measures)
    monkeypatch.setattr(nc_ops, "class_pairing_ratios", counted_pairing)
    z, y = _ill_conditioned(rng, n=160)
    model = _identity_classifier(16, 10)
    model.compile(loss="sparse_categorical_crossentropy", metrics=_class_metrics())
    history = model.fit(z, y, batch_size=16, epochs=3, verbose=0)  # 10 steps an epoch
    # Five NC metrics and MIR/HDR share one computation each, at each epoch end.
    assert calls == {"measures": 3, "pairing": 3}
    # The epoch values are exact for the epoch's data (the weights do not
    # change: the identity backbone has none and the head's rows enter only self-duality).
    want = _reference(z, y, keras.ops.convert_to_numpy(model.head.kernel).T, 10)
    assert history.history["nc1"][-1] == pytest.approx(want["nc1"], rel=NC_RTOL)
    assert history.history["etf_error"][-1] == pytest.approx(want["etf_error"], rel=NC_RTOL)


def test_in_step_logs_show_the_last_epoch_value(rng):
    z, y = _ill_conditioned(rng, n=64)
    model = _identity_classifier(16, 10)
    model.compile(loss="sparse_categorical_crossentropy", metrics=[metrics.NC1()])
    batch_logs = []

    class Batches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batch_logs.append(float(logs["nc1"]))

    history = model.fit(z, y, batch_size=32, epochs=2, verbose=0, callbacks=[Batches()])
    assert np.isnan(batch_logs[0]) and np.isnan(batch_logs[1])  # nothing computed yet
    assert batch_logs[2] == batch_logs[3] == pytest.approx(history.history["nc1"][0])


def test_evaluating_twice_then_fitting_keeps_the_epoch_values(rng):
    # Two evaluations on the same weights and data memoise one epoch value; the
    # stored last value must be a copy of it: JAX donates variables' buffers to
    # the next step, which deleted the memoised array ("Array has been deleted").
    z, y = _ill_conditioned(rng, n=64)
    model = _identity_classifier(16, 10)
    model.compile(loss="sparse_categorical_crossentropy", metrics=[metrics.NC1()])
    first = model.evaluate(z, y, batch_size=32, verbose=0, return_dict=True)["nc1"]
    second = model.evaluate(z, y, batch_size=32, verbose=0, return_dict=True)["nc1"]
    assert second == first and np.isfinite(first)  # the memoised value itself
    history = model.fit(z, y, batch_size=32, epochs=1, verbose=0).history
    assert np.isfinite(history["nc1"][0])


@pytest.mark.skipif(BACKEND == "jax", reason="float64 state needs jax_enable_x64")
def test_measures_are_computed_in_float64_where_the_backend_has_it(rng):
    z, y = _ill_conditioned(rng, n=200)
    stats = nc_ops.class_statistics(z, y, 10)
    values = nc_ops.neural_collapse_measures(stats, np.ones((10, 16), "float32"))
    assert all(keras.backend.standardize_dtype(v.dtype) == "float64" for v in values.values())


def test_class_statistics_of_float64_features(rng):
    z, y = _ill_conditioned(rng, n=50)
    wide = nc_ops.class_statistics(z.astype("float64"), y, 10)
    narrow = nc_ops.class_statistics(z, y, 10)
    # The same float32 values summed in float64 and in float32: each float32 sum
    # of n terms (and a row norm of d) is off by n eps times the sum of |terms|.
    a, onehot = np.abs(z.astype(np.float64)), np.eye(10)[y]
    scale = {
        "counts": np.bincount(y, minlength=10),
        "sums": onehot.T @ a,
        "sq_norms": onehot.T @ (a**2).sum(axis=1),
        "second_moment": a.T @ a,
    }
    for key, size in scale.items():
        bound = float32_tolerance(terms=len(z) + z.shape[1]) * size
        got, want = (keras.ops.convert_to_numpy(s[key]) for s in (narrow, wide))
        assert np.all(np.abs(got - want) <= bound), key
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(wide["counts"]), np.bincount(y, minlength=10)
    )


def test_nc1_is_translation_invariant_with_a_large_common_offset(rng):
    """NC1 of features shifted by a common offset much larger than their spread.

    Centring the class means then leaves round-off of order `eps * ||means||`
    in the direction the centring removes; the pseudo-inverse's cut must
    discard it (an earlier cut on `eps * s_max` kept it: NC1 ~ 1e25). What
    remains is the cancellation in `v^T S2 v - sum N_c (v . mu_c)^2` of the raw
    second moment: relative error about `eps * (offset / sigma_W)^2`, hence
    the offsets and tolerances per precision of the statistics.
    """
    num_classes, d, n, sigma = 6, 8, 40, 0.3
    y = np.repeat(np.arange(num_classes), n)
    z = rng.normal(size=(num_classes, d))[y] + sigma * rng.normal(size=(num_classes * n, d))
    dtype = "float64" if BACKEND != "jax" else "float32"  # JAX without x64 holds float32
    eps = np.finfo(dtype).eps
    want = float(nc_ops.neural_collapse_measures(nc_ops.class_statistics(z, y, num_classes))["nc1"])
    offsets = [1e2, 1e3, 1e4] if dtype == "float64" else [1e1]
    for offset in offsets:
        stats = nc_ops.class_statistics((z + offset).astype(dtype), y, num_classes)
        got = float(nc_ops.neural_collapse_measures(stats)["nc1"])
        tolerance = max(1e-9, 100 * d * eps * (offset / sigma) ** 2)
        np.testing.assert_allclose(got, want, rtol=tolerance, err_msg=f"offset {offset}")
