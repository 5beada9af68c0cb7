"""Class statistics that survive a common offset, a fused step update, and NaN runs in `fit`.

Precision (issue: NC1 off by 15% to 53% with an offset of 1e4 within-class
spreads): features `z = o + mu_c + sigma * noise` share a common part `o`. The
statistics are accumulated of `y = z - p`, `p` the first batch's mean, so the
only cancellation left is that of the class means' spread against the
within-class spread. The float32 analysis (docs/performance.md, "Precision of
the class statistics"): every stage (the shift, the batch's float32 sums and
products, the accumulation, the epoch-end factorisation) adds a relative error
of at most about `sqrt(n) * eps * R`, `R = mean ||y||^2 / mean ||z - mu_c||^2`
the cancellation ratio of the shifted data (Wilkinson's random-walk rule, as in
tests/tolerances.py), independent of `o`; four stages and the suite's safety
factor 2 give the tolerance, which the data below keeps under the issue's
1e-4. Before the shift, the error grew like `eps * (o / sigma)**2`: these tests
failed at `o = 1e3 sigma` on TensorFlow and JAX.
"""

import itertools

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import losses, metrics
from keras_nc import ops as nc_ops
from keras_nc.metrics import ClassStatistics
from keras_nc.models import CollapseClassifier
from keras_nc.ops.guards import invalid_values_as_nan
from tests.helpers import BACKEND
from tests.tolerances import EPS32, SAFETY, ratio_tolerance

NUM_CLASSES, DIM, SIGMA = 5, 8, 1.0
OFFSETS = (0.0, 1e2, 1e3, 1e4)  # times the within-class spread
STAGES = 4  # shift, batch sums and products, accumulation, epoch end


def _offset_data(offset, n=400, seed=0):
    """Float32 features with class means spread 2 sigma around a common offset."""
    rng = np.random.default_rng(seed)
    means = 2.0 * SIGMA * rng.normal(size=(NUM_CLASSES, DIM))
    y = np.arange(n) % NUM_CLASSES
    rng.shuffle(y)
    direction = rng.normal(size=DIM)
    common = offset * SIGMA * direction / np.linalg.norm(direction) * np.sqrt(DIM)
    z = common + means[y] + SIGMA * rng.normal(size=(n, DIM))
    return z.astype("float32"), y.astype("int32")


def _tolerance(z, y):
    """`SAFETY * STAGES * sqrt(n) * eps * R` of the shifted data (see the module docstring)."""
    z = np.asarray(z, np.float64)
    mu = np.stack([z[y == c].mean(axis=0) for c in range(NUM_CLASSES)])
    within = np.mean(np.sum((z - mu[y]) ** 2, axis=1))
    shifted = np.mean(np.sum((z - z[:100].mean(axis=0)) ** 2, axis=1))
    return SAFETY * STAGES * np.sqrt(len(z)) * EPS32 * shifted / within


def _want(z, y):
    return ref.neural_collapse(z, y, np.zeros((NUM_CLASSES, DIM)), NUM_CLASSES)


def _identity_classifier():
    inputs = keras.Input((DIM,))
    backbone = keras.Model(inputs, keras.layers.Identity()(inputs))
    return CollapseClassifier(backbone, NUM_CLASSES)


@pytest.mark.parametrize("offset", OFFSETS)
def test_nc1_and_cdnv_from_evaluate_with_a_common_offset(offset):
    z, y = _offset_data(offset)
    tolerance = _tolerance(z, y)
    # tol: a precondition on the data, not a comparison: the acceptance bound 1e-4
    assert tolerance < 1e-4
    model = _identity_classifier()
    model.compile(loss="sparse_categorical_crossentropy", metrics=[metrics.NC1(), metrics.CDNV()])
    result = model.evaluate(z, y, batch_size=100, verbose=0, return_dict=True)  # 4 batches
    want = _want(z, y)
    assert result["nc1"] == pytest.approx(want["nc1"], rel=tolerance)
    assert result["cdnv"] == pytest.approx(want["cdnv"], rel=tolerance)


