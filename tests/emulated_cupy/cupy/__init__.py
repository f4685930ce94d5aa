"""A strict stand-in for CuPy that runs minidl's GPU code on the CPU: a test harness, not a GPU.

``tests/test_kernels_emulated.py`` puts this folder first on PYTHONPATH and runs
the GPU tests, ``train_lung.py --device gpu`` and ``bench/gpu.py --quick``
against it, so CI (which has no GPU) executes the CUDA C of
``minidl/kernels.py`` and checks the library's host/device discipline.

It accepts what CuPy 14 accepts and refuses what CuPy refuses:

* ``ndarray`` wraps a host buffer but is no ``numpy.ndarray`` subclass;
  ``numpy.asarray(device_array)`` raises TypeError ("Implicit conversion to a
  NumPy array is not allowed"). The host reads are explicit: ``.get()``,
  ``cupy.asnumpy``, ``.item()``, ``.tolist()``, ``float()``, ``int()``,
  ``bool()``, ``repr``/``str``/``format``. A device array has no
  ``__index__``, so it is no Python integer.
* ufuncs, operators and the functions here refuse host ``numpy.ndarray``
  operands, 0-d ones included ("Unsupported type"); Python and NumPy scalars
  pass. As in CuPy, an index may be a host array (copied to the device), and
  ``device[basic index] = host_array`` raises ValueError unless it is 0-d.
* NumPy functions called on device arrays dispatch (NEP 18, as CuPy's
  ``__array_function__``) to the function of the same name here, and fail
  with TypeError where there is none. Besides array creation and transfer
  (``array``, ``asarray``, ``ascontiguousarray``, ``asnumpy``), only the
  functions named in ``UFUNC_NAMES`` and ``FUNCTION_NAMES`` exist here: each is
  one CuPy provides, and the lists hold what minidl, its tests and scripts use.
  Add a name only after checking that CuPy has it
  (https://docs.cupy.dev/en/stable/reference/).
* ``RawModule`` kernels: arguments are converted as CuPy converts them (a
  Python int becomes long long, a float double, a NumPy scalar keeps its type,
  a one-element host array goes by value, a larger one is a TypeError), then
  checked against the kernel's parameter list, where a real GPU would misread
  a mismatch silently: a pointer takes a C-contiguous device array of the
  pointee's type (or None), a value exactly the parameter's type. Launches past
  CUDA's limits (over 1024 threads a block, grid y or z over 65535) fail.
* Events record, synchronize and say whether they are ``done``;
  ``cuda.get_elapsed_time`` gives the milliseconds between two. Queued work
  counts as done only once synchronized (an event's or a stream's
  ``synchronize``, ``Device().synchronize()`` or a host read), so timing an
  event that was never synchronized raises cudaErrorNotReady and one never
  recorded cudaErrorInvalidResourceHandle, as CUDA does.

Kernels are compiled with g++ through a small shim (blockIdx/threadIdx as
globals, atomics as plain read-modify-writes) and every thread of the grid
runs one after another; the libraries are cached in ``$FAKE_CUPY_BUILD``, and
``$FAKE_CUPY_CFLAGS`` adds g++ flags (``-fsanitize=undefined``, say).

What this cannot check: real timing, memory coalescing, races between
threads, shared memory and ``__syncthreads``, and cuBLAS's numerics; those
need ``python -m pytest -m gpu`` on a real GPU.
"""
import builtins
import ctypes
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import types
import warnings

import numpy

__version__ = "14.0.0-emulated"

float16, float32, float64 = numpy.float16, numpy.float32, numpy.float64
int8, int16, int32, int64 = numpy.int8, numpy.int16, numpy.int32, numpy.int64
uint8, uint32, uint64, bool_ = numpy.uint8, numpy.uint32, numpy.uint64, numpy.bool_
dtype, newaxis, inf, nan, pi = numpy.dtype, None, numpy.inf, numpy.nan, numpy.pi

OPERATOR_UFUNC_NAMES = ("add", "subtract", "multiply", "true_divide", "divide", "floor_divide", "remainder",
                       "power", "negative", "positive", "absolute", "invert", "left_shift", "right_shift",
                       "bitwise_and", "bitwise_or", "bitwise_xor", "greater", "greater_equal", "less", "less_equal",
                       "equal", "not_equal")  # behind ndarray's operators, as in CuPy
