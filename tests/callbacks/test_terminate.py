"""`TerminateOnNonFiniteWeights` (`keras_nc.callbacks.terminate`): stops a diverged run only."""

import numpy as np
import pytest

from keras_nc.callbacks import TerminateOnNonFiniteWeights
from tests.helpers import EDGE_CLASSES, EDGE_DIM, edge_case_data, identity_classifier, to_numpy

C, D = EDGE_CLASSES, EDGE_DIM


def test_terminate_on_non_finite_weights(rng):
    z, y, _ = edge_case_data(rng)
    model = identity_classifier()
    model.compile(optimizer="sgd")  # (collapse metrics would raise on NaN head rows on torch)
    kernel = to_numpy(model.head.kernel).copy()
    kernel[0, 0] = np.nan
    model.head.kernel.assign(kernel)
    stopper = TerminateOnNonFiniteWeights()
    history = model.fit(z, y, batch_size=8, epochs=3, verbose=0, callbacks=[stopper])
    assert len(history.history["loss"]) == 1
    assert stopper.stopped_on is not None and "head" in stopper.stopped_on
    with pytest.raises(ValueError, match="every_n_batches"):
        TerminateOnNonFiniteWeights(every_n_batches=0)


def test_terminate_on_non_finite_weights_leaves_a_finite_run_alone(rng):
    z, y, _ = edge_case_data(rng)
    model = identity_classifier()
    model.compile(optimizer="sgd")
    stopper = TerminateOnNonFiniteWeights(every_n_batches=2)
    history = model.fit(z, y, batch_size=8, epochs=2, verbose=0, callbacks=[stopper])
    assert len(history.history["loss"]) == 2 and stopper.stopped_on is None
