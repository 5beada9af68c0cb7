"""recipes.registration: each recipe's classes under its own Keras package, legacy names.

Also the layout rules of `recipes/` (issue 34): no recipe class claims the
library's `keras_nc` package, no file is over 350 lines, and no study driver or
committed record lives there (studies are the top-level `studies/` package).
"""

import ast
import pathlib
import warnings

import keras
import numpy as np
import pytest

from recipes import registration

RECIPES = pathlib.Path(registration.__file__).resolve().parent
MAX_LINES = 350


@registration.serializable("registration_test")
class Doubling(keras.layers.Layer):
    def call(self, x):
        return 2 * x


def _sources():
    return sorted(RECIPES.rglob("*.py"))


def test_new_name_and_legacy_alias_are_registered():
    assert (
        keras.saving.get_registered_name(Doubling) == "keras_nc_recipes.registration_test>Doubling"
    )
    legacy = keras.saving.get_custom_objects()["keras_nc>Doubling"]
    assert isinstance(legacy, registration.LegacyName) and legacy.cls is Doubling


def test_a_legacy_config_loads_as_the_new_class_with_a_warning():
    config = keras.saving.serialize_keras_object(Doubling(name="d"))
    config["registered_name"] = "keras_nc>Doubling"  # what 0.2.0 wrote
    with pytest.warns(DeprecationWarning, match="keras_nc>Doubling.*keras_nc_recipes"):
        layer = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert type(layer) is Doubling and layer.name == "d"
    x = np.arange(3.0, dtype="float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), 2 * x)  # exact


def test_the_new_name_loads_without_a_warning():
    config = keras.saving.serialize_keras_object(Doubling())
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert type(keras.saving.deserialize_keras_object(config)) is Doubling


@pytest.mark.parametrize("recipe", ["", "clip.model", "a b", None])
def test_bad_recipe_names_are_refused(recipe):
    with pytest.raises(ValueError, match="`recipe` must be a module-like name"):
        registration.package_of(recipe)


def _registered_packages(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == (
            "register_keras_serializable"
        ):
            for keyword in node.keywords:
                if keyword.arg == "package" and isinstance(keyword.value, ast.Constant):
                    yield keyword.value.value


def test_no_recipe_registers_under_the_library_package():
    found = [
        f"{path.relative_to(RECIPES.parent)}: {package}"
        for path in _sources()
        for package in _registered_packages(path)
        if package == "keras_nc"
    ]
    assert not found, found


def test_recipe_files_are_small_and_hold_no_study_records():
    long = [
        f"{path.relative_to(RECIPES.parent)}: {n} lines"
        for path in _sources()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, f"recipe files over {MAX_LINES} lines: {long}"
    records = sorted(str(p.relative_to(RECIPES.parent)) for p in RECIPES.rglob("*.json"))
    assert not records, f"study records belong under studies/<name>/records/: {records}"
    drivers = [p.name for p in _sources() if p.stem in {"experiment", "doc_tables"}]
    assert not drivers, f"study drivers belong in studies/: {drivers}"