@pytest.mark.parametrize("offset", OFFSETS)
def test_nc1_and_cdnv_from_direct_updates_with_a_common_offset(offset):
    z, y = _offset_data(offset, seed=1)
    nc1, cdnv = metrics.NC1(num_classes=NUM_CLASSES), metrics.CDNV(num_classes=NUM_CLASSES)
    for start in range(0, len(z), 100):
        for metric in (nc1, cdnv):
            metric.update_state(y[start : start + 100], features=z[start : start + 100])
    want, tolerance = _want(z, y), _tolerance(z, y)
    assert float(nc1.result()) == pytest.approx(want["nc1"], rel=tolerance)
    assert float(cdnv.result()) == pytest.approx(want["cdnv"], rel=tolerance)


def test_the_raw_sums_are_kept_for_the_uncentred_readers():
    # NCCAgreement and the uncentred class pairing read the raw sums: shifted
    # sums plus the counts times the pivot.
    z, y = _offset_data(1e2, n=100)
    stats = ClassStatistics(NUM_CLASSES, DIM)
    stats.update_state(y[:50], features=z[:50])
    stats.update_state(y[50:], features=z[50:])
    sums = keras.ops.convert_to_numpy(stats.sums)
    if stats.means_exponent is not None:  # float32 state: units of 2**e
        sums = sums * 2.0 ** float(keras.ops.convert_to_numpy(stats.means_exponent))
    want = np.stack([z[y == c].astype(np.float64).sum(axis=0) for c in range(NUM_CLASSES)])
    np.testing.assert_allclose(sums, want, rtol=SAFETY * 100 * EPS32 * 1e2)
    pivot = keras.ops.convert_to_numpy(stats.pivot)
    # A float32 mean of 50 rows (a sum and a division): 51 roundings of the sum of |terms|.
    bound = SAFETY * 51 * EPS32 * np.abs(z[:50].astype(np.float64)).mean(axis=0)
    error = np.abs(pivot - z[:50].astype(np.float64).mean(axis=0))
    assert np.all(error <= bound), (error, bound)


def test_fused_terms_sum_to_the_class_statistics(rng):
    z = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 4, 32).astype("int32")
    w = rng.uniform(0.0, 2.0, 32).astype("float32")
    shift = z.mean(axis=0)
    dtype = "float32" if BACKEND == "jax" else "float64"
    terms = nc_ops.statistics.class_sum_terms(z, y, 4, shift, w, dtype=dtype)
    scale = 2.0 ** float(keras.ops.convert_to_numpy(terms["exponent"]))
    rows = keras.ops.convert_to_numpy(terms["rows"]).astype(np.float64)
    indices = keras.ops.convert_to_numpy(terms["indices"])
    per_class = np.zeros((4, 8))
    np.add.at(per_class, indices, rows)
    shifted = (z - shift).astype(np.float64)
    want = {
        "counts": np.bincount(y, weights=w, minlength=4),
        "sq_norms": np.bincount(y, weights=w * np.sum(shifted**2, axis=1), minlength=4),
        "sums": np.stack([(w[y == c, None] * shifted[y == c]).sum(axis=0) for c in range(4)]),
        "second_moment": (w[:, None] * shifted).T @ shifted,
    }
    got = {
        "counts": per_class[:, 0],
        "sq_norms": per_class[:, 1] * scale**2,
        "sums": per_class[:, 2:] * scale,
        "second_moment": keras.ops.convert_to_numpy(terms["second_moment"]) * scale**2,
    }
    # Float32 sums of 32 terms: 32 eps times the sum of |terms| of each entry
    # (its value, without the cancellation of signs), plus each term's rounding.
    a = np.abs(shifted)
    magnitude = {
        "counts": want["counts"],
        "sq_norms": want["sq_norms"],
        "sums": np.stack([(w[y == c, None] * a[y == c]).sum(axis=0) for c in range(4)]),
        "second_moment": (w[:, None] * a).T @ a,
    }
    for key, value in want.items():
        bound = SAFETY * (32 + 2) * EPS32 * magnitude[key]
        assert np.all(np.abs(got[key] - value) <= bound), key