UFUNC_NAMES = OPERATOR_UFUNC_NAMES + ("maximum", "minimum", "exp", "log", "log1p", "sqrt", "tanh", "isnan", "floor",
                                     "rint", "cos", "sin")
FUNCTION_NAMES = ("empty", "zeros", "ones", "full", "arange", "empty_like", "zeros_like", "where", "sum", "mean",
                  "max", "min", "argmax", "take", "take_along_axis", "broadcast_to", "matmul", "stack", "concatenate",
                  "clip", "cumsum", "pad", "tensordot")
COMPARISONS = ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal")
PYTHON_SCALARS = (int, float, bool, complex)


def _unsupported(value):
    return TypeError(f"Unsupported type {type(value)}")


# ------------------------------------------------------------------ the device timeline
class _Timeline:
    """The emulated device's queue: work runs at once, but counts as done only once synchronized."""

    def __init__(self):
        self.recorded = 0
        self.completed = 0

    def mark(self):
        self.recorded += 1
        return self.recorded

    def synchronize(self, through=None):
        self.completed = builtins.max(self.completed, self.recorded if through is None else through)


_TIMELINE = _Timeline()


# ------------------------------------------------------------------ device arrays
def _operand(value):
    """A function argument as NumPy takes it: device arrays unwrapped, host arrays refused."""
    if isinstance(value, ndarray):
        return value._array
    if isinstance(value, numpy.ndarray):
        raise _unsupported(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_operand(item) for item in value)
    return value


def _index_operand(value):
    """An index as CuPy takes it: host and device arrays alike (host ones are copied to the device)."""
    if isinstance(value, ndarray):
        return value._array
    if isinstance(value, tuple):
        return tuple(_index_operand(item) for item in value)
    return value


def _is_basic_index(key):
    """Whether ``key`` holds only integers, slices, None and Ellipsis (no arrays, lists or booleans)."""
    parts = key if isinstance(key, tuple) else (key,)
    return builtins.all(part is None or part is Ellipsis
                        or isinstance(part, (slice, int, numpy.integer)) and not isinstance(part, (bool, numpy.bool_))
                        for part in parts)


def _device(result):
    """NumPy's result as CuPy returns it: arrays and scalars as device arrays (0-d for scalars)."""
    if isinstance(result, numpy.ndarray):
        return ndarray._of(result)
    if isinstance(result, numpy.generic):
        return ndarray._of(numpy.asarray(result))
    if isinstance(result, tuple):
        return tuple(_device(item) for item in result)
    if isinstance(result, list):
        return [_device(item) for item in result]
    return result


def _call(function, args, kwargs):
    """``function`` on the unwrapped operands; returns ``out`` itself when one is given, as CuPy does."""
    result = function(*_operand(tuple(args)), **{key: _operand(value) for key, value in kwargs.items()})
    out = kwargs.get("out")
    return out if isinstance(out, ndarray) else _device(result)


host_reads = 0  # device-to-host reads so far: each one waits for the device (tests count them per step)


def _host_read(array):
    """The host copy behind a host read, which waits for the device."""
    global host_reads
    host_reads += 1
    _TIMELINE.synchronize()
    return array._array


class _Flags:
    """The flags CuPy's arrays have (no ``writeable``)."""

    def __init__(self, host):
        self.c_contiguous = bool(host.flags.c_contiguous)
        self.f_contiguous = bool(host.flags.f_contiguous)
        self.owndata = bool(host.flags.owndata)

    def __getitem__(self, name):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[name]


def _forwarded(name):
    """The ndarray method ``name``: NumPy's method on the buffer, host operands refused, results on the device."""
    def method(self, *args, **kwargs):
        return _call(getattr(self._array, name), args, kwargs)
    method.__name__ = name
    method.__doc__ = f"``numpy.ndarray.{name}`` on the device."
    return method


