"""Max-pooling with PyTorch's indices, and max-unpooling: the pair SegNet is built on.

Max-pooling unfolds every window with im2col, the border padded with -inf so a padded cell never wins:
    y[n, c, p]       = max_k cols[n, c, k, p]
    indices[n, c, p] = cells[k*, p], k* the first k with cols[n, c, k, p] == y[n, c, p]
where cells[k, p] = h * W + w is the flat position of window p's cell k in the unpadded (H, W) plane.
Its backward puts each dy on its window's maximum: col2im of one-hot columns (windows may overlap).
Max-unpooling puts x at the indices of zero planes; its backward gathers dy there.

PyTorch's edge rules live in ``pytorch_edge_indices``: a window whose maximum is NaN points at its last
NaN, and a window of only -inf at its first cell inside the input. Indices are int64, shaped like y.
"""
import math

import numpy

from ..backend import get_array_module
from .im2col import col2im, im2col


def pooled_size(size, kernel, stride, padding, dilation, ceil_mode=False):
    """Windows along one axis, PyTorch's rule: floor (or ceil) of (size + 2p - d(k-1) - 1) / s, plus 1.

    With ``ceil_mode`` a last, partial window counts only if it starts inside the input or its left padding.
    """
    reach = size + 2 * padding - dilation * (kernel - 1) - 1
    count = (reach + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (count - 1) * stride >= size + padding:
        count -= 1
    return count


def pooled_grid(input_hw, kernel, stride, padding, dilation, ceil_mode=False):
    """(Ho, Wo) of a max-pooling."""
    return tuple(pooled_size(input_hw[a], kernel[a], stride[a], padding[a], dilation[a], ceil_mode)
                 for a in range(2))


def overhang(input_hw, grid, kernel, stride, padding, dilation):
    """(rows, columns) by which ceil_mode's last windows reach past the padded input (0 without it)."""
    return tuple(max(0, (grid[a] - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + 1
                     - (input_hw[a] + 2 * padding[a])) for a in range(2))


def window_taps(grid, kernel, stride, padding, dilation):
    """(kernel, grid) host int64 array along one axis: tap i of window o reads position o*s - p + i*d."""
    return numpy.arange(kernel)[:, None] * dilation + numpy.arange(grid)[None, :] * stride - padding


def window_cells(input_hw, grid, kernel, stride, padding, dilation):
    """(cells, inside), both (kh*kw, Ho*Wo) host arrays: each window cell's flat index h * W + w in the
    unpadded plane (int64), and whether the cell lies inside it (bool), cells in scan order."""
    per_axis = [window_taps(grid[a], kernel[a], stride[a], padding[a], dilation[a]) for a in range(2)]
    rows, columns = per_axis[0][:, None, :, None], per_axis[1][None, :, None, :]
    cells = (rows * input_hw[1] + columns).reshape(kernel[0] * kernel[1], grid[0] * grid[1])
    inside = ((rows >= 0) & (rows < input_hw[0]) & (columns >= 0) & (columns < input_hw[1]))
    return cells, inside.reshape(cells.shape)


def extended(x, extra, fill):
    """x (N, C, H, W) -> (N, C, H + extra[0], W + extra[1]) with ``fill`` below and to the right (x if no extra)."""
    if not any(extra):
        return x
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + extra[0], w + extra[1]), fill, dtype=x.dtype)
    out[:, :, :h, :w] = x
    return out


def pooling_windows(x, grid, kernel, stride, padding, dilation):
    """x (N, C, H, W) -> windows (N, C, kh*kw, Ho*Wo), -inf past the input (also where ceil_mode overhangs)."""
    extra = overhang(x.shape[2:], grid, kernel, stride, padding, dilation)
    n, c = x.shape[:2]
    cols = im2col(extended(x, extra, -numpy.inf), kernel, stride, padding, dilation,
                  pad_value=-numpy.inf)[..., :grid[0], :grid[1]]
    return cols.reshape(n, c, kernel[0] * kernel[1], grid[0] * grid[1])


def cell_at(cells, taps):
    """cells (K, P), taps (N, C, P) ints -> (N, C, P) int64: cells[taps[n, c, p], p].

    Windows are translates of one another, so cells[k, p] = cells[0, p] + (cells[k, 0] - cells[0, 0]).
    """
    xp = get_array_module(taps)
    return xp.take(xp.asarray(cells[:, 0] - cells[0, 0]), taps) + xp.asarray(cells[0])


def first_true(mask):
    """mask (N, C, K, P) bool -> (N, C, P) int32: the first k with mask[n, c, k, p] (K - 1 where none is).

    mask * (K-1-k) is largest at the first True (NumPy's argmax along a short middle axis is slow).
    """
    xp = get_array_module(mask)
    last = mask.shape[2] - 1
    return last - (mask * xp.arange(last, -1, -1, dtype=xp.int32).reshape(-1, 1)).max(axis=2)