def test_fused_terms_check_values_eagerly_and_flag_them_inside_the_context():
    z = np.ones((4, 3), "float32")
    bad = np.array([0, 1, 2, 7])
    with pytest.raises(ValueError, match=r"`labels` must hold class indices in \[0, 3\)"):
        nc_ops.statistics.class_sum_terms(z, bad, 3, np.zeros(3, "float32"))
    with invalid_values_as_nan():
        terms = nc_ops.statistics.class_sum_terms(z, bad, 3, np.zeros(3, "float32"))
    counts = keras.ops.convert_to_numpy(terms["rows"])[:, 0]
    assert np.isnan(counts[3]) and np.all(counts[:3] == 1.0)
    assert keras.ops.convert_to_numpy(terms["indices"]).max() == 2  # clipped: no kernel sees 7


def test_metric_errors_raise_eagerly_and_give_nan_inside_the_context():
    z = np.ones((4, 3), "float32")
    z[0, 0] = np.inf
    metric = metrics.NC1(num_classes=3)
    with pytest.raises(ValueError, match="features` must hold finite numbers"):
        metric.update_state(np.array([0, 1, 2, 0]), features=z)
    metric.reset_state()
    with invalid_values_as_nan():
        metric.update_state(np.array([0, 1, 2, 0]), features=z)
        metric.update_state(np.array([0, 1, 2, 0]), features=np.ones((4, 3), "float32"))
    assert np.isnan(float(metric.result()))
    metric.reset_state()  # a reset clears the bad epoch (and the pivot)
    metric.update_state(np.array([0, 1, 2, 0, 1, 2]), features=np.eye(6, 3, dtype="float32"))
    assert np.isfinite(float(metric.result()))


def _diverging_model():
    inputs = keras.Input((DIM,))
    features = keras.layers.Dense(DIM)(inputs)
    model = CollapseClassifier(keras.Model(inputs, features), NUM_CLASSES)
    model.compile(
        optimizer=keras.optimizers.SGD(1e30),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), losses.CMALoss(0.1)],
        metrics=[metrics.NC1(), metrics.MIR(), metrics.CDNV()],
    )
    return model


def test_a_diverged_fit_ends_with_nan_in_the_logs_on_every_backend():
    """Issue 30 item 10: the same ending on every backend, eager PyTorch included."""
    z, y = _offset_data(0.0, n=64)
    z[40:] = np.inf  # infinite inputs: NaN features (inf - inf) from the 6th step on
    model = _diverging_model()
    history = model.fit(
        z, y, batch_size=8, epochs=3, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()]
    )
    losses = history.history["loss"]
    assert len(losses) == 1 and np.isnan(losses[0])  # stopped in the first epoch
    assert model.stop_training
    result = model.evaluate(z, y, batch_size=8, verbose=0, return_dict=True)
    assert np.isnan(result["loss"]) and np.isnan(result["nc1"])


