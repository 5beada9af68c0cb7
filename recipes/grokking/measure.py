"""`SplitMeasures`: accuracy, loss and the collapse measures of the whole train and test sets.

At the end of every "epoch" (a fixed number of steps, see
`recipes.grokking.data.StepBatches`) the callback evaluates a second
`CollapseClassifier` that shares the trained model's backbone and head
(the same variables), compiled with the collapse metrics of `keras_nc.metrics`,
on the training set and on the test set, and adds the results to the epoch
logs as `train_<metric>` and `val_<metric>` (the test set plays Keras'
validation set: `val_` is what `CSVLogger`, `TensorBoard` and `EarlyStopping`
expect of held-out values); Keras' `CSVLogger` and progress bar, placed after
it, write and show them. Training steps therefore pay for
the cross-entropy (and the collapse losses asked for) only.

It is a `keras_nc.callbacks.EpochEndEvaluator` without data: the base
decides when to measure (every epoch), keeps `history` and `seconds` and puts
the values into the logs; `measure` runs the evaluations.
"""

import keras

import keras_nc
from keras_nc.callbacks import EpochEndEvaluator
from keras_nc.metrics import HDR, MIR, NC1, ClassHDR, ClassMIR, MatrixEntropy

# The columns of each split, as logged (`train_<key>`, `val_<key>` for the test set).
KEYS = (
    "loss",
    "accuracy",
    "mir",
    "hdr",
    "mir_class",
    "hdr_class",
    "nc1",
    "matrix_entropy",
    "head_entropy",
)


def measuring_model(model):
    """A `CollapseClassifier` sharing `model`'s backbone and head, compiled with the measures."""
    probe = keras_nc.models.CollapseClassifier(
        model.backbone, model.num_classes, head=model.head, name="measures"
    )
    probe.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            "accuracy",
            MIR(),
            HDR(),
            ClassMIR(),
            ClassHDR(),
            NC1(),
            MatrixEntropy(),
            MatrixEntropy(of="head"),
        ],
    )
    return probe


class SplitMeasures(EpochEndEvaluator):
    """Adds `train_*` and `val_*` (test set) measures (`KEYS`) of whole sets to the epoch logs.

    Args:
        train: `(x, y)` of the training set.
        test: `(x, y)` of the test set.
        batch_size: evaluation batch size; the sample-head MIR, HDR and the
            feature entropy are means over batches of this size, the class
            measures (`mir_class`, `hdr_class`, `nc1`) use the whole set.

    Attributes:
        history: one dict per evaluation: `epoch` (1-based) and the logged values.
        seconds: wall-clock seconds of each evaluation.

    Example:

    ```python
    measures = SplitMeasures((x_train, y_train), (x_test, y_test), batch_size=512)
    model.fit(batches, epochs=60, callbacks=[measures, keras.callbacks.CSVLogger("h.csv")])
    measures.history[-1]["val_accuracy"]
    ```
    """

    def __init__(self, train, test, batch_size=512):
        super().__init__(batch_size=batch_size)
        self.sets = {"train": train, "val": test}
        self._probe = None

    def measure(self):
        """`{"train_loss": ..., "val_nc1": ...}` of the current weights."""
        if self._probe is None:
            self._probe = measuring_model(self.model)
        values = {}
        for split, (x, y) in self.sets.items():
            results = self._probe.evaluate(
                x, y, batch_size=self.batch_size, verbose=0, return_dict=True
            )
            values.update({f"{split}_{key}": float(results[key]) for key in KEYS})
        return values
