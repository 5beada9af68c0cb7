"""`RankMe`: the representation rank of each batch's features, averaged over an epoch."""

import keras

from keras_nc import ops as nc_ops
from keras_nc.metrics.base import BatchMeasure
from keras_nc.ops.guards import check_flag
from keras_nc.ops.rank import SPECTRA


@keras.saving.register_keras_serializable(package="keras_nc")
class RankMe(BatchMeasure):
    """RankMe (Garrido et al. 2023) of each batch's features, averaged over the epoch.

    `keras_nc.ops.rank_me` of the batch features `(n, d)` (a smooth rank in
    `[1, min(n, d)]`, every singular value to the precision of the float32
    features), averaged over the epoch's batches weighted by their size (a
    batch of fewer than two samples has weight 0). It reads no head rows. The
    value depends on the batch size through `min(n, d)`: compare runs at one
    batch size.

    Args:
        center: subtract the batch mean row first (default `False`, as the
            paper; `True` with `spectrum="covariance"` for reptrix's variant).
        spectrum: `"singular_values"` (RankMe, the default) or
            `"covariance"` (reptrix's `get_rankme`: the eigenvalues of the
            covariance, see `keras_nc.ops.rank_me`).
        epsilon: added to every `p_k`; the paper and reptrix use `1e-7`
            (default 0).
        name: metric name (default `"rank_me"`).
        dtype: metric dtype.

    Example:

    ```python
    model = keras_nc.models.CollapseClassifier(backbone, num_classes=10)
    model.compile(metrics=["accuracy", keras_nc.metrics.RankMe()])
    ```
    """

    needs_head = False
    groups_rows = False  # one value per batch: see the class docstring
    direction = "up"

    def __init__(
        self, center=False, spectrum="singular_values", epsilon=0.0, name="rank_me", dtype=None
    ):
        super().__init__(sample_size=None, name=name, dtype=dtype)
        if spectrum not in SPECTRA:
            raise ValueError(
                f'`spectrum` must be "singular_values" or "covariance"; received {spectrum!r}.'
            )
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
            raise ValueError(f"`epsilon` must be a number in [0, 1); received {epsilon!r}.")
        if not 0 <= epsilon < 1:
            raise ValueError(f"`epsilon` must be a number in [0, 1); received {epsilon!r}.")
        self.center = check_flag(center, "center")
        self.spectrum = spectrum
        self.epsilon = float(epsilon)

    def measure(self, step, features):
        return nc_ops.rank_me(
            features, center=self.center, spectrum=self.spectrum, epsilon=self.epsilon
        )

    def get_config(self):
        config = {k: v for k, v in super().get_config().items() if k != "sample_size"}
        return {
            **config,
            "center": self.center,
            "spectrum": self.spectrum,
            "epsilon": self.epsilon,
        }
