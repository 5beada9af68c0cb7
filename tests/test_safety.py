"""Safety audit: every artefact keras-nc writes loads in safe mode; no pickle, no lambdas."""

import json
import pathlib
import re
import zipfile

import keras
import numpy as np
import pytest

from keras_nc import losses, metrics
from keras_nc.models import CollapseClassifier
from tests import reference as ref
from tests.helpers import to_numpy
from tests.tolerances import cma_tolerance, cross_entropy_tolerance, information_tolerance

ROOT = pathlib.Path(__file__).resolve().parents[1]

PUBLIC = {
    "MatrixEntropy": metrics.MatrixEntropy,
    "MIR": metrics.MIR,
    "HDR": metrics.HDR,
    "NC1": metrics.NC1,
    "CDNV": metrics.CDNV,
    "ETFError": metrics.ETFError,
    "Equinorm": metrics.Equinorm,
    "SelfDuality": metrics.SelfDuality,
    "NCCAgreement": metrics.NCCAgreement,
    "CMALoss": losses.CMALoss,
    "InformationRegularizer": losses.InformationRegularizer,
    "CollapseClassifier": CollapseClassifier,
}


def test_every_public_class_is_registered_under_keras_nc():
    registered = {
        name.split(">", 1)[1]: obj
        for name, obj in keras.saving.get_custom_objects().items()
        if name.startswith("keras_nc>")
    }
    for name, cls in PUBLIC.items():
        assert registered.get(name) is cls, name


@pytest.mark.parametrize("name", sorted(set(PUBLIC) - {"CollapseClassifier"}))
def test_configs_are_plain_json_and_load_in_safe_mode(name):
    obj = PUBLIC[name]()
    text = json.dumps(keras.saving.serialize_keras_object(obj))  # fails on non-JSON values
    restored = keras.saving.deserialize_keras_object(json.loads(text), safe_mode=True)
    assert type(restored) is type(obj)
    assert restored.get_config() == obj.get_config()


def test_saved_model_archive_holds_no_lambda_and_loads_in_safe_mode(tmp_path):
    inputs = keras.Input((5,))
    backbone = keras.Model(inputs, keras.layers.Dense(4, activation="relu")(inputs))
    model = CollapseClassifier(backbone, num_classes=3)
    model.compile(
        optimizer="sgd",
        loss=[
            "sparse_categorical_crossentropy",
            losses.CMALoss(0.5),
            losses.InformationRegularizer(),
        ],
        metrics=["accuracy"]
        + [cls() for cls in PUBLIC.values() if issubclass(cls, metrics.CollapseMetric)],
    )
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        config = archive.read("config.json").decode()
    assert names <= {"config.json", "metadata.json", "model.weights.h5"}, names
    assert "__lambda__" not in config and "function_type" not in config
    restored = keras.saving.load_model(path, safe_mode=True)

    def collapse_metrics(m):
        listed = [item for entry in m.metrics for item in getattr(entry, "metrics", [entry])]
        return [item.name for item in listed if isinstance(item, metrics.CollapseMetric)]

    assert collapse_metrics(restored) == collapse_metrics(model) and len(collapse_metrics(model))
    restored_losses = keras.saving.deserialize_keras_object(
        restored.get_compile_config()["loss"], safe_mode=True
    )
    assert [type(item) for item in restored_losses[1:]] == [
        losses.CMALoss,
        losses.InformationRegularizer,
    ]
    # And the restored model uses them: the same total loss on the same weights.
    x = np.random.default_rng(0).normal(size=(12, 5)).astype("float32")
    y = np.arange(12) % 3
    expected = model.evaluate(x, y, batch_size=12, verbose=0, return_dict=True)["loss"]
    again = restored.evaluate(x, y, batch_size=12, verbose=0, return_dict=True)["loss"]
    # Two float32 evaluations of one loss, each within its float64 bound: within twice.
    np.testing.assert_allclose(again, expected, atol=2 * _loss_tolerance(model, x, y))


def _loss_tolerance(model, x, y):
    """Float32 bound of cross-entropy + 0.5 CMA + the regulariser (weights 0.5, 0.5).

    Cross-entropy: a log-sum-exp of C terms and a mean of n, at the loss's scale;
    CMA: each class group's entropy bound (a matrix of n + C rows) over the log of its
    size; MIR and HDR: `information_tolerance` of the batch's sample-head Grams.
    """
    z = to_numpy(model.extract_features(x)).astype(np.float64)
    head = to_numpy(model.head_weights).astype(np.float64)
    cma = cma_tolerance(z, head, y)
    k_z, k_w = ref.gram(z, center=True), ref.gram(head[y])
    information = information_tolerance(k_z, k_w) + information_tolerance(k_z, k_w, "hdr")
    ce_bound = cross_entropy_tolerance(z @ head.T + to_numpy(model.head.bias), y)
    return ce_bound + 0.5 * cma + 0.5 * information


UNSAFE = re.compile(
    r"\bimport (pickle|dill|marshal|cloudpickle)\b|layers\.Lambda\b|allow_pickle\s*=\s*True"
    r"|safe_mode\s*=\s*False|enable_unsafe_deserialization"
)


def test_no_source_file_uses_pickle_lambda_layers_or_unsafe_loading():
    sources = [
        path
        for folder in ("keras_nc", "recipes", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
    ]
    assert len(sources) > 10 and ROOT / "keras_nc" / "models" / "collapse_classifier.py" in sources
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if UNSAFE.search(line)
    ]
    assert not offenders, offenders
