"""Pytest configuration: XLA compile level, the Hypothesis profile, shared fixtures.

Helpers (autodiff, compilation, NumPy views) are in `tests/helpers.py`.

Tolerance policy: every numerical tolerance follows from the float32 analysis
of the quantity, evaluated on the float64 reference of the test's own data,
never from the value one machine returned (tests/tolerances.py states the
analysis for entropies of each order, MIR/HDR, the NC measures and CMA). The
numerics tests also run under other CPU kernels in CI (`make test-kernels`).
"""

import os

# Most of the JAX suite's time is XLA's CPU compiler optimising tiny programs
# (about 1.4 s per shape for a random initializer on 2 cores, 0.3 s at level 0).
# The tests check values, not speed, on small shapes: skip LLVM's optimisations
# (must be set before the first XLA computation; a user's XLA_FLAGS are kept).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
