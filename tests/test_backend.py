"""minidl.backend: array modules, device names, moves between host and GPU, and clear errors without a GPU."""
import os
import subprocess
import sys

import numpy
import pytest

import minidl
from minidl import backend
from minidl.nn import Conv2d

from helpers import gpu_or_skip


def no_gpu_or_skip():
    if backend.gpu_available():
        pytest.skip("a GPU is present: the no-GPU error path cannot be exercised")


def test_host_arrays_use_numpy():
    x = numpy.zeros((2, 3), numpy.float32)
    assert backend.get_array_module(x) is numpy
    assert backend.get_array_module(1.5) is numpy
    assert not backend.is_gpu_array(x) and backend.device_of(x) == "cpu"


def test_gpu_available_is_a_bool():
    assert isinstance(backend.gpu_available(), bool)


def test_to_device_cpu_round_trip_keeps_values_dtype_and_identity(rng):
    x = rng.standard_normal((2, 3)).astype(numpy.float32)
    moved = backend.to_device(x, "cpu")
    assert moved is x
    numpy.testing.assert_array_equal(backend.to_numpy([[1.0, 2.0]]), numpy.array([[1.0, 2.0]]))


@pytest.mark.parametrize("name, expected", [("cpu", "cpu"), ("CPU", "cpu"), ("gpu", "gpu"), ("cuda", "gpu"),
                                            ("cuda:0", "gpu")])
def test_device_names(name, expected):
    assert backend.check_device_name(name) == expected


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="unknown device 'tpu': expected 'cpu' or 'gpu'"):
        backend.to_device(numpy.zeros(2), "tpu")


def test_to_device_gpu_without_a_gpu_names_the_reason():
    no_gpu_or_skip()
    with pytest.raises(RuntimeError, match=r"to_device: device 'gpu' requested but no usable GPU: "
                                           r"(CuPy cannot be imported|CuPy is installed but sees no CUDA device)"):
        backend.to_device(numpy.zeros(2), "gpu")


def test_module_to_gpu_without_a_gpu_names_the_reason_and_changes_nothing():
    no_gpu_or_skip()
    module = Conv2d(2, 3, 3)
    weight = module.weight.data
    with pytest.raises(RuntimeError, match=r"Conv2d.to: device 'gpu' requested but no usable GPU: CuPy"):
        module.to("gpu")
    assert module.weight.data is weight


def test_mixed_devices_are_a_clear_error(monkeypatch):
    class FakeDeviceArray:
        pass

    monkeypatch.setattr(backend, "is_gpu_array", lambda x: isinstance(x, FakeDeviceArray))
    with pytest.raises(RuntimeError, match="Conv2d: input is on the cpu but the weight is on the gpu"):
        backend.check_same_device("Conv2d", numpy.zeros(2), FakeDeviceArray())