def _operator(routine_name, reflected=False, inplace=False):
    """An operator method (``__add__``, ``__radd__``, ``__iadd__``...) calling the routine of that name."""
    def method(self, other):
        routine = _ROUTINES[routine_name]
        if inplace:
            return routine(self, other, out=self)
        return routine(other, self) if reflected else routine(self, other)
    return method


class ndarray:
    """A device array: a host buffer behind CuPy's interface and CuPy's refusals."""

    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("emulated cupy.ndarray: memptr and strides are not emulated")
        self._array = numpy.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, host):
        array = cls.__new__(cls)
        array._array = host
        return array

    # ------------------------------------------------------------ attributes
    shape = property(lambda self: self._array.shape, lambda self, shape: setattr(self._array, "shape", shape))
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    itemsize = property(lambda self: self._array.itemsize)
    nbytes = property(lambda self: self._array.nbytes)
    strides = property(lambda self: self._array.strides)
    flags = property(lambda self: _Flags(self._array))
    T = property(lambda self: ndarray._of(self._array.T))
    real = property(lambda self: ndarray._of(self._array.real))
    imag = property(lambda self: ndarray._of(self._array.imag))
    data = property(lambda self: types.SimpleNamespace(ptr=self._array.ctypes.data, device_id=0))
    device = property(lambda self: cuda.Device(0))

    def view(self, dtype=None):
        """A view with another dtype (CuPy takes no array class here)."""
        return ndarray._of(self._array.view() if dtype is None else self._array.view(numpy.dtype(dtype)))

    def take(self, indices, axis=None, out=None):
        """``numpy.take``; the indices may be a host array, as in CuPy."""
        result = self._array.take(_index_operand(indices), axis=axis, out=_operand(out))
        return out if out is not None else _device(result)

    def fill(self, value):
        """Set every element to a scalar (a 0-d host array counts as one, as in CuPy)."""
        if isinstance(value, numpy.ndarray):
            if value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            value = value.item()
        self._array.fill(_operand(value))

    # ------------------------------------------------------------ host transfers
    def get(self, stream=None, order="C", out=None, blocking=True):
        """A host copy (waits for the device)."""
        host = numpy.array(_host_read(self), order=order, copy=True)
        if out is None:
            return host
        out[...] = host
        return out

    def set(self, array, stream=None):
        """Copy a host array of the same shape and dtype into this device array."""
        if not isinstance(array, numpy.ndarray) or array.shape != self.shape or array.dtype != self.dtype:
            raise ValueError("cupy.ndarray.set: expects a numpy.ndarray of the same shape and dtype")
        self._array[...] = array

    def item(self, *args):
        return _host_read(self).item(*args)

    def tolist(self):
        return _host_read(self).tolist()

    def tobytes(self, order="C"):
        return _host_read(self).tobytes(order)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __int__(self):
        return int(self.get())

    def __float__(self):
        return float(self.get())

    def __complex__(self):
        return complex(self.get())

    def __bool__(self):
        if self.size == 0:
            warnings.warn("The truth value of an empty array is ambiguous.", DeprecationWarning)
            return False
        if self.size == 1:
            return bool(self.get())
        raise ValueError("The truth value of an array with more than one element is ambiguous. "
                         "Use a.any() or a.all()")

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    def __format__(self, format_spec):
        return format(self.get(), format_spec)

    def __reduce__(self):
        return array, (self.get(),)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # ------------------------------------------------------------ containers and indexing
    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, key):
        return _device(self._array[_index_operand(key)])

    def __setitem__(self, key, value):
        if _is_basic_index(key):
            if isinstance(value, numpy.ndarray) and value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            if not isinstance(value, (ndarray, numpy.ndarray, numpy.generic) + PYTHON_SCALARS):
                raise _unsupported(value)
        elif isinstance(value, (list, tuple)):
            value = numpy.asarray(value)
        self._array[_index_operand(key)] = value._array if isinstance(value, ndarray) else value

    # ------------------------------------------------------------ arithmetic (operators: see OPERATORS)
    def __neg__(self):
        return _ROUTINES["negative"](self)

    def __pos__(self):
        return _ROUTINES["positive"](self)

    def __abs__(self):
        return _ROUTINES["absolute"](self)

    def __invert__(self):
        return _ROUTINES["invert"](self)

    # ------------------------------------------------------------ NumPy's dispatch protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """``numpy.exp(device_array)`` and friends: CuPy's ufunc of that name, host arrays refused."""
        if method != "__call__" or ufunc.__name__ not in UFUNC_NAMES + ("matmul",):
            return NotImplemented
        if "out" in kwargs:
            if len(kwargs["out"]) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = kwargs["out"][0]
        if ufunc.__name__ in COMPARISONS:  # as CuPy (numpy/numpy#12142)
            inputs = tuple(x.item() if isinstance(x, numpy.ndarray) and x.ndim == 0 else x for x in inputs)
        return _ROUTINES[ufunc.__name__](*inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        """``numpy.sum(device_array)`` and friends: CuPy's function of that name, or TypeError where none."""
        if func.__module__ != "numpy" or func.__name__ not in FUNCTION_NAMES:
            return NotImplemented
        if not builtins.all(issubclass(t, (ndarray, numpy.ndarray)) for t in types_):
            return NotImplemented
        return _ROUTINES[func.__name__](*args, **kwargs)


METHODS = ("all", "any", "argmax", "argmin", "argsort", "astype", "clip", "copy", "cumsum", "dot", "flatten", "max",
           "mean", "min", "nonzero", "prod", "ravel", "repeat", "reshape", "round", "squeeze", "std", "sum",
           "swapaxes", "transpose", "var")
OPERATORS = {"add": "add", "sub": "subtract", "mul": "multiply", "matmul": "matmul", "truediv": "true_divide",
             "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "lshift": "left_shift",
             "rshift": "right_shift", "and": "bitwise_and", "or": "bitwise_or", "xor": "bitwise_xor"}
RICH_COMPARISONS = {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal", "eq": "equal",
                    "ne": "not_equal"}
for _name in METHODS:
    setattr(ndarray, _name, _forwarded(_name))
for _name, _ufunc_name in OPERATORS.items():
    setattr(ndarray, f"__{_name}__", _operator(_ufunc_name))
    setattr(ndarray, f"__r{_name}__", _operator(_ufunc_name, reflected=True))
    setattr(ndarray, f"__i{_name}__", _operator(_ufunc_name, inplace=True))
for _name, _ufunc_name in RICH_COMPARISONS.items():
    setattr(ndarray, f"__{_name}__", _operator(_ufunc_name))


class ufunc:
    """A CuPy ufunc: device arrays and scalars only."""

    def __init__(self, name):
        self.__name__ = name
        self._numpy = getattr(numpy, name)
        self.nin, self.nout = self._numpy.nin, self._numpy.nout

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    def __call__(self, *args, **kwargs):
        for value in args + tuple(v for k, v in kwargs.items() if k == "out"):
            if not isinstance(value, ndarray) and type(value) not in PYTHON_SCALARS \
                    and not isinstance(value, numpy.generic) and value is not None:
                raise _unsupported(value)
        return _call(self._numpy, args, kwargs)


def _function(name):
    """The CuPy function ``name``: NumPy's function on the buffers, host arrays refused."""
    numpy_function = getattr(numpy, name)

    def function(*args, **kwargs):
        return _call(numpy_function, args, kwargs)
    function.__name__ = name
    function.__doc__ = f"``numpy.{name}`` on device arrays; host arrays are refused."
    return function


_ROUTINES = {**{name: ufunc(name) for name in UFUNC_NAMES}, **{name: _function(name) for name in FUNCTION_NAMES}}
# cupy.max, cupy.sum and co. shadow the builtins from here on: this module calls builtins.max and co.
globals().update(_ROUTINES)
abs = _ROUTINES["absolute"]  # noqa: A001  (cupy.abs is cupy.absolute, as in NumPy)
del _name, _ufunc_name


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    """A device array from host data (always copied), a device array or a (nested) list of either."""
    copy = True if copy or not isinstance(obj, ndarray) else None
    return ndarray._of(numpy.array(_nested(obj), dtype=dtype, copy=copy, order=order, ndmin=ndmin))


def _nested(obj):
    """``obj`` with the device arrays in it (lists and tuples searched) replaced by their buffers."""
    if isinstance(obj, ndarray):
        return obj._array
    if isinstance(obj, (list, tuple)):
        return type(obj)(_nested(item) for item in obj)
    return obj


def asarray(a, dtype=None, order=None, blocking=False):
    """``a`` on the device: itself when it is there already (and of ``dtype``), else a copy."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == numpy.dtype(dtype) else a.astype(dtype)
    return array(a, dtype=dtype, order=order or "K")


def ascontiguousarray(a, dtype=None):
    """A C-contiguous device array (the input itself when it is one already); device arrays only."""
    if not isinstance(a, ndarray):
        raise TypeError(f"Argument 'a' has incorrect type (expected cupy.ndarray, got {type(a).__name__})")
    host = numpy.ascontiguousarray(a._array, dtype=dtype)
    return a if host is a._array else ndarray._of(host)


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    """A host array: ``a.get()`` for a device array, ``numpy.asarray(a)`` for anything else."""
    return a.get(order=order, out=out) if isinstance(a, ndarray) else numpy.asarray(a, order=order)


def get_default_memory_pool():
    """The memory pool; there is none to free here."""
    return types.SimpleNamespace(free_all_blocks=lambda: None)


def __getattr__(name):
    raise AttributeError(f"module 'cupy' (emulated) has no attribute {name!r}: if CuPy provides it, add it to "
                         f"UFUNC_NAMES or FUNCTION_NAMES in {__file__}")


# ------------------------------------------------------------------ CUDA: errors, devices, streams, events
class CUDARuntimeError(RuntimeError):
    """As ``cupy_backends.cuda.api.runtime.CUDARuntimeError``."""


class CUDADriverError(RuntimeError):
    """As ``cupy_backends.cuda.api.driver.CUDADriverError``."""


def _device_properties(index):
    """What ``cudaGetDeviceProperties`` reports for the emulated device."""
    _check_device(index)
    return {"name": b"emulated CuPy (CPU)", "totalGlobalMem": 1 << 34, "major": 9, "minor": 0}


def _check_device(index):
    if index != 0:
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")


class Device:
    """The one emulated device."""

    def __init__(self, device=None):
        _check_device(0 if device is None else device)
        self.id = 0

    def synchronize(self):
        _TIMELINE.synchronize()

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


class Stream:
    """A stream; everything runs in order, so synchronizing one synchronizes the device."""

    ptr = 0

    def synchronize(self):
        _TIMELINE.synchronize()


Stream.null = Stream()


class Event:
    """A CUDA event: records a point of the device's work; done once that point is synchronized."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.disable_timing = disable_timing
        self._mark = None
        self._time = None

    def record(self, stream=None):
        self._mark = _TIMELINE.mark()
        self._time = time.perf_counter()

    @property
    def done(self):
        """Whether the work before the event is done (True for an event never recorded, as in CUDA)."""
        return self._mark is None or self._mark <= _TIMELINE.completed

    def synchronize(self):
        if self._mark is not None:
            _TIMELINE.synchronize(self._mark)


def get_elapsed_time(start_event, end_event):
    """Milliseconds between two recorded, completed events (cudaEventElapsedTime's errors otherwise)."""
    for event in (start_event, end_event):
        if event._mark is None or event.disable_timing:
            raise CUDARuntimeError("cudaErrorInvalidResourceHandle: invalid resource handle")
    if not (start_event.done and end_event.done):
        raise CUDARuntimeError("cudaErrorNotReady: device not ready")
    return (end_event._time - start_event._time) * 1000.0


# ------------------------------------------------------------------ CUDA kernels
SHIM = r"""
#include <cmath>
#include <cstring>
#include <algorithm>
struct minidl_dim3 { unsigned int x, y, z; };
static minidl_dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
using std::isnan; using std::isinf; using std::min; using std::max;
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
static inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
// Threads run one after another, so every atomic is a plain read-modify-write returning the old value.
template <typename V> static inline V minidl_atomic_add(V* a, V v) { V old = *a; *a = old + v; return old; }
template <typename V> static inline V minidl_atomic_max(V* a, V v) { V old = *a; if (v > old) *a = v; return old; }
template <typename V> static inline V minidl_atomic_min(V* a, V v) { V old = *a; if (v < old) *a = v; return old; }
static inline int atomicAdd(int* a, int v) { return minidl_atomic_add(a, v); }
static inline unsigned int atomicAdd(unsigned int* a, unsigned int v) { return minidl_atomic_add(a, v); }
static inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v)
{ return minidl_atomic_add(a, v); }
static inline float atomicAdd(float* a, float v) { return minidl_atomic_add(a, v); }
static inline double atomicAdd(double* a, double v) { return minidl_atomic_add(a, v); }
static inline int atomicMax(int* a, int v) { return minidl_atomic_max(a, v); }
static inline unsigned int atomicMax(unsigned int* a, unsigned int v) { return minidl_atomic_max(a, v); }
static inline long long atomicMax(long long* a, long long v) { return minidl_atomic_max(a, v); }
static inline int atomicMin(int* a, int v) { return minidl_atomic_min(a, v); }
static inline unsigned int atomicMin(unsigned int* a, unsigned int v) { return minidl_atomic_min(a, v); }
static inline long long atomicMin(long long* a, long long v) { return minidl_atomic_min(a, v); }
static inline int atomicExch(int* a, int v) { int old = *a; *a = v; return old; }
static inline float atomicExch(float* a, float v) { float old = *a; *a = v; return old; }
static inline int atomicCAS(int* a, int compare, int v) { int old = *a; if (old == compare) *a = v; return old; }
"""
KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)')
TYPEDEF_RE = re.compile(r"\btypedef\s+([\w\s]+?)\s+(\w+)\s*;")
QUALIFIERS = ("const", "volatile", "__restrict__", "__restrict", "restrict", "signed")
C_TYPES = {"float": numpy.float32, "double": numpy.float64, "bool": numpy.bool_, "char": numpy.int8,
           "unsigned char": numpy.uint8, "short": numpy.int16, "unsigned short": numpy.uint16, "int": numpy.int32,
           "unsigned int": numpy.uint32, "unsigned": numpy.uint32, "long long": numpy.int64,
           "long long int": numpy.int64, "unsigned long long": numpy.uint64, "long": numpy.int64,
           "unsigned long": numpy.uint64, "size_t": numpy.uint64, "ptrdiff_t": numpy.int64, "void": None}
