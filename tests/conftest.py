"""Shared fixtures: the PyTorch oracle, seeded generators and tie-free inputs; the gpu mark's guard."""
import os

import numpy
import pytest

import helpers
import minidl

REQUIRE_TORCH = os.environ.get("MINIDL_REQUIRE_TORCH") == "1"


@pytest.fixture
def torch():
    """PyTorch as a test oracle: skipped if absent, a failure if MINIDL_REQUIRE_TORCH=1."""
    try:
        import torch as torch_module
    except ImportError:
        if REQUIRE_TORCH:
            pytest.fail("MINIDL_REQUIRE_TORCH=1 but PyTorch cannot be imported")
        pytest.skip("PyTorch is not installed; parity tests skipped (finite-difference tests still run)")
    torch_module.set_num_threads(max(1, os.cpu_count() or 1))
    return torch_module


@pytest.fixture
def rng():
    return numpy.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_minidl():
    minidl.manual_seed(0)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Tell ``helpers.gpu_or_skip`` whether the test about to run (fixtures included) is marked ``gpu``."""
    helpers.RUNNING_TEST["marked_gpu"] = item.get_closest_marker("gpu") is not None
