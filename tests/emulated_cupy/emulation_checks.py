"""Checks of the emulated CuPy itself: it refuses what CuPy refuses and runs kernels as a GPU would.

Run only by ``tests/test_kernels_emulated.py``, in a subprocess whose ``import cupy``
finds the emulation (importing it here would make every other test see a GPU);
the file name keeps the main test run from collecting it.
"""
import numpy
import pytest

cupy = pytest.importorskip("cupy")
if not cupy.__version__.endswith("-emulated"):
    pytest.skip("checks of the CuPy emulation, not of a real CuPy", allow_module_level=True)

KERNELS = r"""
typedef float T;
typedef int I;
// y[i] = factor * x[i] over a grid of any shape
extern "C" __global__ void scale(const T* x, T* y, I n, T factor)
{
    I i = (I)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) y[i] = factor * x[i];
}
// best = max of keys, total += scale * x (float atomics)
extern "C" __global__ void gather(const T* x, const long long* keys, int* best, T* total, I n, T weight)
{
    I i = (I)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    atomicMax(best, (int)keys[i]);
    atomicAdd(total, weight * x[i]);
}
extern "C" __global__ void sum_doubles(const double* x, double* total, long long n)
{
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(total, x[i]);
}
"""


@pytest.fixture(scope="module")
def module():
    return cupy.RawModule(code=KERNELS)


def device(values, dtype=numpy.float32):
    return cupy.asarray(numpy.asarray(values, dtype=dtype))