CTYPES = {numpy.dtype(numpy.float32): ctypes.c_float, numpy.dtype(numpy.float64): ctypes.c_double,
          numpy.dtype(numpy.bool_): ctypes.c_bool, numpy.dtype(numpy.int8): ctypes.c_int8,
          numpy.dtype(numpy.uint8): ctypes.c_uint8, numpy.dtype(numpy.int16): ctypes.c_int16,
          numpy.dtype(numpy.uint16): ctypes.c_uint16, numpy.dtype(numpy.int32): ctypes.c_int32,
          numpy.dtype(numpy.uint32): ctypes.c_uint32, numpy.dtype(numpy.int64): ctypes.c_int64,
          numpy.dtype(numpy.uint64): ctypes.c_uint64}
MAX_THREADS_PER_BLOCK, MAX_BLOCK, MAX_GRID = 1024, (1024, 1024, 64), (2 ** 31 - 1, 65535, 65535)
_BUILD = os.environ.get("FAKE_CUPY_BUILD", os.path.join(tempfile.gettempdir(), "minidl-emulated-cupy"))


class _Parameter:
    """One kernel parameter: its declaration, name, dtype (None for void) and whether it is a pointer."""

    def __init__(self, declaration, typedefs):
        self.declaration = " ".join(declaration.split())
        words = [w for w in re.findall(r"\w+|\*", declaration) if w not in QUALIFIERS]
        self.name, self.pointer = words[-1], "*" in words
        base = " ".join(w for w in words[:-1] if w != "*")
        base = typedefs.get(base, base)
        if base not in C_TYPES or (C_TYPES[base] is None and not self.pointer):
            raise TypeError(f"emulated RawModule: parameter type of `{self.declaration}` is not emulated")
        self.dtype = None if C_TYPES[base] is None else numpy.dtype(C_TYPES[base])

    def ctype(self):
        return ctypes.c_void_p if self.pointer else CTYPES[self.dtype]


