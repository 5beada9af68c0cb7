"""The `>>>` examples of the docstrings run (on one backend: they are backend-agnostic)."""

import doctest
import importlib

import pytest

from tests.helpers import BACKEND

# The modules whose docstrings hold `>>>` examples (the others show ```python blocks).
MODULES = [
    "keras_nc.ops._guards",
    "keras_nc.ops.entropy",
    "keras_nc.ops.information",
    "keras_nc.ops.statistics",
    "keras_nc.ops.sample_head",
    "keras_nc.ops.class_pairing",
    "keras_nc.ops.collapse",
    "keras_nc.ops.cma",
    "keras_nc.ops.rank",
    "keras_nc.layerwise",
    "keras_nc.metrics.class_statistics",
    "keras_nc.step",
    "keras_nc.sharding",
    "keras_nc.multi_worker",
    "keras_nc.models.collapse_terms",
    "keras_nc.models.wrapping",
    "keras_nc.compat.training",
    "keras_nc.compat.metrics",
    "keras_nc.compat.distribute",
    "keras_nc.compat.keras_versions",
    "keras_nc.metrics.accumulate",
    "keras_nc.callbacks.evaluator",
    "keras_nc.callbacks.data",
    "keras_nc.deprecation",
    "keras_nc.theory",
    "keras_nc.plotting",
    "recipes.program",
]


@pytest.mark.skipif(BACKEND != "torch", reason="the examples run eagerly; one backend suffices")
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"no examples found in {name}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
