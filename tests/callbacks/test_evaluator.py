"""`EpochEndEvaluator` (`keras_nc.callbacks.evaluator`): subclasses with and without data."""

import numpy as np
import pytest

from keras_nc.callbacks import EpochEndEvaluator
from tests.helpers import small_classifier_and_data, to_numpy
from tests.tolerances import float32_tolerance


class _MeanNorm(EpochEndEvaluator):
    """A subclass measuring the gathered features: their mean norm and the head's shape."""

    def measure(self, features, labels, logits, head_weights):
        assert logits.shape == (len(labels), head_weights.shape[0])
        return {"mean": float(np.linalg.norm(features, axis=1).mean()), "rows": 4.0}


class _OwnEvaluation(EpochEndEvaluator):
    """A subclass without data (as the recipes' `model.evaluate` callbacks): its own values."""

    def __init__(self, x, y):
        super().__init__(prefix="probe")
        self.x_probe, self.y_probe = x, y

    def measure(self):
        results = self.model.evaluate(self.x_probe, self.y_probe, verbose=0, return_dict=True)
        return {"loss": float(results["loss"])}


def test_epoch_end_evaluator_subclasses_with_and_without_data(capsys):
    model, x, y = small_classifier_and_data()
    norms = _MeanNorm(x, y, epochs=[2, 3], prefix="norm", verbose=True)
    own = _OwnEvaluation(x, y)
    history = model.fit(x, y, epochs=3, batch_size=40, callbacks=[norms, own], verbose=0).history
    assert [row["epoch"] for row in norms.history] == [2, 3]
    assert [row["epoch"] for row in own.history] == [1, 2, 3]
    z = to_numpy(model.extract_features(x))
    expected = np.mean(np.sqrt(np.sum(z.astype("float64") ** 2, axis=1)))
    # The float32 norms (d squares summed) averaged over n rows: d + n roundings, relative.
    rtol = float32_tolerance(terms=z.shape[1] + len(z))
    assert norms.history[-1]["mean"] == pytest.approx(expected, rel=rtol)
    assert "norm_mean" in history and "norm_rows" in history
    assert history["probe_loss"] == [row["loss"] for row in own.history]
    assert len(norms.seconds) == 2 and own.classifier is None
    assert "1/1" in capsys.readouterr().out  # the progress bar of the verbose evaluator
    with pytest.raises(NotImplementedError, match="must implement `measure`"):
        EpochEndEvaluator(x, y).measure()
    with pytest.raises(ValueError, match="`y` was given without `x`"):
        EpochEndEvaluator(y=y)