def test_importing_and_running_minidl_does_not_import_cupy():
    program = ("import sys, numpy, minidl\n"
               "minidl.nn.Conv2d(1, 1, 3)(numpy.zeros((1, 1, 4, 4), numpy.float32))\n"
               "print('cupy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.gpu
def test_gpu_round_trip(rng):
    cupy = gpu_or_skip()
    x = rng.standard_normal((2, 3)).astype(numpy.float32)
    on_gpu = backend.to_device(x, "gpu")
    assert isinstance(on_gpu, cupy.ndarray) and backend.get_array_module(on_gpu) is cupy
    assert backend.device_of(on_gpu) == "gpu"
    back = backend.to_device(on_gpu, "cpu")
    assert isinstance(back, numpy.ndarray) and back.dtype == numpy.float32
    numpy.testing.assert_array_equal(back, x)


@pytest.mark.gpu
def test_module_to_gpu_and_back(rng):
    cupy = gpu_or_skip()
    module = Conv2d(2, 3, 3)
    expected = module.state_dict()
    module.to("gpu")
    assert isinstance(module.weight.data, cupy.ndarray) and isinstance(module.weight.grad, cupy.ndarray)
    state = module.state_dict()
    assert all(isinstance(value, numpy.ndarray) for value in state.values())
    module.to("cpu")
    for key, value in module.state_dict().items():
        numpy.testing.assert_array_equal(value, expected[key])
    assert minidl.backend.device_of(module.weight.data) == "cpu"


def test_reuse_freed_host_memory_applies_on_glibc_and_changes_no_result():
    import platform
    applied = minidl.backend.reuse_freed_host_memory()
    assert isinstance(applied, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied
    x = numpy.arange(12.0).reshape(1, 3, 2, 2)
    numpy.testing.assert_array_equal(minidl.nn.ReLU()(x - 5), numpy.maximum(x - 5, 0))


def test_loop_over_strided_rows_sets_small_numpy_buffers_and_keeps_col2im_exact():
    from minidl.functional.im2col import col2im
    cols = numpy.random.default_rng(0).standard_normal((2, 3, 3, 3, 5, 7)).astype(numpy.float32)
    expected = col2im(cols, (2, 3, 5, 7), (1, 1), (1, 1), (1, 1))
    previous = minidl.backend.loop_over_strided_rows()
    try:
        assert numpy.getbufsize() == minidl.backend.UNBUFFERED_ROW_ELEMENTS == 256
        numpy.testing.assert_array_equal(col2im(cols, (2, 3, 5, 7), (1, 1), (1, 1), (1, 1)), expected)
    finally:
        numpy.setbufsize(previous)


def numpy_links_openblas():
    """Whether NumPy's build information names OpenBLAS as its BLAS (False where it cannot be read)."""
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (TypeError, KeyError, AttributeError):  # NumPy before 1.26 has no mode="dicts"
        return False
    return "openblas" in str(blas.get("name", "")).lower()


def test_blas_core_reports_the_kernels_openblas_was_told_to_use():
    """OPENBLAS_CORETYPE=Haswell (AVX2) makes NumPy's OpenBLAS run its Haswell kernels; blas_core() reads that back."""
    if backend.blas_core() is None:  # also off Linux: blas_core() reads /proc/self/maps
        # the skip must not rest on blas_core()'s own answer alone: where NumPy's build says it links
        # OpenBLAS, on Linux, a None is the bug this test is for
        assert not (sys.platform.startswith("linux") and numpy_links_openblas()), \
            "NumPy is built with OpenBLAS, but blas_core() could not read its core name"
        pytest.skip("NumPy is not linked to a queryable OpenBLAS here")
    with open("/proc/cpuinfo") as cpuinfo:
        if " avx2 " not in cpuinfo.read():
            pytest.skip("the CPU lacks AVX2, which OpenBLAS's Haswell kernels need")
    code = "from minidl.backend import blas_core; print(blas_core())"
    environment = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    assert result.stdout.strip() == "Haswell"


def test_cpu_budget_limits_host_arrays_only(monkeypatch):
    x = numpy.zeros(3)
    assert backend.cpu_budget(x, 1 << 20) == 1 << 20
    monkeypatch.setattr(backend, "is_gpu_array", lambda array: True)   # as for a CuPy array
    assert backend.cpu_budget(x, 1 << 20) is None


def test_a_gpu_unfolds_as_many_samples_as_its_budget_allows(monkeypatch):
    x = numpy.zeros((8, 1, 2, 2))
    assert backend.samples_per_unfold(x, 100) == 1          # the CPU: one sample at a time
    monkeypatch.setattr(backend, "is_gpu_array", lambda array: True)   # as for a CuPy array
    assert backend.samples_per_unfold(x, backend.GPU_UNFOLD_BYTES // 3) == 3
    assert backend.samples_per_unfold(x, 1) == 8
    assert backend.samples_per_unfold(x, 2 * backend.GPU_UNFOLD_BYTES) == 1   # then bands of rows
    assert backend.samples_per_unfold(numpy.zeros((0, 1, 2, 2)), 1) == 1    # an empty batch: no zero step
