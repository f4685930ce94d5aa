"""A stand-in for CuPy that runs minidl's CUDA kernels on the CPU: a test harness, not a GPU.

``tests/test_kernels_emulated.py`` puts this folder first on PYTHONPATH and runs
``tests/test_gpu.py`` against it, so CI (which has no GPU) still executes the
CUDA C of ``minidl/kernels.py`` and checks it against the host code.

Device arrays are a numpy.ndarray subclass (``ndarray``); mixing them with
host arrays in a ufunc, a NumPy function or an index raises TypeError, as real
CuPy does, so a host/device slip in the library shows up here. ``RawModule``
compiles the CUDA C with g++ through a small shim (blockIdx/threadIdx as
globals) and runs every thread of the grid one after another. What this cannot
check: real GPU timing, memory coalescing, races between threads, and anything
cuBLAS does; those need ``python -m pytest -m gpu`` on a real GPU.
"""
import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
import types

import numpy

_BUILD = os.environ.get("FAKE_CUPY_BUILD", os.path.join(tempfile.gettempdir(), "minidl-emulated-cupy"))
SHIM = r"""
#include <cmath>
#include <cstring>
struct minidl_uint3 { unsigned int x, y, z; };
static minidl_uint3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
using std::isnan;
using std::sqrt;
static inline int atomicMax(int* address, int value) { int old = *address; if (value > old) *address = value; return old; }
"""
KERNEL_RE = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)', re.S)


def _host(a):
    return isinstance(a, numpy.ndarray) and not isinstance(a, ndarray) and a.ndim > 0


def _walk(obj):
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _walk(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _walk(item)
    else:
        yield obj


def _wrap(result):
    if isinstance(result, numpy.generic):  # cupy reductions and item access give 0-d device arrays
        return numpy.asarray(result).view(ndarray)
    if isinstance(result, numpy.ndarray) and not isinstance(result, ndarray):
        return result.view(ndarray)
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, list):
        return [_wrap(r) for r in result]
    return result


