"""The library's surface: where Keras private names may appear, module sizes, package boundaries.

Checked with Python's parser over `keras_nc/`:

- Keras private names (underscore attributes that Keras' own `Model`, `Layer`,
  `Metric`, `Loss`, `Callback` and `Optimizer` objects hold), `keras.src` imports
  and `keras.backend.backend()` queries appear in `keras_nc/compat/` only, so
  a Keras release that changes one breaks one module, whose tests name it.
- Nothing outside `keras_nc/ops/` imports a private module of `keras_nc.ops`.
- No module is longer than `MAX_LINES` unless its docstring says why (a line
  starting `Why one module:`).
"""

import ast
import pathlib

import keras
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "keras_nc"
COMPAT = LIBRARY / "compat"
SOURCES = sorted(p for p in LIBRARY.rglob("*.py") if "__pycache__" not in p.parts)
OUTSIDE_COMPAT = [p for p in SOURCES if COMPAT not in p.parents]
MAX_LINES = 320
SIZE_NOTE = "Why one module:"


def _relative(path):
    return str(path.relative_to(ROOT)) if ROOT in path.parents else path.name


def _keras_private_names():
    """Underscore attributes of Keras' own objects (instances, after compile and fit)."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    objects = [
        model,
        model.layers[0],
        model.optimizer,
        keras.metrics.Mean(),
        keras.losses.MeanSquaredError(),
        keras.callbacks.EarlyStopping(),
    ]
    names = set()
    for item in objects:
        names |= {name for name in dir(item) if name.startswith("_")}
        names |= {name for name in vars(item) if name.startswith("_")}
    return {name for name in names if not name.startswith("__")}


def _own_private_names():
    """Underscore names keras-nc defines itself (assigned attributes, methods, functions)."""
    names = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_"):
                names.add(node.name)
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr.startswith("_"):
                    names.add(target.attr)
    return names


KERAS_PRIVATE = _keras_private_names() - _own_private_names()


def _keras_private_uses(path):
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in KERAS_PRIVATE:
            found.append(f"{_relative(path)}:{node.lineno}: .{node.attr}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "keras.src" in node.value and id(node) not in docstrings:
                found.append(f"{_relative(path)}:{node.lineno}: a string naming keras.src")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [item.name for item in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.append(node.module)
            found += [
                f"{_relative(path)}:{node.lineno}: imports {module}"
                for module in modules
                if module.startswith("keras.src")
            ]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "backend"
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "backend"
        ):
            found.append(f"{_relative(path)}:{node.lineno}: keras.backend.backend()")
    return found


@pytest.mark.parametrize("path", OUTSIDE_COMPAT, ids=_relative)
def test_keras_private_names_and_backend_queries_live_in_compat(path):
    assert _keras_private_uses(path) == []


def test_the_private_name_check_finds_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Doc."""\n'
        "import keras\n"
        "from keras.src.trainers import compile_utils\n"
        "def f(model):\n"
        "    if keras.backend.backend() == 'jax':\n"
        "        return model._compile_config\n"
        "    return 'keras.src.backend.torch'\n"
    )
    found = "\n".join(_keras_private_uses(sample))
    assert "_compile_config" in found
    assert "imports keras.src.trainers" in found
    assert "keras.backend.backend()" in found
    assert "a string naming keras.src" in found


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if LIBRARY / "ops" not in p.parents], ids=_relative
)
def test_private_ops_modules_stay_inside_ops(path):
    imports = [
        node.module
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    ]
    assert not [m for m in imports if m.startswith("keras_nc.ops._")], _relative(path)


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_modules_are_short_or_say_why(path):
    text = path.read_text()
    lines = len(text.splitlines())
    if lines <= MAX_LINES:
        return
    docstring = ast.get_docstring(ast.parse(text)) or ""
    assert SIZE_NOTE in docstring, (
        f"{_relative(path)} has {lines} lines (> {MAX_LINES}): split it by job, or say in its "
        f"docstring, on a line starting {SIZE_NOTE!r}, why it is one module."
    )
