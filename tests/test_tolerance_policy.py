"""Every numeric tolerance in the tests follows the float32 policy or says why it is a literal.

Tolerance policy (tests/tolerances.py): a tolerance is computed from the float32
analysis of the quantity (`entropy_tolerance`, `ratio_tolerance`, `EPS32`, ...), or
is a named module constant, or carries a `# tol:` comment on its line (or the line
above) that says why that literal is right (exact arithmetic, one float32 rounding,
a statistical bound, ...). This test parses every test module and counts the bare
float literals given as tolerances: `atol=`/`rtol=`/`abs=`/`rel=`/`decimal=` keywords,
the positional tolerance of `pytest.approx`, `np.allclose`, `np.isclose` and
`np.testing.assert_allclose` (the whole argument a literal, or a small float literal,
`0 < |v| < 0.1`, anywhere inside it: `abs=bound + 1e-5`), and comparisons `x < 1e-6`,
`x <= 4 * spread + 1e-4` (a small float literal anywhere on the bounding side of a
`<`, `<=`, `>` or `>=`).
"""

import ast
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent
HELPERS = {"tolerances.py", "helpers.py", "reference.py"}
KEYWORDS = {"atol", "rtol", "abs", "rel", "decimal"}
# Positional index of the tolerance argument, by the called function's last name.
POSITIONAL = {"approx": 1, "allclose": 2, "isclose": 2, "assert_allclose": 2}
JUSTIFIED = "tol:"


def _is_literal(node):
    """A number written in the source (also `-1e-6`, `2 ** -20`, `10 * 1e-7`)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _is_literal(node.operand)
    if isinstance(node, ast.BinOp):
        return _is_literal(node.left) and _is_literal(node.right)
    return False


def _small_float(node):
    if not _is_literal(node):
        return False
    try:
        value = eval(compile(ast.Expression(node), "<tol>", "eval"))  # literals only
    except Exception:
        return False
    return isinstance(value, float) and 0 < abs(value) < 0.1


def _name(func):
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _small_floats(node):
    """Line numbers of the small float literals anywhere inside the expression `node`."""
    return [sub.lineno for sub in ast.walk(node) if _small_float(sub)]


def _tolerance(node):
    """Line numbers of the literals of a tolerance argument (whole or small inside)."""
    return [node.lineno] if _is_literal(node) else _small_floats(node)


def _bounding_sides(node):
    """The upper bounds of a comparison: right of `<`/`<=`, left of `>`/`>=`."""
    left = node.left
    for op, right in zip(node.ops, node.comparators, strict=True):
        if isinstance(op, (ast.Lt, ast.LtE)):
            yield right
        elif isinstance(op, (ast.Gt, ast.GtE)):
            yield left
        left = right


def _literal_tolerances(tree):
    """Line numbers of bare literal tolerances in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in KEYWORDS:
                    yield from _tolerance(keyword.value)
            index = POSITIONAL.get(_name(node.func))
            if index is not None and len(node.args) > index:
                yield from _tolerance(node.args[index])
        elif isinstance(node, ast.Compare):
            for side in _bounding_sides(node):
                yield from _small_floats(side)


def unjustified(path):
    """`path:line` of each bare literal tolerance without a `# tol:` reason."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for lineno in sorted(set(_literal_tolerances(ast.parse(source)))):
        context = " ".join(lines[max(0, lineno - 2) : lineno])
        if JUSTIFIED not in context:
            found.append(f"{path.relative_to(TESTS.parent)}:{lineno}: {lines[lineno - 1].strip()}")
    return found


def test_every_literal_tolerance_is_justified():
    found = [
        hit
        for path in sorted(TESTS.rglob("*.py"))
        if path.name not in HELPERS
        for hit in unjustified(path)
    ]
    assert not found, (
        f"{len(found)} bare literal tolerances; use tests/tolerances.py or a named constant, "
        "or say why the literal is right in a `# tol:` comment:\n" + "\n".join(found)
    )


def test_the_scan_finds_each_kind_of_literal(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "np.testing.assert_allclose(a, b, atol=1e-6)\n"
        "assert x == pytest.approx(y, 1e-4)\n"
        "assert np.allclose(a, b, 1e-5)\n"
        "assert abs(a - b) < 1e-7\n"
        "assert x == pytest.approx(y, rel=2 ** -20)\n"
        "# tol: float32 rounding of one product\n"
        "np.testing.assert_allclose(a, b, rtol=1e-6)\n"
        "np.testing.assert_allclose(a, b, atol=TOL)\n"
        "assert abs(n - 3) < 1\n"
        "assert x == pytest.approx(y, abs=bound + 1e-5)\n"
        "np.testing.assert_allclose(a, b, 2 * tol * 1e-3)\n"
        "assert residual < 1e-5\n"
        "assert gap <= 4 * spread + 1e-4\n"
        "assert 1e-6 > residual\n"
        "assert x == pytest.approx(y, abs=0.5 * bound)\n"
        "assert x > 0.05\n"
    )
    hits = [hit.split(":")[1] for hit in unjustified_at(sample)]
    assert hits == ["1", "2", "3", "4", "5", "10", "11", "12", "13", "14"]


def unjustified_at(path):
    source = path.read_text()
    lines = source.splitlines()
    return [
        f"{path.name}:{lineno}"
        for lineno in sorted(set(_literal_tolerances(ast.parse(source))))
        if JUSTIFIED not in " ".join(lines[max(0, lineno - 2) : lineno])
    ]
