"""Shared fixtures: the PyTorch oracle, seeded generators and tie-free inputs; the gpu mark's guard; engines.

The layer, loss and model test files run every test once per engine. A test marked ``engines(...)`` runs on
just those engines, in any file; every other test runs on the engine MINIDL_ENGINE chose at import.
"""
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


PER_ENGINE_FILES = ("test_activation.py", "test_batchnorm.py", "test_conv.py", "test_gradcheck.py", "test_hooks.py",
                    "test_losses.py", "test_models.py", "test_pooling.py", "test_upsample.py")


def pytest_generate_tests(metafunc):
    """Parametrise ``engine_name`` over the engines a test runs on (see the module docstring)."""
    marker = metafunc.definition.get_closest_marker("engines")
    if marker is not None:
        metafunc.parametrize("engine_name", marker.args, indirect=True)
    elif os.path.basename(metafunc.module.__file__) in PER_ENGINE_FILES:
        metafunc.parametrize("engine_name", minidl.engines.ENGINES, indirect=True)


@pytest.fixture(autouse=True)
def engine_name(request):
    """The engine the test runs on, set for its duration."""
    with minidl.engine(getattr(request, "param", minidl.get_engine())):
        yield minidl.get_engine()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Tell ``helpers.gpu_or_skip`` whether the test about to run (fixtures included) is marked ``gpu``."""
    helpers.RUNNING_TEST["marked_gpu"] = item.get_closest_marker("gpu") is not None