def _typedefs(code):
    """{alias: C type} of the ``typedef`` lines in ``code`` (aliases of aliases resolved)."""
    names = {}
    for base, name in TYPEDEF_RE.findall(code):
        base = " ".join(base.split())
        names[name] = names.get(base, base)
    return names


def _kernel_argument(value):
    """(is_pointer, dtype, value) of a launch argument, converted as CuPy converts it."""
    if value is None:
        return True, None, None
    if isinstance(value, ndarray):
        return True, value.dtype, value
    if isinstance(value, numpy.ndarray):
        if value.size != 1:
            raise TypeError(f"You are trying to pass a numpy.ndarray of shape {value.shape} as a kernel parameter. "
                            "Only numpy.ndarrays of size one can be passed by value. If you meant to pass a "
                            "pointer to __global__ memory, you need to pass a cupy.ndarray instead.")
        return False, value.dtype, value.reshape(()).item()
    if type(value) is bool:
        return False, numpy.dtype(numpy.bool_), value
    if type(value) is int:
        return False, numpy.dtype(numpy.uint64 if value >= 2 ** 63 else numpy.int64), value
    if type(value) is float:
        return False, numpy.dtype(numpy.float64), value
    if isinstance(value, numpy.generic):
        return False, value.dtype, value.item()
    raise _unsupported(value)