def test_direct_calls_outside_fit_keep_their_errors():
    z, y = _offset_data(0.0, n=16)
    z[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        metrics.CDNV(num_classes=NUM_CLASSES).update_state(y, features=z)
    with pytest.raises(ValueError, match="finite"):
        nc_ops.feature_entropy(z)


@pytest.mark.parametrize("offset", OFFSETS)
def test_class_pairing_mir_with_a_common_offset(offset):
    """The centred class pairing reads the sums about the pivot: no cancellation."""
    z, y = _offset_data(offset, seed=2)
    head = np.random.default_rng(3).normal(size=(NUM_CLASSES, DIM)).astype("float32")
    mir = metrics.ClassMIR(num_classes=NUM_CLASSES, feature_dim=DIM)
    for start in range(0, len(z), 100):
        rows = slice(start, start + 100)
        mir.update_state(y[rows], features=z[rows], head_weights=head)
    k_m, k_w = ref.class_pairing(z.astype(np.float64), y, head.astype(np.float64), NUM_CLASSES)
    # A relative error delta of the centred means (bounded like NC1's by
    # `_tolerance`) moves each Gram entry by at most 2 delta, each entropy by at
    # most 2 delta C (1 + |log l_min|) (first order, l_min the smallest non-zero
    # eigenvalue of rho), and MIR by the ratio's propagation of three such errors.
    delta = _tolerance(z, y)
    entropies, errors = [], []
    for k in (k_m, k_w, k_m * k_w):
        spectrum = np.linalg.eigvalsh(k / np.trace(k))
        smallest = spectrum[spectrum > 1e-12].min()
        entropies.append(ref.entropy(k))
        errors.append(2 * delta * NUM_CLASSES * (1 + abs(np.log(smallest))) + 8 * EPS32)
    tolerance = ratio_tolerance(*entropies, *errors, "mir")
    assert float(keras.ops.convert_to_numpy(mir.result())) == pytest.approx(
        ref.mir(k_m, k_w), abs=tolerance
    )


# --------------------------------------------------------------------------- #
# The blocked second moment: only its upper block triangle is accumulated.
# --------------------------------------------------------------------------- #


def test_moment_block_bounds_cover_the_columns():
    assert nc_ops.statistics.moment_block_bounds(10, 3) == [0, 3, 6, 10]
    assert nc_ops.statistics.moment_block_bounds(512, 4) == [0, 128, 256, 384, 512]
    assert nc_ops.statistics.moment_block_bounds(2, 4) == [0, 1, 2]  # at most d blocks
    assert nc_ops.statistics.moment_block_bounds(7, 1) == [0, 7]


@pytest.mark.parametrize("blocks", [1, 2, 3, 7])
def test_the_symmetric_moment_is_assembled_exactly_from_its_block_rows(blocks, rng):
    a = rng.normal(size=(7, 7))
    a = (a + a.T).astype("float32")
    bounds = nc_ops.statistics.moment_block_bounds(7, blocks)
    rows = [a[start:stop, start:] for start, stop in itertools.pairwise(bounds)]
    got = nc_ops.statistics.moment_from_block_rows([keras.ops.convert_to_tensor(r) for r in rows])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), a)  # no arithmetic


def _moment_tolerance(want, n):
    """Entrywise bound of a float32 sum of `n` weighted products (plus the shift's rounding).

    `|sum_k w y_ki y_kj - fl(...)| <= (n + 2) eps sum_k w |y_ki y_kj|
    <= (n + 2) eps sqrt(M_ii M_jj)` (Cauchy-Schwarz), times the suite's safety factor.
    """
    diagonal = np.sqrt(np.abs(np.diag(want)))
    return SAFETY * (n + 2) * EPS32 * np.outer(diagonal, diagonal)


