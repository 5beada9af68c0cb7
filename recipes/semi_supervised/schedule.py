"""`USBCosineDecay`: the learning-rate schedule of USB (arXiv 2208.07204) for the trainers.

Registered for Keras serialisation as
`keras_nc_recipes.semi_supervised>USBCosineDecay` (`recipes.registration`), so
that a saved model's optimizer loads with `safe_mode=True`.

Example:

```python
optimizer = keras.optimizers.SGD(USBCosineDecay(0.03, total_steps=2**20), momentum=0.9)
```
"""

import math

import keras

from recipes.registration import serializable


@serializable("semi_supervised")
class USBCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """USB's learning rate: `lr * cos(7 pi k / (16 K))` at step `k` of `K`.

    Ends at `lr * cos(7 pi / 16)`, about `0.2 lr`.

    Example:

    ```python
    schedule = USBCosineDecay(0.03, total_steps=2**20)
    ```
    """

    def __init__(self, initial_learning_rate, total_steps):
        if not initial_learning_rate > 0:
            raise ValueError(
                f"`initial_learning_rate` must be > 0; received {initial_learning_rate!r}."
            )
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"`total_steps` must be a positive integer; received {total_steps!r}.")
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = total_steps

    def __call__(self, step):
        progress = keras.ops.minimum(keras.ops.cast(step, "float32") / self.total_steps, 1.0)
        return self.initial_learning_rate * keras.ops.cos(7.0 * math.pi * progress / 16.0)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "total_steps": self.total_steps,
        }