class _RawFunction:
    """A kernel of a RawModule, launched as ``kernel(grid, block, args)``."""

    def __init__(self, library, name, parameters):
        self.name, self.parameters = name, parameters
        self.function = getattr(library, name + "_grid")
        self.function.argtypes = [ctypes.c_uint] * 6 + [p.ctype() for p in parameters]
        self.function.restype = None

    def __call__(self, grid, block, args, shared_mem=0, stream=None, enable_cooperative_groups=False):
        if not isinstance(grid, tuple) or not isinstance(block, tuple):
            raise TypeError(f"{self.name}: grid and block must be tuples")
        if shared_mem:
            raise NotImplementedError(f"{self.name}: the emulation has no shared memory")
        grid = tuple(builtins.max(1, int(g)) for g in (grid + (1, 1))[:3])
        block = tuple(builtins.max(1, int(b)) for b in (block + (1, 1))[:3])
        self._check_launch_bounds(grid, block)
        if len(args) != len(self.parameters):
            raise TypeError(f"{self.name}: {len(self.parameters)} parameters, {len(args)} arguments")
        values = [self._checked(parameter, argument) for parameter, argument in zip(self.parameters, args)]
        self.function(*grid, *block, *values)

    def _check_launch_bounds(self, grid, block):
        too_large = (numpy.prod(block) > MAX_THREADS_PER_BLOCK
                     or builtins.any(b > m for b, m in zip(block, MAX_BLOCK))
                     or builtins.any(g > m for g, m in zip(grid, MAX_GRID)))
        if too_large:
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: invalid argument (launching {self.name} with grid "
                                  f"{grid}, block {block})")

    def _checked(self, parameter, argument):
        """The ctypes value of ``argument`` for ``parameter``, or TypeError where a GPU would misread it."""
        is_pointer, argument_dtype, value = _kernel_argument(argument)
        where = f"kernel {self.name}, parameter `{parameter.declaration}`"
        if parameter.pointer != is_pointer:
            wanted = "a device array" if parameter.pointer else f"a {parameter.dtype} value"
            raise TypeError(f"{where}: expects {wanted}, got {type(argument).__name__}")
        if not is_pointer:
            if argument_dtype != parameter.dtype:
                raise TypeError(f"{where}: expects {parameter.dtype} ({parameter.dtype.itemsize} bytes), got "
                                f"{argument_dtype} ({argument_dtype.itemsize} bytes)")
            return value
        if value is None:
            return None
        if parameter.dtype is not None and argument_dtype != parameter.dtype:
            raise TypeError(f"{where}: expects a {parameter.dtype} array, got {argument_dtype}")
        if not value.flags.c_contiguous:
            raise ValueError(f"{where}: the kernel reads raw memory, but the array is not C-contiguous")
        return value._array.ctypes.data


