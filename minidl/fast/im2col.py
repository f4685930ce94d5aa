"""The fast engine's im2col and col2im: those of ``minidl/functional/im2col.py``, into reused buffers.

Speeds up: no padded copy of x, unfolding into a workspace buffer (``im2col_in_workspace``), bands of rows
(a negative padding), and the CUDA kernels of ``minidl.kernels`` on a GPU. Equal to the reference: each
copies (or adds) the same entries, only the destination and the order of the loops differ.

The shapes and the window rule are the reference's. On the CPU each is a loop over the kh*kw kernel
offsets, one strided-slice copy (or ``+=``) per offset, reading x through clipped slices where the
reference reads a padded copy; device arrays go to the CUDA kernels in ``minidl.kernels``.
"""

import numpy

from ..backend import device_kernels
from ..functional.im2col import output_grid
from .workspace import workspace


def band_padding(padding, stride, top):
    """The padding under which window row ``top`` is unfolded as row 0: the top padding less top * stride.

    im2col and col2im then cut or fill just the band of window rows from ``top``, which is how convolutions
    and Winograd go through a large image in bands (negative when the band starts inside x).
    """
    return (padding[0] - top * stride[0], padding[1])


def row_bands(rows, max_rows):
    """[(top, stop), ...]: ``rows`` rows in the fewest bands of at most ``max_rows`` (at least 1), as even as can be."""
    if rows <= 0:
        return []
    count = -(-rows // max(1, max_rows))
    step = -(-rows // count)
    return [(top, min(top + step, rows)) for top in range(0, rows, step)]


def inside_range(size, count, offset, step):
    """Which of ``count`` taps at ``offset + q*step`` (q = 0..count-1) fall inside [0, size).

    Returns (q_first, q_stop, slice of the input they read): taps q_first..q_stop-1
    read input[offset + q*step]; the others fall in the padding.
    """
    q_first = min(count, max(0, -(offset // step)))
    q_stop = max(q_first, min(count, (size - 1 - offset) // step + 1)) if offset <= size - 1 else q_first
    start = offset + q_first * step
    return q_first, q_stop, slice(start, start + (q_stop - q_first - 1) * step + 1 if q_stop > q_first else start, step)


def _offset_ranges(input_hw, kernel, stride, padding, dilation, grid):
    """For each kernel offset (i, j): the window rows/cols inside the input and the input slices they read."""
    for i in range(kernel[0]):
        rows = inside_range(input_hw[0], grid[0], i * dilation[0] - padding[0], stride[0])
        for j in range(kernel[1]):
            columns = inside_range(input_hw[1], grid[1], j * dilation[1] - padding[1], stride[1])
            yield i, j, rows, columns


def im2col(x, kernel, stride, padding, dilation, pad_value=0.0, grid=None, out=None):
    """(N, C, H, W) -> cols (N, C, kh, kw, Ho, Wo): cols[:, :, i, j, p, q] = x_padded[:, :, p*sh + i*dh, q*sw + j*dw].

    ``pad_value`` fills the border (0 for convolution, -inf for max-pooling).
    ``grid`` = (Ho, Wo) keeps only the first Ho x Wo windows (default: all that fit).
    ``out``, if given, is a preallocated cols buffer to fill (a layer passes a
    reused workspace buffer); otherwise cols is a new array. The dtype is kept.

    No padded copy of x is made: for each offset (i, j), the windows whose tap
    lands inside x copy one strided slice of x, and the rest get ``pad_value``.
    A padding may be negative: the windows then start inside x, as when a
    convolution unfolds a band of rows lower down (``band_padding``; only host
    arrays are unfolded in bands).
    """
    if grid is None:
        grid = output_grid(x.shape[2:], kernel, stride, padding, dilation)
    kernels = device_kernels(x)
    if kernels:
        return kernels.im2col(x, kernel, stride, padding, dilation, pad_value, grid, out)
    n, c = x.shape[:2]
    cols = numpy.empty((n, c) + tuple(kernel) + tuple(grid), dtype=x.dtype) if out is None else out
    for i, j, (p0, p1, rows), (q0, q1, columns) in _offset_ranges(x.shape[2:], kernel, stride, padding, dilation,
                                                                  grid):
        target = cols[:, :, i, j]
        target[:, :, :p0] = pad_value
        target[:, :, p1:] = pad_value
        target[:, :, p0:p1, :q0] = pad_value
        target[:, :, p0:p1, q1:] = pad_value
        target[:, :, p0:p1, q0:q1] = x[:, :, rows, columns]
    return cols


def im2col_in_workspace(x, kernel, stride, padding, dilation, pad_value=0.0, grid=None):
    """``im2col`` into the shared workspace buffer "im2col.cols": no fresh allocation per call, but the
    result is valid only until the next call of this function (the layers consume it at once)."""
    if grid is None:
        grid = output_grid(x.shape[2:], kernel, stride, padding, dilation)
    shape = tuple(x.shape[:2]) + tuple(kernel) + tuple(grid)
    buffer = workspace.take("im2col.cols", shape, x.dtype, x)
    return im2col(x, kernel, stride, padding, dilation, pad_value, grid, out=buffer)


def col2im(cols, input_shape, stride, padding, dilation, out=None, overwrite=False):
    """cols (N, C, kh, kw, Ho, Wo) -> x (N, C, H, W): each column added back onto its window.

    The adjoint of ``im2col`` (with zero padding): pixels covered by several
    windows receive the sum of their columns; columns that fell in the padding
    are dropped. The result is a new array, or ``out`` with the sums added to it.
    ``overwrite`` writes the columns into ``out`` instead of adding them, which
    saves zeroing ``out`` first; only for windows that do not overlap (stride >=
    dilated kernel), and pixels that no window covers keep their values. (It
    runs the slice loop below on either device: each pixel is written once.)
    """
    if overwrite and (out is None or any(stride[a] < dilation[a] * (cols.shape[2 + a] - 1) + 1 for a in range(2))):
        raise ValueError(f"col2im: overwrite needs out and windows that do not overlap, got kernel "
                         f"{cols.shape[2:4]}, stride {tuple(stride)}, dilation {tuple(dilation)}")
    kernels = device_kernels(cols)
    if kernels and not overwrite:
        if out is None or out.flags.c_contiguous:
            return kernels.col2im(cols, input_shape, stride, padding, dilation, out=out)
        out += kernels.col2im(cols, input_shape, stride, padding, dilation)
        return out
    n, c, kh, kw, ho, wo = cols.shape
    x = numpy.zeros(tuple(input_shape), dtype=cols.dtype) if out is None else out
    for i, j, (p0, p1, rows), (q0, q1, columns) in _offset_ranges(input_shape[2:], (kh, kw), stride, padding,
                                                                  dilation, (ho, wo)):
        # x[:, :, p*sh + i*dh - ph, q*sw + j*dw - pw] += cols[:, :, i, j, p, q] for taps inside x
        if overwrite:
            x[:, :, rows, columns] = cols[:, :, i, j, p0:p1, q0:q1]
        else:
            x[:, :, rows, columns] += cols[:, :, i, j, p0:p1, q0:q1]
    return x