@pytest.mark.parametrize(("blocks", "scale"), [(1, 1.0), (2, 1.0), (3, 1.0), (2, 1e-30), (2, 1e30)])
def test_the_blocked_moment_matches_float64(blocks, scale, rng):
    # A common offset; squares of 1e-30 and 1e30 are out of float32's range.
    z = (scale * (50.0 + rng.normal(size=(96, 10)))).astype("float32")
    y = rng.integers(0, 4, 96).astype("int32")
    w = rng.uniform(0.0, 2.0, 96).astype("float32")
    stats = ClassStatistics(4, 10, second_moment=True, moment_blocks=blocks)
    assert len(stats.moment_rows) == blocks
    for start in range(0, 96, 32):
        part = slice(start, start + 32)
        stats.update_state(y[part], features=z[part], sample_weight=w[part])
    got = keras.ops.convert_to_numpy(stats.moment).astype(np.float64)
    if stats.means_exponent is not None:  # float32 state: units of 2**e
        got = got * 4.0 ** float(keras.ops.convert_to_numpy(stats.means_exponent))
    assert np.all(np.isfinite(got)) and np.abs(got).max() > 0
    shifted = z.astype(np.float64) - keras.ops.convert_to_numpy(stats.pivot).astype(np.float64)
    want = (w[:, None] * shifted).T @ shifted
    assert got.shape == (10, 10)
    assert np.all(np.abs(got - want) <= _moment_tolerance(want, 96))
    block = np.searchsorted(stats.moment_bounds, np.arange(10), side="right")
    below = block[:, None] > block[None, :]  # below the diagonal blocks: mirrored, exactly
    np.testing.assert_array_equal(got[below], got.T[below])


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_nc1_from_a_blocked_moment_with_a_common_offset(offset):
    z, y = _offset_data(offset, seed=2)
    nc1, cdnv = metrics.NC1(num_classes=NUM_CLASSES), metrics.CDNV(num_classes=NUM_CLASSES)
    stats = ClassStatistics(NUM_CLASSES, DIM, second_moment=True, moment_blocks=3)
    nc1.share_statistics(stats)
    cdnv.share_statistics(stats)
    for start in range(0, len(z), 100):
        stats.update_state(y[start : start + 100], features=z[start : start + 100])
    want, tolerance = _want(z, y), _tolerance(z, y)
    assert float(nc1.result()) == pytest.approx(want["nc1"], rel=tolerance)
    assert float(cdnv.result()) == pytest.approx(want["cdnv"], rel=tolerance)


def test_moment_blocks_must_be_a_positive_int():
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="moment_blocks"):
            ClassStatistics(3, 4, second_moment=True, moment_blocks=bad)


def test_wide_features_fit_with_a_blocked_moment_compiled(rng):
    """d = 256: the model's statistics split the moment in two blocks, inside jit on JAX and XLA
    on TensorFlow (PyTorch: its eager step, where the blocks are added in place)."""
    d, classes = 256, 4
    means = 3.0 * rng.normal(size=(classes, d))
    y = (np.arange(64) % classes).astype("int32")
    z = (10.0 + means[y] + rng.normal(size=(64, d))).astype("float32")
    inputs = keras.Input((d,))
    model = CollapseClassifier(keras.Model(inputs, keras.layers.Identity()(inputs)), classes)
    model.compile(
        loss="sparse_categorical_crossentropy",
        metrics=[metrics.NC1(), metrics.CDNV()],
        jit_compile=BACKEND != "torch",
    )
    assert len(model._collapse_terms.statistics.moment_rows) == 2
    result = model.evaluate(z, y, batch_size=16, verbose=0, return_dict=True)  # 4 batches
    want = ref.neural_collapse(z, y, np.zeros((classes, d)), classes)
    # The module's bound, R of the shifted data (the pivot: the first batch's mean),
    # with sqrt(n d) for sqrt(n): JAX's float32 state and epoch-end factorisation
    # also sum over the d = 256 coordinates (the same with one block: 9e-5 here).
    wide = z.astype(np.float64)
    within = np.mean(np.sum((wide - np.stack([wide[y == c].mean(0) for c in y])) ** 2, axis=1))
    shifted = np.mean(np.sum((wide - wide[:16].mean(axis=0)) ** 2, axis=1))
    tolerance = SAFETY * STAGES * np.sqrt(len(z) * d) * EPS32 * shifted / within
    assert result["nc1"] == pytest.approx(want["nc1"], rel=tolerance)
    assert result["cdnv"] == pytest.approx(want["cdnv"], rel=tolerance)