class RawModule:
    """CUDA C compiled with g++; ``get_function(name)`` gives a kernel that runs its threads in sequence."""

    def __init__(self, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=False):
        if code is None:
            raise NotImplementedError("emulated RawModule: only code= is emulated")
        if "__shared__" in code or "__syncthreads" in code:
            raise NotImplementedError("emulated RawModule: shared memory and __syncthreads need threads that run "
                                      "together; the emulation runs them one after another")
        typedefs = _typedefs(code)
        kernels = KERNEL_RE.findall(code)
        self.parameters = {name: [_Parameter(p, typedefs) for p in params.split(",")] for name, params in kernels}
        wrappers = [_grid_wrapper(name, params, self.parameters[name]) for name, params in kernels]
        self.library = ctypes.CDLL(_compiled(SHIM + code + "\n" + "".join(wrappers)))

    def get_function(self, name):
        if name not in self.parameters:
            raise CUDADriverError(f"CUDA_ERROR_NOT_FOUND: named symbol not found ({name})")
        return _RawFunction(self.library, name, self.parameters[name])


def _grid_wrapper(name, params, parameters):
    """A C function that runs kernel ``name`` for every block and thread of a 3-D grid, one after another."""
    names = ", ".join(parameter.name for parameter in parameters)
    return (f'extern "C" void {name}_grid(unsigned int minidl_gx, unsigned int minidl_gy, unsigned int minidl_gz,\n'
            f"    unsigned int minidl_bx, unsigned int minidl_by, unsigned int minidl_bz, {params}) {{\n"
            f"  gridDim = {{minidl_gx, minidl_gy, minidl_gz}}; blockDim = {{minidl_bx, minidl_by, minidl_bz}};\n"
            f"  for (blockIdx.z = 0; blockIdx.z < gridDim.z; ++blockIdx.z)\n"
            f"  for (blockIdx.y = 0; blockIdx.y < gridDim.y; ++blockIdx.y)\n"
            f"  for (blockIdx.x = 0; blockIdx.x < gridDim.x; ++blockIdx.x)\n"
            f"  for (threadIdx.z = 0; threadIdx.z < blockDim.z; ++threadIdx.z)\n"
            f"  for (threadIdx.y = 0; threadIdx.y < blockDim.y; ++threadIdx.y)\n"
            f"  for (threadIdx.x = 0; threadIdx.x < blockDim.x; ++threadIdx.x)\n"
            f"    {name}({names});\n}}\n")


