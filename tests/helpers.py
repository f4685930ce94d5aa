"""Helpers shared by the tests (import as ``from helpers import ...``)."""
import os

import numpy
import pytest

import minidl
from minidl.gradcheck import away_from_zero, tie_free  # noqa: F401  (the tests import them from here)

REQUIRE_GPU = os.environ.get("MINIDL_REQUIRE_GPU") == "1"
RUNNING_TEST = {"marked_gpu": None}  # set by conftest.py before each test


def gpu_or_skip():
    """Return cupy, or skip the test when no GPU is usable (a failure instead if MINIDL_REQUIRE_GPU=1).

    A test that calls this without the ``gpu`` mark fails, on every machine: ``python -m pytest -m gpu``
    (README) selects the GPU tests by that mark and would miss it.
    """
    if RUNNING_TEST["marked_gpu"] is False:
        pytest.fail("this test needs a GPU but is not marked @pytest.mark.gpu, so `pytest -m gpu` misses it")
    if not minidl.backend.gpu_available():
        try:
            minidl.backend.require_gpu("tests")
            reason = "minidl.backend.gpu_available() is False"
        except RuntimeError as error:  # says why: CuPy cannot be imported, or it sees no CUDA device
            reason = str(error)
        if REQUIRE_GPU:
            pytest.fail(f"MINIDL_REQUIRE_GPU=1 but no CUDA GPU / CuPy is usable ({reason})")
        pytest.skip(f"no CUDA GPU / CuPy available ({reason})")
    return minidl.backend.require_gpu("tests")


def copy_weights(torch_module, minidl_module):
    """Load a PyTorch module's state_dict into a minidl module by name (strict)."""
    minidl_module.load_state_dict({k: v.detach().cpu().numpy() for k, v in torch_module.state_dict().items()})


def relative_difference(actual, expected, floor=0.0):
    """max |actual - expected| / max(max |expected|, floor), both on the host (0 for empty arrays); shapes must agree."""
    actual, expected = minidl.backend.to_numpy(actual), minidl.backend.to_numpy(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if expected.size == 0:
        return 0.0
    scale = max(float(numpy.max(numpy.abs(expected))), floor, 1e-300)
    return float(numpy.max(numpy.abs(actual.astype(numpy.float64) - expected))) / scale


def assert_close(actual, expected, rtol, atol=0.0, name="value"):
    """Elementwise closeness with the worst relative difference in the message."""
    actual, expected = numpy.asarray(actual), numpy.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    scale = numpy.max(numpy.abs(expected)) if expected.size else 0.0
    worst = numpy.max(numpy.abs(actual - expected)) / max(scale, 1e-30) if expected.size else 0.0
    numpy.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                                  err_msg=f"{name}: max |diff| / max |expected| = {worst:.3e}")
