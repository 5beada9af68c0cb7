"""The release's version and dependency ranges: one version, pins inside the ranges.

`keras_nc.__version__` comes from the installed distribution's metadata (or, in a
source tree that is not installed, from `pyproject.toml`), so it cannot drift
from the version pip reports. The exact versions CI tests
(`requirements/constraints.txt`, the newest; `requirements/oldest.txt`, the
oldest) must lie inside the ranges `pyproject.toml` declares, or the tests would
not test what users install.
"""

import os
import pathlib
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import keras_nc

tomllib = pytest.importorskip("tomllib")

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins(name):
    """`{canonical name: Version}` of the `name==version` lines of a requirements file."""
    pins = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pins


def _declared():
    """Every requirement of pyproject.toml: the dependencies and each extra's."""
    lines = list(PROJECT["dependencies"])
    for extra in PROJECT["optional-dependencies"].values():
        lines += extra
    return [Requirement(line) for line in lines]


def test_version_is_pyprojects():
    assert keras_nc.__version__ == PROJECT["version"] == "0.3.0"


def test_version_without_installed_metadata_is_read_from_pyproject():
    # A source tree on sys.path that pip never installed: no distribution metadata.
    code = (
        "import importlib.metadata as m\n"
        "def missing(name):\n"
        "    raise m.PackageNotFoundError(name)\n"
        "m.version = missing\n"
        "import keras_nc\n"
        "print(keras_nc.__version__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == PROJECT["version"]


@pytest.mark.parametrize("pins", ["constraints.txt", "oldest.txt"])
def test_tested_versions_lie_in_the_declared_ranges(pins):
    pinned = _pins(pins)
    checked = 0
    for requirement in _declared():
        version = pinned.get(canonicalize_name(requirement.name))
        if version is not None and requirement.specifier:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"requirements/{pins} pins {requirement.name}=={version}, outside "
                f"pyproject.toml's {requirement}"
            )
            checked += 1
    assert checked >= 3, f"requirements/{pins} pins fewer than 3 declared packages"


def test_oldest_pins_are_the_declared_lower_bounds():
    pinned = _pins("oldest.txt")
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        if name in ("keras", "jax", "jaxlib"):
            (lower,) = [s for s in requirement.specifier if s.operator == ">="]
            assert pinned[name].release[:2] == Version(lower.version).release[:2], (
                f"requirements/oldest.txt pins {name}=={pinned[name]}; pyproject.toml's "
                f"lower bound is {lower.version}: test the oldest minor release declared"
            )
