"""Shared fixtures: the PyTorch oracle, seeded generators and tie-free inputs."""
import os

import numpy
import pytest

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


def tie_free(shape, rng, dtype=numpy.float64):
    """A shuffled linspace plus a little jitter: no two entries are equal (for max-pool tests)."""
    size = int(numpy.prod(shape))
    values = numpy.linspace(-3.0, 3.0, size) + rng.uniform(0, 0.25 * 6.0 / max(size, 1), size)
    return rng.permutation(values).reshape(shape).astype(dtype)


def gpu_or_skip():
    """Return cupy, or skip the test when no GPU is usable."""
    if not minidl.backend.gpu_available():
        pytest.skip("no CUDA GPU / CuPy available")
    return minidl.backend.require_gpu("tests")
