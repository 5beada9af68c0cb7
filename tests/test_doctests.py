"""The `>>>` examples of the docstrings run (on one backend: they are backend-agnostic).

The modules are found, not listed: every module of `keras_nc/`, `recipes/` and
`studies/` (where present) with a `>>>` example in a docstring (module, class or
function) is run, so a new module's examples are covered without editing this file.
"""

import ast
import doctest
import importlib
import pathlib

import pytest

from tests.helpers import BACKEND

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("keras_nc", "recipes", "studies")


def _has_examples(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = [tree] + [
        node
        for node in ast.walk(tree)
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    return any(">>> " in (ast.get_docstring(node, clean=False) or "") for node in nodes)


def modules_with_examples():
    """Dotted names of the modules whose docstrings hold `>>>` examples, sorted."""
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if _has_examples(path):
                parts = path.relative_to(ROOT).with_suffix("").parts
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


MODULES = modules_with_examples()


def test_discovery_finds_the_modules_with_examples():
    # Modules of each kind the list held before it was discovered, and one without examples.
    known = ("keras_nc.ops.entropy", "keras_nc.ops._guards", "keras_nc.layerwise",
             "keras_nc.compat.training", "keras_nc.callbacks.data", "recipes.program")  # fmt: skip
    for name in known:
        assert name in MODULES, name
    assert "keras_nc.ops.cma_plan" not in MODULES


@pytest.mark.skipif(BACKEND != "torch", reason="the examples run eagerly; one backend suffices")
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"no examples found in {name}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
