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
    np.testing.assert_allclose(again, expected, rtol=1e-5)


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
