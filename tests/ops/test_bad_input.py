"""The bad-input battery: each mistake gets a clear error or a defined, documented value.

Eager calls raise a `ValueError` that names the argument; inside a compiled
function (where no data-dependent error can be raised) bad values give NaN and
nothing crashes in a backend kernel. Shapes and dtypes raise in both. Degenerate
but valid inputs (zero features, one sample, one class, C = 1 or 2, an empty
batch, an all-zero head) give finite values equal to the float64 reference.

Each case runs through every consumer (ops, metrics, losses): they share one guard
(`keras_nc.ops.guards`). `CollapseClassifier` in `fit`: tests/models/test_bad_input.py.
"""

import keras
import numpy as np
import pytest

import tests.reference as ref
from keras_nc import losses, metrics
from keras_nc import ops as nc
from tests.helpers import BACKEND, random_batch, to_numpy
from tests.tolerances import (
    cma_tolerance,
    entropy_tolerance,
    float32_tolerance,
    information_tolerance,
)

C, D, N = 3, 4, 9


def _measures(z, y, w):
    """Every public quantity computed from features, labels and head rows."""
    c = w.shape[0]
    k_z, k_w = nc.sample_head_grams(z, y, w)
    stats = nc.class_statistics(z, y, c)
    k_m, k_h = nc.class_pairing_grams(stats["counts"], stats["sums"], w)
    means, _, present = nc.class_means(stats["counts"], stats["sums"])
    logits = keras.ops.matmul(keras.ops.convert_to_tensor(z), keras.ops.transpose(w))
    return {
        "entropy": nc.feature_entropy(z, center=True),
        "mir": nc.mir(k_z, k_w),
        "hdr": nc.hdr(k_z, k_w),
        "class_mir": nc.mir(k_m, k_h),
        "class_hdr": nc.hdr(k_m, k_h),
        "cma": nc.cma_entropy(z, w, y),
        "ncc": nc.ncc_agreement(z, logits, means, present),
        **nc.neural_collapse_measures(stats, w),
    }


def _reference(z, y, w):
    """The float64 reference of `_measures` where it is defined (NC measures: see tests)."""
    z64 = np.asarray(z, np.float64)
    k_z, k_w = ref.gram(z64, center=True), ref.gram(np.asarray(w, np.float64)[y])
    out = {
        "entropy": ref.entropy(k_z),
        "mir": ref.mir(k_z, k_w),
        "hdr": ref.hdr(k_z, k_w),
    }
    if len(z):
        out["cma"] = ref.cma(z64, np.asarray(w, np.float64), y)
    return out


def _bounds(z, y, w):
    """Float32 bounds of `_reference`'s quantities on the same data (tests/tolerances.py)."""
    z64 = np.asarray(z, np.float64)
    k_z, k_w = ref.gram(z64, center=True), ref.gram(np.asarray(w, np.float64)[y])
    out = {
        "entropy": entropy_tolerance(k_z, size=min(z.shape)),
        "mir": information_tolerance(k_z, k_w, "mir"),
        "hdr": information_tolerance(k_z, k_w, "hdr"),
    }
    if len(z):
        out["cma"] = cma_tolerance(z, w, y)
    return out


def _numpy(values):
    return {key: float(to_numpy(value)) for key, value in values.items()}


