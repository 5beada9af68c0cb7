"""recipes.program: the command-line helpers every recipe shares (help, seed, banner, results)."""

import argparse
import json
import math
import os

import keras
import numpy as np

from recipes import program
from tests.helpers import BACKEND


def _raise_on(name):
    raise AssertionError(f"{name} in strict JSON")


def test_json_safe_turns_numpy_tensors_and_non_finite_numbers_into_json():
    tensor = keras.ops.convert_to_tensor(np.array([1.5, np.nan, np.inf], "float32"))
    value = {
        "scalars": (np.float32(0.5), np.int64(3), np.bool_(True), np.float64(-np.inf)),
        "array": np.array([[1, 2], [3, 4]], "int32"),
        "tensor": tensor,
        "nested": {1: [math.nan, {"deep": math.inf}], "text": "x", "none": None},
        "flag": False,
        "other": object,
    }
    safe = program.json_safe(value)
    assert safe == {
        "scalars": [0.5, 3, True, None],
        "array": [[1, 2], [3, 4]],
        "tensor": [1.5, None, None],
        "nested": {"1": [None, {"deep": None}], "text": "x", "none": None},
        "flag": False,
        "other": str(object),
    }
    # Plain Python types, so the strict encoder accepts the result.
    assert json.loads(json.dumps(safe, allow_nan=False), parse_constant=_raise_on) == safe
    assert type(safe["scalars"][1]) is int and type(safe["scalars"][2]) is bool


def test_write_results_is_strict_json_with_null_for_non_finite(tmp_path):
    results = {"mir": np.float32("nan"), "ratio": -math.inf, "steps": [np.int32(4), None]}
    path = program.write_results(str(tmp_path), results)
    assert path == os.path.join(str(tmp_path), program.RESULTS_FILE)
    text = open(path).read()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("\n")
    assert json.loads(text, parse_constant=_raise_on) == {
        "mir": None,
        "ratio": None,
        "steps": [4, None],
    }
    other = program.write_results(str(tmp_path), {"a": 1}, name="other.json")
    assert os.path.basename(other) == "other.json" and json.load(open(other)) == {"a": 1}


def test_help_formatter_shows_defaults_unless_said_or_empty():
    parser = argparse.ArgumentParser(prog="p", formatter_class=program.HelpFormatter)
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--epochs", type=int, help="epochs (default: 30 for digits)")
    parser.add_argument("--flag", action="store_true", help="a switch")
    parser.add_argument("--width", type=int, default=4, help="width (default: 4)")
    text = " ".join(parser.format_help().split())
    assert "SGD momentum (default: 0.9)" in text
    assert "epochs (default: 30 for digits)" in text and "(default: None)" not in text
    assert "a switch" in text and "(default: False)" not in text
    assert text.count("(default: 4)") == 1  # said once, by the help text


def _draws():
    """A draw of NumPy's global generator (what the seed fixes) and one of the backend's."""
    numpy_draw = np.random.rand()  # noqa: NPY002 (the global generator is the one seeded)
    return numpy_draw, float(keras.ops.convert_to_numpy(keras.random.uniform(())))


def test_start_seeds_creates_the_output_and_names_the_backend(tmp_path, capsys):
    args = argparse.Namespace(output=str(tmp_path / "a" / "b"), seed=3)
    assert program.start(args) == BACKEND
    assert os.path.isdir(args.output)
    first = _draws()
    program.start(args)  # again: the folder exists, the draws repeat
    assert _draws() == first
    program.start(args, seed=4)
    assert _draws() != first
    program.banner("digits", "", "resnet18")
    program.banner()
    assert capsys.readouterr().out.splitlines() == [f"digits, resnet18; {BACKEND} backend", BACKEND]


def test_seed_everything_repeats_backend_draws():
    # (`deterministic=True` switches global kernel settings for the whole session: not here.)
    program.seed_everything(7)
    first = keras.ops.convert_to_numpy(keras.random.normal((3,)))
    program.seed_everything(7)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.random.normal((3,))), first)