def last_true(mask):
    """mask (N, C, K, P) bool -> (N, C, P) int32: the last k with mask[n, c, k, p] (-1 where none is)."""
    xp = get_array_module(mask)
    return (mask * xp.arange(1, mask.shape[2] + 1, dtype=xp.int32).reshape(-1, 1)).max(axis=2) - 1


def pytorch_edge_indices(windows, y, indices, cells, inside):
    """PyTorch's indices where ``max`` alone does not decide: a NaN maximum -> the window's last NaN;
    a window of only -inf -> its first cell inside the input."""
    xp = get_array_module(windows)
    last_nan = last_true(xp.isnan(windows))
    indices = xp.where(last_nan >= 0, cell_at(cells, xp.maximum(last_nan, 0)), indices)
    first_inside = numpy.argmax(inside, axis=0)
    return xp.where(y == -numpy.inf, xp.asarray(cells[first_inside, numpy.arange(cells.shape[1])]), indices)


def max_pool2d_forward(x, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    """x (N, C, H, W) -> (y (N, C, Ho, Wo), indices (N, C, Ho, Wo) int64), cache.

    ``kernel``, ``stride``, ``padding`` and ``dilation`` are pairs; the grid is ``pooled_grid`` (PyTorch's).
    """
    n, c = x.shape[:2]
    grid = pooled_grid(x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
    # BEGIN SOLUTION
    windows = pooling_windows(x, grid, kernel, stride, padding, dilation)
    cells, inside = window_cells(x.shape[2:], grid, kernel, stride, padding, dilation)
    # y = the max of each window; indices = the cell of its first maximum in scan order
    y = windows.max(axis=2)
    indices = cell_at(cells, first_true(windows == y[:, :, None]))
    indices = pytorch_edge_indices(windows, y, indices, cells, inside)
    output_shape = (n, c) + grid
    return (y.reshape(output_shape), indices.reshape(output_shape)), (indices, x.shape, kernel, stride, padding,
                                                                      dilation)
    # END SOLUTION


def max_pool2d_backward(dy, cache):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W): each gradient added to its window's maximum only."""
    indices, input_shape, kernel, stride, padding, dilation = cache
    xp = get_array_module(dy)
    n, c, h, w = input_shape
    grid = dy.shape[2:]
    cells, _ = window_cells((h, w), grid, kernel, stride, padding, dilation)
    # BEGIN SOLUTION
    # dcols[n, c, k, p] = dy[n, c, p] * [cell k of window p is its maximum]; dx = col2im(dcols)
    one_hot = xp.asarray(cells)[None, None] == indices[:, :, None]
    dcols = xp.where(one_hot, dy.reshape(n, c, 1, cells.shape[1]), 0)
    extra = overhang((h, w), grid, kernel, stride, padding, dilation)
    dcols = dcols.reshape((n, c) + tuple(kernel) + tuple(grid))
    dx = col2im(dcols, (n, c, h + extra[0], w + extra[1]), stride, padding, dilation)[:, :, :h, :w]
    return xp.ascontiguousarray(dx)
    # END SOLUTION


def plane_rows(indices):
    """indices (N, C, ...) -> ((N*C, 1) row numbers, (N*C, K) indices): the fancy index of every plane's cells."""
    xp = get_array_module(indices)
    n, c = indices.shape[:2]
    # BEGIN SOLUTION
    return xp.arange(n * c)[:, None], indices.reshape(n * c, math.prod(indices.shape[2:]))
    # END SOLUTION


def max_unpool2d_forward(x, indices, output_hw):
    """x, indices (N, C, H, W) -> y (N, C, *output_hw), cache (the indices).

    y is zeros with y[n, c].flat[indices[n, c, p]] = x[n, c, p].
    """
    xp = get_array_module(x)
    n, c = x.shape[:2]
    # BEGIN SOLUTION
    y = xp.zeros((n * c, output_hw[0] * output_hw[1]), dtype=x.dtype)
    y[plane_rows(indices)] = x.reshape(n * c, math.prod(x.shape[2:]))
    return y.reshape(n, c, output_hw[0], output_hw[1]), indices
    # END SOLUTION


def max_unpool2d_backward(dy, indices):
    """dy (N, C, Hout, Wout) -> dx (N, C, H, W)."""
    n, c = dy.shape[:2]
    # BEGIN SOLUTION
    # dx[n, c, p] = dy[n, c].flat[indices[n, c, p]]
    return dy.reshape(n * c, math.prod(dy.shape[2:]))[plane_rows(indices)].reshape(indices.shape)
    # END SOLUTION
