"""``MaxPool2d`` and ``MaxUnpool2d``: thin shells over the engine's ``pooling`` ops (``minidl.functional.pooling``)."""
import numbers

import numpy

from ..backend import check_same_device, check_values, get_array_module
from ..functional import checks
from ..engines import get_engine, op
from ..functional.pooling import pooled_grid, window_taps
from ..functional.windows import pair
from .module import Module


def _window_geometry(layer, kernel_size, stride, padding, dilation=1):
    """kernel, stride (default: the kernel), padding, dilation as checked pairs."""
    kernel = pair(kernel_size, f"{layer} kernel_size")
    stride = kernel if stride is None else pair(stride, f"{layer} stride")
    padding = pair(padding, f"{layer} padding")
    dilation = pair(dilation, f"{layer} dilation")
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"{layer}: kernel_size, stride and dilation must be positive and padding non-negative, "
                         f"got kernel_size={kernel}, stride={stride}, padding={padding}, dilation={dilation}")
    return kernel, stride, padding, dilation


class MaxPool2d(Module):
    """Max over (kh, kw) windows. x (N, C, H, W) -> y (N, C, Ho, Wo), or (y, indices) with return_indices.

    Ho = floor((H + 2*padding - dilation*(kernel-1) - 1) / stride) + 1, likewise Wo (ceil with
    ``ceil_mode``, keeping only windows that start inside the input or its left padding); padding
    must be at most half the kernel (as PyTorch) and counts as -inf. ``indices`` (int64, y's
    shape) holds the flat position h * W + w of each maximum in its input plane, the first
    in scan order on ties. ``dilation`` and ``ceil_mode`` are keyword-only (the API puts
    return_indices fourth, where PyTorch has dilation).
    """

    def __init__(self, kernel_size, stride=None, padding=0, return_indices=False, *, dilation=1, ceil_mode=False):
        super().__init__()
        if not isinstance(return_indices, bool):
            raise TypeError(f"MaxPool2d: return_indices must be a bool, got {return_indices!r} "
                            "(pass dilation by keyword: MaxPool2d(k, s, p, dilation=d))")
        self.kernel_size, self.stride, self.padding, self.dilation = _window_geometry(
            "MaxPool2d", kernel_size, stride, padding, dilation)
        if any(self.padding[a] > self.kernel_size[a] // 2 for a in range(2)):
            raise ValueError(f"MaxPool2d: padding {self.padding} must be at most half of kernel_size "
                             f"{self.kernel_size}, as in PyTorch")
        self.return_indices = return_indices
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x):
        checks.check_input_4d("MaxPool2d", x)
        grid = pooled_grid(x.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        if min(grid) < 1:
            raise ValueError(f"MaxPool2d: input of shape {checks.shape_text(x)} is smaller than the window "
                             f"{self.kernel_size} with dilation {self.dilation} after padding {self.padding}")
        self._check_every_window_reads_the_input(x, grid)
        (y, indices), cache = op("pooling", "max_pool2d_forward")(x, self.kernel_size, self.stride, self.padding,
                                                                  self.dilation, self.ceil_mode)
        self.keep((get_engine(), cache), y)
        return (y, indices) if self.return_indices else y

    def _check_every_window_reads_the_input(self, x, grid):
        """A dilated window can fall wholly in the padding (taps on both sides of a short input): it would have
        no maximum to point at (PyTorch returns an index outside the plane there), so it is refused."""
        for axis, name in enumerate(("row", "column")):
            taps = window_taps(grid[axis], self.kernel_size[axis], self.stride[axis], self.padding[axis],
                               self.dilation[axis])
            reads_input = ((taps >= 0) & (taps < x.shape[2 + axis])).any(axis=0)
            if not reads_input.all():
                window = int(numpy.argmin(reads_input))
                raise ValueError(
                    f"MaxPool2d: window {window} reads no input {name} of input shape {checks.shape_text(x)} "
                    f"(its {name}s {', '.join(map(str, taps[:, window]))} with kernel_size {self.kernel_size}, "
                    f"dilation {self.dilation}, padding {self.padding}): use less padding or dilation")

    def backward(self, dy):
        """dy (N, C, Ho, Wo) -> dx (N, C, H, W); the indices get no gradient."""
        engine, cache = self.take_cache(dy)
        return op("pooling", "max_pool2d_backward", engine)(dy, cache)

    def extra_repr(self):
        text = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.ceil_mode:
            text += ", ceil_mode=True"
        return text + (", return_indices=True" if self.return_indices else "")


class MaxUnpool2d(Module):
    """The partial inverse of MaxPool2d: x (N, C, H, W) and its pooling indices -> y (N, C, Hout, Wout).

    y is zero except y[n, c].flat[indices[n, c, h, w]] = x[n, c, h, w]. The default size is
    Hout = (H - 1)*stride - 2*padding + kernel, likewise Wout; ``output_size`` as (Hout, Wout)
    or (N, C, Hout, Wout) picks another within (default - stride, default + stride), as PyTorch
    (for the odd sizes a pooling floored away). backward(dy) returns dx only.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding, _ = _window_geometry("MaxUnpool2d", kernel_size, stride,
                                                                          padding)

    def output_hw(self, x, output_size=None):
        """(Hout, Wout) for input x: the default, or ``output_size`` after PyTorch's range check."""
        default = tuple((x.shape[2 + a] - 1) * self.stride[a] - 2 * self.padding[a] + self.kernel_size[a]
                        for a in range(2))
        if output_size is None:
            size = default
        else:
            size = tuple(output_size)
            if len(size) == 4:
                size = size[2:]
            if len(size) != 2 or not all(isinstance(s, numbers.Integral) for s in size):
                raise ValueError(f"MaxUnpool2d: output_size must be (H, W) or (N, C, H, W) ints, "
                                 f"got {output_size!r}")
            size = tuple(int(s) for s in size)
            for a in range(2):
                low, high = default[a] - self.stride[a], default[a] + self.stride[a]
                if not low < size[a] < high:
                    raise ValueError(f"MaxUnpool2d: output_size {size} is invalid for input of shape "
                                     f"{checks.shape_text(x)}: dim {a} must be strictly between {low} and {high}")
        if min(size) < 1:
            raise ValueError(f"MaxUnpool2d: input of shape {checks.shape_text(x)} gives a non-positive output "
                             f"size {size} with kernel {self.kernel_size}, stride {self.stride}, "
                             f"padding {self.padding}")
        return size

    def _check_indices(self, x, indices, size):
        if not hasattr(indices, "dtype") or indices.dtype.kind not in "iu":
            raise TypeError(f"MaxUnpool2d: indices must be an integer array, got "
                            f"{getattr(indices, 'dtype', type(indices).__name__)}")
        check_same_device("MaxUnpool2d", x, indices, what="indices")
        if tuple(indices.shape) != tuple(x.shape):
            raise ValueError(f"MaxUnpool2d: indices of shape {checks.shape_text(indices)} do not match input of "
                             f"shape {checks.shape_text(x)}")
        if indices.size:
            xp = get_array_module(indices)

            def verdict(low, high):
                if 0 <= low and high < size[0] * size[1]:
                    return None
                return (f"MaxUnpool2d: index {int(low if low < 0 else high)} does not fit the output planes of "
                        f"size {size[0]}x{size[1]} (valid indices 0..{size[0] * size[1] - 1}); pass the pooled "
                        f"input's size as output_size")
            # on a GPU read back with the next host read (the loss value), where the kernel skipped such indices
            check_values(xp.stack([indices.min(), indices.max()]), verdict)

    def forward(self, x, indices, output_size=None):
        checks.check_input_4d("MaxUnpool2d", x)
        size = self.output_hw(x, output_size)
        self._check_indices(x, indices, size)
        y, cache = op("pooling", "max_unpool2d_forward")(x, indices, size)
        self.keep((get_engine(), cache), y)
        return y

    def backward(self, dy):
        """dy (N, C, Hout, Wout) -> dx (N, C, H, W)."""
        engine, cache = self.take_cache(dy)
        return op("pooling", "max_unpool2d_backward", engine)(dy, cache)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
