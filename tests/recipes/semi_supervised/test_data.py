"""recipes.semi_supervised.data and the program's validation hold-out: splits and views."""

import numpy as np
import pytest

from recipes.semi_supervised import data as ssl_data
from recipes.semi_supervised import train
from tests.helpers import BACKEND
from tests.recipes.semi_supervised.support import C
from tests.tolerances import float32_tolerance

# RandAugment's ops interpolate between pixel values and clip to the input range:
# a value may leave it by the rounding of one float32 product of values of order 1.
RANGE_TOL = float32_tolerance(terms=1, scale=1.5)


# The pipeline is tf.data whatever the backend; under JAX, Keras takes about 25 s to
# trace RandAugment into it (the program tests still cover JAX).
@pytest.mark.skipif(BACKEND == "jax", reason="slow RandAugment tracing under JAX")
def test_split_and_views():
    labels = np.repeat(np.arange(C), 10)
    labeled, unlabeled = ssl_data.split_labeled(labels, 3, seed=1)
    assert np.array_equal(np.bincount(labels[labeled]), [3] * C)
    assert np.array_equal(np.sort(np.concatenate([labeled, unlabeled])), np.arange(len(labels)))
    assert np.array_equal(ssl_data.split_labeled(labels, 3, seed=1)[0], labeled)
    assert not np.array_equal(ssl_data.split_labeled(labels, 3, seed=2)[0], labeled)

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(len(labels), 8, 8, 1)).astype("float32") * 2 - 0.5  # range [-0.5, 1.5]
    dataset = ssl_data.semi_supervised_dataset(
        x[labeled], labels[labeled], x[unlabeled], batch_size=4, uratio=2,
        unlabeled_labels=labels[unlabeled], num_ops=1, seed=0,
    )  # fmt: skip
    batch, y = next(iter(dataset))
    assert batch["labeled"].shape == (4, 8, 8, 1) and y.shape == (4,)
    for key in ("unlabeled_weak", "unlabeled_strong"):
        assert batch[key].shape == (8, 8, 8, 1)
        values = batch[key].numpy()
        assert values.min() >= x.min() - RANGE_TOL and values.max() <= x.max() + RANGE_TOL
    assert set(batch["unlabeled_labels"].numpy()) <= set(labels)
    assert not np.allclose(batch["unlabeled_weak"].numpy(), batch["unlabeled_strong"].numpy())
    supervised = ssl_data.semi_supervised_dataset(x[labeled], labels[labeled], batch_size=4)
    only, _ = next(iter(supervised))
    assert set(only) == {"labeled"}


def test_hold_out_validation_is_a_fixed_disjoint_draw():
    validation, rest = train.hold_out_validation(50, 8)
    assert len(validation) == 8 and len(rest) == 42
    assert np.array_equal(np.sort(np.concatenate([validation, rest])), np.arange(50))
    again, _ = train.hold_out_validation(50, 8)
    assert np.array_equal(again, validation)  # independent of any run seed
    assert not np.array_equal(train.hold_out_validation(50, 8, seed=1)[0], validation)
    with pytest.raises(ValueError, match="`validation_samples` must be smaller than"):
        train.hold_out_validation(50, 50)