# ------------------------------------------------------------------ arrays
def test_a_device_array_is_no_numpy_array_and_converts_only_explicitly():
    x = device([1.5, 2.5])
    assert not isinstance(x, numpy.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        numpy.asarray(x)
    assert x.get().tolist() == [1.5, 2.5] and cupy.asnumpy(x).tolist() == [1.5, 2.5]
    assert float(x.sum()) == 4.0 and int(x[1]) == 2 and f"{x.sum():.1f}" == "4.0"
    with pytest.raises(TypeError, match="cannot be interpreted as an integer"):
        range(cupy.asarray(numpy.int64(3)))


@pytest.mark.parametrize("host", [numpy.ones(2, numpy.float32), numpy.array(1.0, numpy.float32),
                                  [1.0, 1.0]], ids=["array", "0-d array", "list"])
def test_ufuncs_and_operators_refuse_host_operands(host):
    x = device([1.0, 2.0])
    for mix in (lambda: x + host, lambda: cupy.maximum(x, host), lambda: numpy.multiply(x, host)):
        with pytest.raises(TypeError, match="Unsupported type"):
            mix()
    if isinstance(host, numpy.ndarray):
        with pytest.raises(TypeError, match="Unsupported type"):
            host - x


def test_scalars_mix_with_device_arrays_and_results_stay_on_the_device():
    x = device([1.0, 4.0])
    results = [x * 2, 2.0 + x, x / numpy.float32(2), numpy.sqrt(x), numpy.sum(x), x.max()]
    assert all(isinstance(r, cupy.ndarray) for r in results)
    assert [r.get().tolist() for r in results] == [[2.0, 8.0], [3.0, 6.0], [0.5, 2.0], [1.0, 2.0], 5.0, 4.0]
    out = cupy.empty(2, dtype=numpy.float32)
    assert cupy.multiply(x, 3, out=out) is out and out.get().tolist() == [3.0, 12.0]


def test_numpy_functions_cupy_lacks_raise():
    with pytest.raises(TypeError, match="no implementation found for 'numpy.median'"):
        numpy.median(device([1.0, 2.0]))
    with pytest.raises(AttributeError, match="has no attribute 'median'"):
        cupy.median


def test_indexing_takes_host_indices_but_not_host_values_for_basic_indices():
    x = device([10.0, 20.0, 30.0])
    assert x[numpy.array([2, 0])].get().tolist() == [30.0, 10.0]
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        x[1:] = numpy.zeros(2, numpy.float32)
    x[1:] = numpy.asarray(5.0)
    x[numpy.array([0])] = numpy.array([7.0])
    assert x.get().tolist() == [7.0, 5.0, 5.0]


# ------------------------------------------------------------------ kernels
def test_kernel_runs_every_thread_of_the_grid(module):
    x = device(numpy.arange(10))
    y = cupy.zeros(10, dtype=numpy.float32)
    module.get_function("scale")((3,), (4,), (x, y, numpy.int32(10), numpy.float32(0.5)))
    assert y.get().tolist() == [0.5 * k for k in range(10)]


@pytest.mark.parametrize("arguments, message", [
    (lambda x, y: (x, y, 10, numpy.float32(1)), "`I n`: expects int32 \\(4 bytes\\), got int64 \\(8 bytes\\)"),
    (lambda x, y: (x, y, numpy.int64(10), numpy.float32(1)), "`I n`: expects int32"),
    (lambda x, y: (x, y, numpy.int32(10), 1.0), "`T factor`: expects float32 \\(4 bytes\\), got float64"),
    (lambda x, y: (x.astype(numpy.float64), y, numpy.int32(10), numpy.float32(1)),
     "`const T\\* x`: expects a float32 array, got float64"),
    (lambda x, y: (x.get(), y, numpy.int32(10), numpy.float32(1)), "Only numpy.ndarrays of size one"),
    (lambda x, y: (numpy.float32(1), y, numpy.int32(10), numpy.float32(1)), "`const T\\* x`: expects a device"),
    (lambda x, y: (x, y, numpy.int32(10)), "4 parameters, 3 arguments"),
], ids=["python int", "int64", "python float", "float64 array", "host array", "scalar for pointer", "count"])
def test_kernel_arguments_must_match_the_parameter_list(module, arguments, message):
    x, y = device(numpy.arange(10)), cupy.zeros(10, dtype=numpy.float32)
    with pytest.raises(TypeError, match=message):
        module.get_function("scale")((1,), (16,), arguments(x, y))
    assert not y.get().any()


def test_kernel_refuses_strided_arrays_and_oversized_blocks(module):
    x, y = device(numpy.arange(20))[::2], cupy.zeros(10, dtype=numpy.float32)
    with pytest.raises(ValueError, match="not C-contiguous"):
        module.get_function("scale")((1,), (16,), (x, y, numpy.int32(10), numpy.float32(1)))
    with pytest.raises(cupy.cuda.driver.CUDADriverError, match="CUDA_ERROR_INVALID_VALUE"):
        module.get_function("scale")((1,), (2048,), (x.copy(), y, numpy.int32(10), numpy.float32(1)))


def test_atomics_and_every_parameter_kind(module):
    x = device([1.0, 2.0, 3.0, 4.0])
    keys = cupy.asarray(numpy.array([3, 9, -2, 5], dtype=numpy.int64))
    best, total = cupy.asarray(numpy.array([-100], numpy.int32)), cupy.zeros(1, dtype=numpy.float32)
    module.get_function("gather")((2,), (3,), (x, keys, best, total, numpy.int32(4), numpy.float32(0.5)))
    assert int(best[0]) == 9 and float(total[0]) == 5.0
    doubles, double_total = device([0.25, 0.5, 1.0], numpy.float64), cupy.zeros(1, dtype=numpy.float64)
    module.get_function("sum_doubles")((1,), (8,), (doubles, double_total, 3))
    assert float(double_total[0]) == 1.75


# ------------------------------------------------------------------ events
def test_events_time_only_synchronized_work():
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    with pytest.raises(cupy.cuda.runtime.CUDARuntimeError, match="cudaErrorInvalidResourceHandle"):
        cupy.cuda.get_elapsed_time(start, end)
    start.record()
    end.record()
    assert not end.done
    with pytest.raises(cupy.cuda.runtime.CUDARuntimeError, match="cudaErrorNotReady"):
        cupy.cuda.get_elapsed_time(start, end)
    end.synchronize()
    assert start.done and end.done and cupy.cuda.get_elapsed_time(start, end) >= 0.0


@pytest.mark.parametrize("synchronize", [lambda: cupy.cuda.Device().synchronize(),
                                         lambda: cupy.cuda.get_current_stream().synchronize(),
                                         lambda: float(device([1.0]).sum())],
                         ids=["device", "stream", "host read"])
def test_device_stream_and_host_reads_complete_recorded_events(synchronize):
    event = cupy.cuda.Event()
    event.record()
    assert not event.done
    synchronize()
    assert event.done