def _unwrap(obj):
    if isinstance(obj, ndarray):
        return obj.view(numpy.ndarray)
    if isinstance(obj, tuple):
        return tuple(_unwrap(o) for o in obj)
    if isinstance(obj, list):
        return [_unwrap(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


class ndarray(numpy.ndarray):
    """Fake device array."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        everything = list(_walk(inputs)) + list(_walk(kwargs.get("out", ())))
        if any(_host(a) for a in everything):
            raise TypeError(f"fake cupy: host numpy array mixed with device array in {ufunc.__name__}.{method}")
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        if any(_host(a) for a in list(_walk(args)) + list(_walk(kwargs))):
            raise TypeError(f"fake cupy: host numpy array mixed with device array in numpy.{func.__name__}")
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getitem__(self, key):
        if any(_host(k) for k in _walk(key)):
            raise TypeError("fake cupy: indexing a device array with a host array")
        return _wrap(super().__getitem__(key))

    def __setitem__(self, key, value):
        if _host(value) or any(_host(k) for k in _walk(key)):
            raise TypeError("fake cupy: setting device array items from a host array")
        super().__setitem__(key, value)

    def get(self):
        return numpy.array(self.view(numpy.ndarray), copy=True)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("fake cupy: implicit conversion to a NumPy array is not allowed")

    def tolist(self):
        return self.view(numpy.ndarray).tolist()

    def item(self, *args):
        return self.view(numpy.ndarray).item(*args)

    def __format__(self, spec):
        if spec:
            raise TypeError("fake cupy: unsupported format string passed to cupy.ndarray.__format__")
        return str(self)

    def __index__(self):
        raise TypeError("fake cupy: a device array cannot be used as an index (__index__)")

    def __float__(self):
        return float(self.view(numpy.ndarray))

    def __int__(self):
        return int(self.view(numpy.ndarray))

    def __bool__(self):
        return bool(self.view(numpy.ndarray))


def asarray(a, dtype=None):
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    return numpy.array(a, dtype=dtype, copy=True).view(ndarray)


array = asarray


def asnumpy(a):
    return a.get() if isinstance(a, ndarray) else numpy.asarray(a)


def ascontiguousarray(a, dtype=None):
    return numpy.ascontiguousarray(a.view(numpy.ndarray), dtype=dtype).view(ndarray)


def _creator(name):
    function = getattr(numpy, name)

    def create(*args, **kwargs):
        return _wrap(function(*_unwrap(args), **_unwrap(kwargs)))
    return create


for _name in ("empty", "zeros", "ones", "full", "arange", "linspace", "eye", "empty_like", "zeros_like",
              "ones_like", "full_like"):
    globals()[_name] = _creator(_name)


def __getattr__(name):
    attribute = getattr(numpy, name)
    if callable(attribute) and not isinstance(attribute, type):
        return _creator(name)
    return attribute


class _RawFunction:
    def __init__(self, library, name):
        self.function = getattr(library, name + "_grid")
        self.name = name

    def __call__(self, grid, block, args):
        converted, argtypes = [], [ctypes.c_uint, ctypes.c_uint]
        for a in args:
            if isinstance(a, numpy.ndarray):
                assert a.flags.c_contiguous, f"{self.name}: non-contiguous array argument"
                converted.append(ctypes.c_void_p(a.ctypes.data))
                argtypes.append(ctypes.c_void_p)
            else:
                ctype = {numpy.int32: ctypes.c_int32, numpy.int64: ctypes.c_int64,
                         numpy.float32: ctypes.c_float, numpy.float64: ctypes.c_double}[type(a)]
                converted.append(ctype(a))
                argtypes.append(ctype)
        self.function.argtypes = argtypes
        RawModule.launches.append(self.name)
        self.function(grid[0], block[0], *converted)


class RawModule:
    compiles = []
    launches = []

    def __init__(self, code, options=()):
        wrappers = []
        for name, params in KERNEL_RE.findall(code):
            names = [re.findall(r"\w+", p)[-1] for p in params.split(",")]
            wrappers.append(
                f'extern "C" void {name}_grid(unsigned int blocks, unsigned int threads, {params}) {{\n'
                f"  blockDim.x = threads; gridDim.x = blocks;\n"
                f"  for (unsigned int b = 0; b < blocks; ++b) for (unsigned int t = 0; t < threads; ++t) {{\n"
                f"    blockIdx.x = b; threadIdx.x = t; {name}({', '.join(names)}); }}\n}}\n")
        full = SHIM + code + "\n" + "".join(wrappers)
        digest = hashlib.sha1(full.encode()).hexdigest()[:16]
        os.makedirs(_BUILD, exist_ok=True)
        flags = os.environ.get("FAKE_CUPY_CFLAGS", "")
        flags_tag = hashlib.sha1(flags.encode()).hexdigest()[:8]
        library = os.path.join(_BUILD, f"k_{digest}_{flags_tag}.so")
        if not os.path.exists(library):
            source = os.path.join(_BUILD, f"k_{digest}.{os.getpid()}.cpp")
            with open(source, "w") as stream:
                stream.write(full)
            partial = library + f".{os.getpid()}.tmp"
            subprocess.run(["g++", "-O1", "-g", *flags.split(), "-std=c++11", "-Wall", "-Wno-unused-variable",
                            "-shared", "-fPIC", source, "-o", partial], check=True)
            os.replace(partial, library)
        RawModule.compiles.append(digest)
        self.library = ctypes.CDLL(library)

    def get_function(self, name):
        return _RawFunction(self.library, name)


class _Event:
    def record(self, stream=None):
        import time
        self.time = time.perf_counter()

    def synchronize(self):
        pass


def _elapsed(start, end):
    return (end.time - start.time) * 1000.0


class _Device:
    def __init__(self, index=0):
        pass

    def synchronize(self):
        pass


cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0,
                                  getDeviceProperties=lambda i: {"name": b"FAKE cupy (CPU emulation)"}),
    Event=_Event, get_elapsed_time=_elapsed, Device=_Device,
    get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None))
random = types.SimpleNamespace(seed=lambda s: None)
float32, float64, int32, int64, bool_ = numpy.float32, numpy.float64, numpy.int32, numpy.int64, numpy.bool_
newaxis = None


def get_default_memory_pool():
    return types.SimpleNamespace(free_all_blocks=lambda: None)


__version__ = "0.0-fake"
