"""`keras_nc.layerwise`: the default block outputs of a residual network, `depth_slopes`."""

import keras

from keras_nc.callbacks import block_outputs
from keras_nc.layerwise import depth_slopes
from tests.helpers import residual_backbone


def test_block_outputs_of_a_residual_network():
    # The stem, every block but the last, whose output the pooled features follow directly.
    assert block_outputs(residual_backbone()) == ["stem_relu", "b1_out", "pool"]
    # A plain chain has no blocks: every layer.
    chain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    assert block_outputs(chain) == [layer.name for layer in chain.layers]


def test_depth_slopes():
    rows = [{"epoch": e, "depth": d, "nc1": 5.0 * 10.0 ** (-0.5 * e * d)}
            for e in (1, 2) for d in range(4)]  # fmt: skip
    assert depth_slopes(rows) == {1: (-0.5, 1.0), 2: (-1.0, 1.0)}
