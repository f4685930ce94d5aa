"""Scratch buffers reused from call to call: the fast engine's way to avoid fresh large arrays.

Speeds up: no allocation and page-faulting of large temporaries each step. Results are unchanged, as a
buffer only ever holds an intermediate that is consumed before the next call takes it.

Large temporaries (im2col columns, padded copies, col2im accumulators) are
needed for a moment in every layer of every step. Allocating them fresh each
time costs page faults on every touch (measured at up to 5x the copy itself on
this library's layers), so each *role* keeps one flat buffer that grows to the
largest request and hands out views of it. A view is only valid until the next
request for the same role: callers consume it before calling anything that
might ask for that role again, and never return it to the user.

The buffers are per thread: two threads running layers at once (two models
served side by side, say) each get their own, so neither overwrites the
other's columns mid-layer.
"""
import threading

import numpy

from ..backend import get_array_module


class Workspace:
    """One growing byte buffer per (role, array module) and thread."""

    def __init__(self):
        self._local = threading.local()

    @property
    def _buffers(self):
        """This thread's buffers: {(role, array module name): uint8 buffer}."""
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = {}
        return buffers

    def take(self, role, shape, dtype, like):
        """An uninitialised array of ``shape`` and ``dtype`` on ``like``'s device, a view of the role's buffer."""
        xp = get_array_module(like)
        dtype = numpy.dtype(dtype)
        nbytes = int(numpy.prod(shape, dtype=numpy.int64)) * dtype.itemsize
        key = (role, xp.__name__)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.nbytes < nbytes:
            self._buffers.pop(key, None)
            buffer = xp.empty(max(nbytes, 1), dtype=numpy.uint8)
            self._buffers[key] = buffer
        return buffer[:nbytes].view(dtype).reshape(shape)

    def clear(self):
        """Release this thread's buffers (they are re-created on the next request)."""
        self._buffers.clear()

    def nbytes(self):
        """Bytes held by this thread's buffers."""
        return sum(buffer.nbytes for buffer in self._buffers.values())


workspace = Workspace()


def accumulate_product(total, a, b, first, role):
    """total = a @ b if ``first``, else total += a @ b with the product in the workspace ``role``.

    How a sum of GEMM products over pieces of a batch (a weight gradient) is built without a fresh
    total-sized array a piece: the first product is written straight into ``total``.
    """
    product = total if first else workspace.take(role, total.shape, total.dtype, total)
    get_array_module(total).matmul(a, b, out=product)
    if not first:
        total += product
