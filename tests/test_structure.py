"""The code base's structure: no module reaches into another's private names.

Checked with Python's own parser over `keras_nc/` and `recipes/`: no
`from module import _name`, no `module._name` on an imported module, and the
private modules of `keras_nc.ops` (`_guards`, `_spectral`) imported only from
within `keras_nc` (they are the library's shared helpers, not an API).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted(
    path
    for folder in ("keras_nc", "recipes", "studies")
    for path in (ROOT / folder).rglob("*.py")
    if "__pycache__" not in path.parts
)
PRIVATE_MODULES = ("keras_nc.ops._guards", "keras_nc.ops._spectral")


def _module_aliases(tree, root):
    """Names bound to imported modules (`import a.b as m`, `from a import b` of a module)."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update((item.asname or item.name.split(".")[0]) for item in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for item in node.names:
                candidate = root.joinpath(*f"{node.module}.{item.name}".split("."))
                if candidate.with_suffix(".py").exists() or candidate.is_dir():
                    aliases.add(item.asname or item.name)
    return aliases


def _violations(path, root=ROOT):
    tree = ast.parse(path.read_text(), filename=str(path))
    inside_library = path.relative_to(root).parts[0] == "keras_nc"
    aliases = _module_aliases(tree, root)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            private = [item.name for item in node.names if item.name.startswith("_")]
            if private and node.module != "__future__":
                found.append(f"line {node.lineno}: from {node.module} import {private}")
            if node.module in PRIVATE_MODULES and not inside_library:
                found.append(f"line {node.lineno}: imports {node.module} outside keras_nc")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = node.value
            if (
                isinstance(owner, ast.Name)
                and owner.id in aliases
                and not node.attr.startswith("__")
            ):
                found.append(f"line {node.lineno}: {owner.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_reaches_into_another_modules_private_names(path):
    assert _violations(path) == []


def test_the_check_finds_what_it_looks_for(tmp_path):
    """The checker itself: a module with each kind of violation is caught."""
    library = tmp_path / "keras_nc"
    (library / "ops").mkdir(parents=True)
    (library / "sample.py").write_text(
        "from keras_nc import ops as nc_ops\n"
        "from keras_nc.ops._guards import guard\n"
        "from keras_nc.ops.entropy import _validated_pair\n"
        "value = nc_ops._hidden\n"
    )
    outside = tmp_path / "recipes"
    outside.mkdir()
    (outside / "sample.py").write_text("from keras_nc.ops._guards import guard\n")
    found = _violations(library / "sample.py", tmp_path)
    assert any("_validated_pair" in item for item in found)
    assert any("nc_ops._hidden" in item for item in found)
    assert not any("outside keras_nc" in item for item in found)  # the library may
    assert any("outside keras_nc" in item for item in _violations(outside / "sample.py", tmp_path))


def _code_lines(function):
    """Lines of a function's body after its docstring."""
    body = function.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    first = body[1] if has_docstring and len(body) > 1 else body[0]
    return function.end_lineno - first.lineno + 1


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if p.parts[len(ROOT.parts)] == "keras_nc"], ids=str
)
def test_library_functions_are_short(path):
    """No function of the library has more than 60 lines of code (one job each)."""
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name} ({_code_lines(node)} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > 60
    ]
    assert long == []
