"""Every CPU/GPU decision in minidl is made here.

Host arrays are ``numpy.ndarray`` and device arrays are ``cupy.ndarray``.
CuPy is optional: it is imported only when a device array or the GPU is
asked for, so minidl installs and runs on machines without it.
"""
import ctypes
import ctypes.util
import os
import sys

import numpy

_cupy = None
_cupy_import_error = None
_cupy_tried = False

DEVICES = ("cpu", "gpu")
# False in a student copy; this package's own folder decides (an import search could find another minidl's)
HAS_KERNELS = os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels.py"))


def cupy_or_none():
    """Import CuPy on first use; return the module, or None if it cannot be imported."""
    global _cupy, _cupy_import_error, _cupy_tried
    if not _cupy_tried:
        _cupy_tried = True
        try:
            import cupy
            _cupy = cupy
        except Exception as error:  # ImportError, or a CUDA library failing to load
            _cupy_import_error = error
    return _cupy


def is_gpu_array(x):
    """True for a ``cupy.ndarray``. Never imports CuPy: one cannot exist without it."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def get_array_module(x):
    """``numpy`` for host arrays (and Python scalars), ``cupy`` for device arrays."""
    return sys.modules["cupy"] if is_gpu_array(x) else numpy


def device_of(x):
    """``"gpu"`` for a device array, ``"cpu"`` otherwise."""
    return "gpu" if is_gpu_array(x) else "cpu"


def device_kernels(x):
    """The CUDA kernels (``minidl.kernels``) for a device array, None for a host array.

    The sliding-window primitives (im2col, col2im, pooling, unpooling) ask this
    and, for device arrays, hand their work to the kernel of the same name.
    None too in a student copy, which has no ``minidl/kernels.py``: its reference
    ops run on CuPy through ``xp`` alone.
    """
    if not is_gpu_array(x) or not HAS_KERNELS:
        return None
    from . import kernels
    return kernels


GPU_UNFOLD_BYTES = 1 << 30


def unfold_budget(x):
    """Bytes of im2col columns a layer unfolds at once for ``x``'s device: 16 MiB on the CPU, where one
    sample's columns (or a band of its rows) stay cache-sized; 1 GiB on a GPU, where a few large launches
    pay but the columns of a whole large batch (19 GB for SegNet at N=32, 512x512) would not fit."""
    return GPU_UNFOLD_BYTES if is_gpu_array(x) else 16 << 20


def samples_per_unfold(x, sample_bytes):
    """How many samples of the batch im2col unfolds together, each sample's columns being ``sample_bytes``:
    one on the CPU; on a GPU as many as fit in ``unfold_budget`` (at least one, at most the batch)."""
    if not is_gpu_array(x):
        return 1
    return max(1, min(x.shape[0], unfold_budget(x) // max(1, sample_bytes)))


def cpu_budget(x, nbytes):
    """How many bytes of temporaries a layer works through at once for ``x``'s device: ``nbytes`` on the
    CPU, so its scratch buffers stay bounded whatever the image size (docs/benchmarks.md); None (the
    whole batch at once) on a GPU, where fewer, larger launches pay."""
    return None if is_gpu_array(x) else nbytes


def runs_winograd(x):
    """Whether wide 3x3 convs take the Winograd path (minidl.fast.winograd) for ``x``'s device: on the
    CPU, where its 2.25x fewer multiplies pay for the transforms' memory traffic; not on a GPU, where
    cuBLAS's GEMMs are cheap and the transforms would add launches."""
    return not is_gpu_array(x)


def gpu_available():
    """Whether CuPy is importable and sees at least one CUDA device."""
    cupy = cupy_or_none()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def require_gpu(context="minidl"):
    """Raise RuntimeError with the reason when no usable GPU is present."""
    if gpu_available():
        return sys.modules["cupy"]
    if cupy_or_none() is None:
        reason = f"CuPy cannot be imported ({_cupy_import_error}); install it with pip install -e \".[gpu]\""
    else:
        reason = "CuPy is installed but sees no CUDA device"
    raise RuntimeError(f"{context}: device 'gpu' requested but no usable GPU: {reason}")


def check_device_name(device):
    """Normalise a device name; ``"cuda"`` is accepted as a synonym of ``"gpu"``."""
    name = str(device).lower()
    if name == "cuda" or name.startswith("cuda:"):
        name = "gpu"
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'gpu'")
    return name


def to_device(x, device):
    """Return ``x`` as a host (``"cpu"``) or device (``"gpu"``) array; no copy if it is already there."""
    device = check_device_name(device)
    if device == "cpu":
        if is_gpu_array(x) and _pending_checks:
            read_back([])  # a host read: the deferred checks are read with it
        return x.get() if is_gpu_array(x) else numpy.asarray(x)
    cupy = require_gpu("to_device")
    return cupy.asarray(x)


MAX_PENDING_CHECKS = 64
_pending_checks = []