def _compiled(source):
    """The path of the shared library built from ``source`` (cached by content in FAKE_CUPY_BUILD)."""
    flags = os.environ.get("FAKE_CUPY_CFLAGS", "")
    digest = hashlib.sha1((source + flags).encode()).hexdigest()[:16]
    library = os.path.join(_BUILD, f"k_{digest}.so")
    if not os.path.exists(library):
        os.makedirs(_BUILD, exist_ok=True)
        path = os.path.join(_BUILD, f"k_{digest}.{os.getpid()}.cpp")
        with open(path, "w") as stream:
            stream.write(source)
        partial = f"{library}.{os.getpid()}.tmp"
        subprocess.run(["g++", "-O1", "-g", *flags.split(), "-std=c++11", "-Wall", "-Wno-unused-variable",
                        "-Wno-unused-function", "-shared", "-fPIC", path, "-o", partial], check=True)
        os.replace(partial, library)
    return library


# ------------------------------------------------------------------ the cupy.cuda namespace
cuda = types.ModuleType("cupy.cuda", "CUDA runtime, devices, streams and events (emulated).")
cuda.Device, cuda.Stream, cuda.Event, cuda.get_elapsed_time = Device, Stream, Event, get_elapsed_time
cuda.get_current_stream = lambda device=None: Stream.null
cuda.runtime = types.SimpleNamespace(
    CUDARuntimeError=CUDARuntimeError, getDeviceCount=lambda: 1, getDevice=lambda: 0, getDeviceProperties=_device_properties,
    deviceSynchronize=_TIMELINE.synchronize, runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 13000)
cuda.driver = types.SimpleNamespace(CUDADriverError=CUDADriverError)
sys.modules["cupy.cuda"] = cuda
