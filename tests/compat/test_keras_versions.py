"""The workarounds of `keras_nc.compat.keras_versions`, on both of their paths.

Each workaround takes Keras' own op on the releases that have it and another
path on the older ones; both are checked against NumPy float64 here, on the
installed Keras, by pretending to be an older release where needed (the oldest
release itself runs this file in `make test-oldest-keras`).
"""

import doctest

import keras
import numpy as np
import pytest
from packaging.version import Version

from keras_nc.compat import keras_versions
from tests.helpers import to_numpy
from tests.tolerances import float32_tolerance


def test_keras_version_reads_the_installed_release():
    version = keras_versions.keras_version()
    assert len(version) == 3 and all(isinstance(part, int) for part in version)
    release = Version(keras.__version__).release
    assert version == (*release, 0, 0)[:3], (version, keras.__version__)
    assert (3, 12) <= version < (4,), f"Keras {keras.__version__} is outside keras>=3.12,<4"


@pytest.mark.parametrize("release", ["installed", (3, 13, 2)])
def test_scatter_update_add_sums_repeated_rows(release, monkeypatch):
    if release != "installed":
        monkeypatch.setattr(keras_versions, "keras_version", lambda: release)
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(5, 3)).astype("float32")
    rows = np.array([4, 0, 4, 2, 4, 0], dtype="int32")
    updates = rng.normal(size=(6, 3)).astype("float32")
    expected = inputs.astype(np.float64)
    np.add.at(expected, rows, updates.astype(np.float64))
    got = keras_versions.scatter_update_add(
        keras.ops.convert_to_tensor(inputs),
        keras.ops.convert_to_tensor(rows[:, None]),
        keras.ops.convert_to_tensor(updates),
    )
    assert tuple(got.shape) == inputs.shape
    # At most 3 float32 additions (a row and its 3 updates), partial sums bounded by the scale.
    atol = float32_tolerance(terms=3, scale=np.abs(inputs).max() + 3 * np.abs(updates).max())
    # tol: rtol=0, the bound is the absolute one above
    np.testing.assert_allclose(to_numpy(got), expected, rtol=0, atol=atol)


def test_scatter_update_add_fallback_refuses_multi_axis_indices(monkeypatch):
    monkeypatch.setattr(keras_versions, "keras_version", lambda: (3, 13, 0))
    with pytest.raises(ValueError, match=r"shape \(n, 1\)"):
        keras_versions.scatter_update_add(np.zeros((3, 3)), np.zeros((2, 2), "int32"), np.ones(2))


def test_docstring_examples_run():
    result = doctest.testmod(keras_versions, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