def _traced(fn):
    """`fn` traced as `fit` traces a step: jax.jit, tf.function; None on torch (eager)."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    return None


def _nan_features(z, y, w):
    z = z.copy()
    z[2, 1] = np.nan
    return z, y, w


def _inf_features(z, y, w):
    z = z.copy()
    z[0, 0] = np.inf
    return z, y, w


def _inf_head(z, y, w):
    w = w.copy()
    w[1, 2] = -np.inf
    return z, y, w


def _label_too_large(z, y, w):
    y = y.copy()
    y[4] = C
    return z, y, w


def _negative_label(z, y, w):
    y = y.copy()
    y[0] = -1
    return z, y, w


def _fractional_float_label(z, y, w):
    y = y.astype("float32")
    y[3] = 0.5
    return z, y, w


BAD_VALUES = {
    "nan_features": (_nan_features, r"`features` must hold finite numbers"),
    "inf_features": (_inf_features, r"`features` must hold finite numbers"),
    "inf_head": (_inf_head, r"`head_weights` must hold finite numbers"),
    "label_too_large": (_label_too_large, r"`labels` must hold class indices in \[0, 3\)"),
    "negative_label": (_negative_label, r"`labels` must hold class indices in \[0, 3\)"),
    "fractional_label": (_fractional_float_label, r"`labels` must hold integer class indices"),
}


# Each consumer of (features, labels, head rows), called eagerly.
CONSUMERS = {
    "sample_head_grams": lambda z, y, w: nc.sample_head_grams(z, y, w),
    "class_statistics": lambda z, y, w: nc.class_statistics(z, y, C),
    "cma_entropy": lambda z, y, w: nc.cma_entropy(z, w, y),
}


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_raise_clear_errors_in_eager_calls(case, consumer):
    make, message = BAD_VALUES[case]
    if case == "inf_head" and consumer == "class_statistics":
        pytest.skip("class_statistics does not read head rows")
    with pytest.raises(ValueError, match=message):
        CONSUMERS[consumer](*make(*random_batch()))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda z: nc.gram(z), r"`x` must hold finite numbers"),
        (lambda z: nc.feature_entropy(z), r"`x` must hold finite numbers"),
        (lambda z: nc.matrix_entropy(z @ z.T), r"`k` must hold finite numbers"),
        (lambda z: nc.mir(z @ z.T, np.eye(N)), r"`k1` must hold finite numbers"),
        (lambda z: nc.hdr(np.eye(N), z @ z.T), r"`k2` must hold finite numbers"),
        (
            lambda z: nc.ncc_agreement(z, np.zeros((N, C)), np.zeros((C, D))),
            r"`features` must hold finite numbers",
        ),
    ],
)
def test_non_finite_matrices_raise_in_every_entry_point(call, message):
    z, _, _ = _nan_features(*random_batch())
    with pytest.raises(ValueError, match=message):
        call(z)


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_give_nan_not_a_backend_crash_when_traced(case):
    fn = _traced(_measures)
    if fn is None:
        pytest.skip("torch runs fit eagerly: bad values raise (previous test)")
    z, y, w = BAD_VALUES[case][0](*random_batch())
    values = _numpy(fn(z, y, w))
    # The feature entropy reads neither labels nor head rows.
    finite_by_design = set() if case.endswith("features") else {"entropy"}
    for key, value in values.items():
        if key in finite_by_design:
            assert np.isfinite(value), key
        else:
            assert np.isnan(value), (key, value)


SHAPE_ERRORS = {
    "features_rank_1": (
        lambda z, y, w: nc.class_statistics(z[0], y, C),
        r"`features` must have shape \(n, d\)",
    ),
    "features_rank_3": (
        lambda z, y, w: nc.sample_head_grams(z[None], y, w),
        r"`features` must have shape \(n, d\)",
    ),
    "labels_rank_3": (
        lambda z, y, w: nc.class_statistics(z, y[:, None, None], C),
        r"`labels` must hold integer class indices of shape \(n,\)",
    ),
    "labels_wrong_length": (
        lambda z, y, w: nc.cma_entropy(z, w, y[:-1]),
        r"`labels` must hold one label per row of the features \(9\)",
    ),
    "string_labels": (
        lambda z, y, w: nc.class_statistics(z, np.array(["a"] * N), C),
        r"`labels` must be a tensor of integer class indices",
    ),
    "head_rank_1": (
        lambda z, y, w: nc.sample_head_grams(z, y, w[0]),
        r"`head_weights` must have shape \(num_classes, d\)",
    ),
    "head_wrong_width": (
        lambda z, y, w: nc.sample_head_grams(z, y, w[:, :2]),
        r"`head_weights` must have 4 columns, the width of `features`",
    ),
    "cma_head_wrong_width": (
        lambda z, y, w: nc.cma_entropy(z, w[:, :3], y),
        r"`head_weights` must have 4 columns",
    ),
    "num_classes_zero": (
        lambda z, y, w: nc.class_statistics(z, y, 0),
        r"`num_classes` must be a positive integer",
    ),
    "sample_weight_shape": (
        lambda z, y, w: nc.class_statistics(z, y, C, sample_weight=np.ones((N, 2))),
        r"`sample_weight` must have shape \(n,\)",
    ),
    "sample_weight_negative": (
        lambda z, y, w: nc.class_statistics(z, y, C, sample_weight=-np.ones(N)),
        r"`sample_weight` must hold finite, non-negative numbers",
    ),
    "metric_features_rank_3": (
        lambda z, y, w: metrics.MatrixEntropy().update_state(y, features=z[None]),
        r"`features` must have shape \(n, d\)",
    ),
    "metric_y_true_out_of_range": (
        lambda z, y, w: metrics.MIR().update_state(y + C, features=z, head_weights=w),
        r"`y_true` must hold class indices in \[0, 3\)",
    ),
    "loss_y_true_fractional": (
        lambda z, y, w: losses.CMALoss()(y + 0.25, features=z, head_weights=w),
        r"`y_true` must hold integer class indices",
    ),
    "nc_metric_features_rank_3": (
        lambda z, y, w: metrics.NC1(num_classes=C).update_state(y, features=z[None]),
        r"`features` must have shape \(n, d\)",
    ),
}


@pytest.mark.parametrize("case", sorted(SHAPE_ERRORS))
def test_wrong_shapes_and_dtypes_raise_clear_errors(case):
    call, message = SHAPE_ERRORS[case]
    with pytest.raises(ValueError, match=message):
        call(*random_batch())


def _evaluate(z, y, w):
    # JAX compiles each eager op separately on first use (~15 s for `_measures`
    # per new shape on 2 cores); one jit of the whole is ~3x cheaper. Eager
    # behaviour is the subject of the tests above.
    fn = _traced(_measures) if BACKEND == "jax" else _measures
    return _numpy(fn(z, y, w))


def _check_against_reference(z, y, w):
    values = _evaluate(z, y, w)
    for key, value in values.items():
        assert np.isfinite(value), (key, value)
    bounds = _bounds(z, y, w)
    for key, expected in _reference(z, y, w).items():
        assert values[key] == pytest.approx(expected, abs=bounds[key]), key
    return values


def test_one_hot_and_integral_float_labels_equal_integer_labels():
    z, y, w = random_batch()
    expected_k_w = to_numpy(nc.sample_head_grams(z, y, w)[1])
    expected_counts = np.bincount(y, minlength=C)
    for labels in (np.eye(C, dtype="float32")[y], y.astype("float32"), y[:, None]):
        k_w = to_numpy(nc.sample_head_grams(z, labels, w)[1])
        np.testing.assert_array_equal(k_w, expected_k_w)
        counts = to_numpy(nc.class_statistics(z, labels, C)["counts"])
        np.testing.assert_array_equal(counts, expected_counts)
        cma = float(to_numpy(nc.cma_entropy(z, w, labels)))
        want = ref.cma(z.astype("float64"), w.astype("float64"), y)
        assert cma == pytest.approx(want, abs=cma_tolerance(z, w, y))


def test_all_zero_features():
    z, y, w = random_batch()
    values = _check_against_reference(np.zeros_like(z), y, w)
    # H(K_Z) = 0, so MIR = 0 (documented degenerate case) and HDR = 1.
    assert (values["entropy"], values["mir"], values["hdr"]) == (0.0, 0.0, 1.0)
    # Groups {0, .., 0, anchor}: rank 1, entropy 0 up to its float32 bound.
    assert values["cma"] == pytest.approx(0.0, abs=cma_tolerance(np.zeros_like(z), w, y))
    for key in ("nc1", "cdnv", "equinorm"):
        assert values[key] == 0.0, key
    assert values["etf_error"] == pytest.approx(1.0)  # zero Gram: distance 1 from the ETF


def test_all_zero_head_as_in_a_bias_only_model():
    z, y, w = random_batch()
    values = _check_against_reference(z, y, np.zeros_like(w))
    assert values["mir"] == 0.0 and values["hdr"] == pytest.approx(1.0)
    assert values["class_mir"] == 0.0
    # ||W||_F = 0: the head term is 0 and NC3 is ||M / ||M||_F||^2 = 1.
    # A norm and a sum of squares of C * d float32 terms, one division.
    bound = float32_tolerance(terms=2 * w.size + 1)
    assert values["self_duality"] == pytest.approx(1.0, abs=bound)


def test_a_batch_of_one_sample():
    z, y, w = random_batch(n=1)
    values = _check_against_reference(z, y, w)
    assert values["entropy"] == values["mir"] == values["hdr"] == 0.0
    assert values["ncc"] in (0.0, 1.0)
    for key in ("nc1", "cdnv", "etf_error", "equinorm", "self_duality"):
        assert values[key] == 0.0, key  # fewer than two classes present


def test_a_one_class_batch():
    z, y, w = random_batch()
    y = np.full_like(y, 2)
    values = _check_against_reference(z, y, w)
    # K_W is all ones (rank 1): MIR = 0 and HDR = 1; class measures need two classes.
    assert values["mir"] == 0.0 and values["hdr"] == pytest.approx(1.0)
    assert values["class_mir"] == values["class_hdr"] == 0.0
    assert values["nc1"] == values["etf_error"] == 0.0


@pytest.mark.parametrize("num_classes", [1, 2])
def test_one_and_two_classes(num_classes):
    z, y, w = random_batch(c=num_classes)
    values = _check_against_reference(z, y, w)
    if num_classes == 2:
        # Two centred class means are antipodal: a rank-1 class Gram, degenerate
        # (docs/concepts.md, "Values at Neural Collapse").
        assert values["class_mir"] == 0.0 and values["class_hdr"] == pytest.approx(1.0)


def test_an_empty_batch():
    z, y, w = random_batch(n=0)
    values = _evaluate(z, y, w)
    for key, value in values.items():
        assert value == 0.0, (key, value)
    stats = nc.class_statistics(z, y, C)
    assert float(to_numpy(keras.ops.sum(stats["counts"]))) == 0.0


def test_metrics_and_losses_accept_an_empty_batch():
    z, y, w = random_batch(n=0)
    metric = metrics.MIR()
    metric.update_state(y, features=z, head_weights=w)
    assert float(to_numpy(metric.result())) == 0.0
    nc1 = metrics.NC1(num_classes=C, feature_dim=D)
    nc1.update_state(y, features=z, head_weights=w)
    assert float(to_numpy(nc1.result())) == 0.0
    assert float(to_numpy(losses.CMALoss()(y, features=z, head_weights=w))) == 0.0
    assert float(to_numpy(losses.InformationRegularizer()(y, features=z, head_weights=w))) == 0.0