def defer_check(statistics, verdict):
    """Check device values at the next host read instead of now, so the check costs no synchronisation.

    ``statistics`` is a 1-D array (on either device) of the numbers the check needs, ``verdict`` a function
    of those numbers (as Python floats) returning an error message, or None when they pass. The check runs
    at the next ``read_back`` (a loss's value, say) or ``to_numpy``, in the order checks were deferred, and
    raises ValueError with the first message.
    """
    _pending_checks.append((statistics, verdict))
    if len(_pending_checks) >= MAX_PENDING_CHECKS:
        read_back([])


def check_values(statistics, verdict):
    """Run a check of array values (as ``defer_check``): now for host statistics, where reading them costs
    nothing; at the next host read for device statistics."""
    if is_gpu_array(statistics):
        defer_check(statistics, verdict)
    else:
        read_back([], [(statistics, verdict)])


def read_back(values, checks=()):
    """Python floats of the 0-d arrays ``values``, read from the device in one transfer together with the
    statistics of ``checks`` ((statistics, verdict) pairs as for ``defer_check``) and of every deferred
    check; then each check's verdict runs, and the first failure is raised as ValueError."""
    checks = list(_pending_checks) + list(checks)
    _pending_checks.clear()
    parts = [value.reshape(1) for value in values] + [statistics for statistics, _ in checks]
    if not parts:
        return []
    xp = get_array_module(parts[0]) if any(is_gpu_array(part) for part in parts) else numpy
    host = to_numpy(xp.concatenate([xp.asarray(part).astype(numpy.float64) for part in parts]))
    offset = len(values)
    for statistics, verdict in checks:
        message = verdict(*(float(number) for number in host[offset:offset + statistics.size]))
        offset += statistics.size
        if message:
            raise ValueError(message)
    return [float(number) for number in host[:len(values)]]


def to_numpy(x):
    """A host ``numpy.ndarray`` holding the values of ``x``."""
    return to_device(x, "cpu")


def check_same_device(layer, x, reference, what="weight"):
    """Raise a clear error when ``x`` and ``reference`` live on different devices."""
    if is_gpu_array(x) != is_gpu_array(reference):
        raise RuntimeError(
            f"{layer}: input is on the {device_of(x)} but the {what} is on the "
            f"{device_of(reference)}; move one with module.to(...) or minidl.backend.to_device(...)")


def reuse_freed_host_memory():
    """Ask the C allocator (glibc) to keep freed memory and hand it out again. Returns whether it applied.

    Every training step allocates the same large activations, gradients and im2col columns. By
    default glibc maps each block of over a few MB freshly from the OS and unmaps it when freed, so
    the next step's array of the same size page-faults on every page as it is first written (and,
    with transparent huge pages, may wait for the kernel to compact memory). Serving every block
    from the heap (no mmap) and raising the trim threshold to 1 GiB keeps freed blocks in the
    process for reuse: the reference engine's SegNetSmall step, whose columns are 100-230 MB
    fresh arrays, goes from 0.75-2.6 s to a steady 0.67 s here, with the same numbers. The process
    keeps its peak memory instead of shrinking after it. A process-wide setting, so minidl never
    applies it by itself; train_lung.py and the benchmarks do. No effect (False) where the C
    library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))


UNBUFFERED_ROW_ELEMENTS = 256


def loop_over_strided_rows():
    """Have NumPy run elementwise ops on strided views row by row; returns the previous buffer size.

    An op whose operands are not one contiguous block, such as col2im's
    ``target[:, :, rows, columns] += cols[:, :, i, j]``, is run by NumPy's iterator with buffers of
    ``numpy.getbufsize()`` elements (8192), which it fills by copying the operands so that one inner
    loop covers many image rows (NumPy 2.4, measured); for a memory-bound add over
    rows of a hundred or more elements the copies cost more than they save. With buffers of 256
    elements NumPy loops straight over the rows: the reference col2im of SegNetSmall's dec1
    (8x32x128x192, 3x3) takes 20 ms instead of 40, the reference training step 6-9% less, the fast
    engine's the same. Results are unchanged but for the rounding of sums over
    strided axes. A per-thread NumPy setting, so minidl never applies it by itself; train_lung.py
    and the benchmarks do (``numpy.setbufsize(previous)`` undoes it).
    """
    return numpy.setbufsize(UNBUFFERED_ROW_ELEMENTS)


def blas_core():
    """The kernel family NumPy's OpenBLAS runs (e.g. "SkylakeX", "Haswell"), or None where that cannot be asked.

    Read from the loaded OpenBLAS library itself (``openblas_get_corename``, under
    any of the prefixes and suffixes NumPy's builds give it). It matters: on one CPU
    the AVX-512 kernels ran sgemm nearly twice as fast as the AVX2 ones that
    OPENBLAS_CORETYPE=Haswell pins (docs/benchmarks.md).
    """
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                function = getattr(library, f"{prefix}openblas_get_corename{suffix}", None)
                if function is not None:
                    function.restype = ctypes.c_char_p
                    return function().decode("ascii", "replace").strip()
    return None
