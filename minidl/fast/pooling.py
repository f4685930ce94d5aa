"""Fast max-pooling and max-unpooling: ``minidl/functional/pooling.py`` with cheaper routes and CUDA kernels.

Speeds up: windows unfolded into a reused buffer, the first maximum found by counting, a plain scatter for
the backward where windows cannot overlap, and one CUDA kernel per op on a GPU. Equal to the reference: the
same winners under the same PyTorch rules, the same routing of each gradient.

The math, the index format and PyTorch's edge rules are the reference's (docs/pooling.md). On the GPU
these run as the CUDA kernels of ``minidl.kernels``: pooling one thread per output, unpooling a scatter,
each backward a gather.
"""
import math

import numpy

from ..backend import device_kernels, get_array_module
from ..functional.pooling import extended, overhang, pooled_grid
from .im2col import col2im, im2col_in_workspace


def flat_plane_indices(indices, plane_size):
    """indices (N, C, ...) inside planes of ``plane_size`` -> int64 (N*C, K): positions in the N*C planes laid
    end to end, so one flat fancy index reaches every plane."""
    xp = get_array_module(indices)
    n, c = indices.shape[:2]
    plane_starts = xp.arange(n * c, dtype=xp.int64) * plane_size
    return indices.reshape(n * c, math.prod(indices.shape[2:])) + plane_starts[:, None]


def scatter_to_planes(values, indices, plane_hw):
    """values, indices (N, C, h, w) -> planes (N, C, H, W) of zeros with values put at the flat indices.

    planes[n, c].flat[indices[n, c, i, j]] = values[n, c, i, j]; indices must be
    distinct within a plane (a repeated one keeps one of its values).
    """
    kernels = device_kernels(values)
    if kernels:
        return kernels.max_unpool_forward(values, indices, plane_hw)
    xp = get_array_module(values)
    n, c = values.shape[:2]
    planes = xp.zeros(n * c * plane_hw[0] * plane_hw[1], dtype=values.dtype)
    planes[flat_plane_indices(indices, plane_hw[0] * plane_hw[1]).reshape(-1)] = values.reshape(-1)
    return planes.reshape(n, c, plane_hw[0], plane_hw[1])


def gather_from_planes(planes, indices):
    """planes (N, C, H, W), indices (N, C, h, w) -> (N, C, h, w): planes[n, c].flat[indices[n, c, i, j]]."""
    kernels = device_kernels(planes)
    if kernels:
        return kernels.max_unpool_backward(planes, indices)
    xp = get_array_module(planes)
    plane_size = planes.shape[2] * planes.shape[3]
    return xp.take(planes.reshape(-1), flat_plane_indices(indices, plane_size)).reshape(indices.shape)


def window_corners(grid, input_hw, kernel, stride, padding, dilation, xp=numpy):
    """Where each window's cells are, as flat indices h * W + w of the unpadded plane.

    Returns ``corner`` (Ho, Wo) int64, the index of every window's cell (0, 0),
    and ``offsets`` (kh*kw,) int64 in scan order, so cell k of window p is
    corner[p] + offsets[k]. Cells in the padding get meaningless values; they
    never win a max.
    """
    (ho, wo), (_, width) = grid, input_hw
    rows = xp.arange(ho, dtype=xp.int64) * stride[0] - padding[0]
    columns = xp.arange(wo, dtype=xp.int64) * stride[1] - padding[1]
    corner = rows[:, None] * width + columns[None, :]
    offsets = xp.asarray([i * dilation[0] * width + j * dilation[1]
                          for i in range(kernel[0]) for j in range(kernel[1])], dtype=xp.int64)
    return corner, offsets


def first_inside_indices(grid, input_hw, stride, padding, dilation, xp=numpy):
    """(Ho, Wo) int64: the flat index of each window's first cell inside the unpadded input."""
    def first_inside(count, axis):
        start = xp.arange(count, dtype=xp.int64) * stride[axis] - padding[axis]
        steps_outside = (xp.maximum(-start, 0) + dilation[axis] - 1) // dilation[axis]
        return start + steps_outside * dilation[axis]
    return first_inside(grid[0], 0)[:, None] * input_hw[1] + first_inside(grid[1], 1)[None, :]


def _first_max_taps(windows, y):
    """windows (N, C, K, Ho, Wo), y their max over K -> (N, C, Ho, Wo) small ints: the first k with windows[k] == y.

    It counts the leading taps that differ from the max, sum_{k < K-1} prod_{j <= k} [windows[j] != y],
    a few cheap passes (K - 1 when no tap equals y, as for a NaN maximum).
    """
    xp = get_array_module(windows)
    count = windows.shape[2]
    taps = xp.zeros(y.shape, dtype=xp.int8 if count <= 128 else xp.int32)
    not_reached = xp.ones(y.shape, dtype=bool)
    for k in range(count - 1):
        not_reached &= windows[:, :, k] != y
        taps += not_reached
    return taps


def _last_nan_indices(windows, corner, offsets):
    """windows (N, C, K, Ho, Wo) -> int64 (N, C, Ho, Wo): index of the last NaN cell (of cell K-1 if none)."""
    xp = get_array_module(windows)
    last_nan = len(offsets) - 1 - xp.argmax(xp.isnan(windows[:, :, ::-1]), axis=2)
    return corner + offsets[last_nan]


def max_pool2d_forward(x, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    """x (N, C, H, W) -> (y (N, C, Ho, Wo), indices (N, C, Ho, Wo) int64), cache.

    ``kernel``, ``stride``, ``padding`` and ``dilation`` are pairs; the grid is
    ``pooled_grid`` (PyTorch's). Cells past the padded input, which ceil_mode's
    last windows may reach, count as padding.
    """
    kernels = device_kernels(x)
    if kernels:
        grid = pooled_grid(x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
        y, indices = kernels.max_pool_forward(x, kernel, stride, padding, dilation, grid)
        return (y, indices), (indices, x.shape, kernel, stride, padding, dilation)
    xp = get_array_module(x)
    n, c, h, w = x.shape
    grid = pooled_grid((h, w), kernel, stride, padding, dilation, ceil_mode)
    extra = overhang((h, w), grid, kernel, stride, padding, dilation)
    padded_x = extended(x, extra, -numpy.inf)
    cols = im2col_in_workspace(padded_x, kernel, stride, padding, dilation, pad_value=-numpy.inf, grid=grid)
    windows = cols.reshape(n, c, kernel[0] * kernel[1], grid[0], grid[1])
    y = windows.max(axis=2)
    corner, offsets = window_corners(grid, (h, w), kernel, stride, padding, dilation, xp)
    indices = corner + xp.take(offsets, _first_max_taps(windows, y))
    nan_windows = xp.isnan(y)
    if nan_windows.any():
        indices = xp.where(nan_windows, _last_nan_indices(windows, corner, offsets), indices)
    if padding != (0, 0) or max(extra):
        only_minus_inf = y == -numpy.inf
        if only_minus_inf.any():
            first_inside = first_inside_indices(grid, (h, w), stride, padding, dilation, xp)
            indices = xp.where(only_minus_inf, first_inside, indices)
    return (y, indices), (indices, x.shape, kernel, stride, padding, dilation)


def windows_overlap(kernel, stride, dilation):
    """Whether neighbouring windows can share an input cell along either axis: stride < d(k-1) + 1."""
    return any(stride[a] < dilation[a] * (kernel[a] - 1) + 1 for a in range(2))


def route_through_windows(dy, cache):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W) by col2im of one-hot columns: right for any window geometry."""
    indices, input_shape, kernel, stride, padding, dilation = cache
    xp = get_array_module(dy)
    n, c, ho, wo = dy.shape
    corner, offsets = window_corners((ho, wo), input_shape[2:], kernel, stride, padding, dilation, xp)
    one_hot = xp.empty((n, c, len(offsets), ho, wo), dtype=dy.dtype)
    for k in range(len(offsets)):
        one_hot[:, :, k] = xp.where(indices == corner + offsets[k], dy, 0)
    # dx = col2im(cols) with cols[n, c, k, p] = dy[n, c, p] * [window p's maximum is its cell k]
    h, w = input_shape[2:]
    extra = overhang((h, w), (ho, wo), kernel, stride, padding, dilation)
    dx = col2im(one_hot.reshape(n, c, kernel[0], kernel[1], ho, wo), (n, c, h + extra[0], w + extra[1]), stride,
                padding, dilation)
    return xp.ascontiguousarray(dx[:, :, :h, :w]) if max(extra) else dx


def max_pool2d_backward(dy, cache):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W): each gradient added to its window's maximum only.

    Where windows cannot overlap, a plain scatter to the indices; otherwise col2im, which sums.
    """
    kernels = device_kernels(dy)
    if kernels:
        indices, input_shape, kernel, stride, padding, dilation = cache
        return kernels.max_pool_backward(dy, indices, input_shape, kernel, stride, padding, dilation)
    indices, input_shape, kernel, stride, _, dilation = cache
    if windows_overlap(kernel, stride, dilation):
        return route_through_windows(dy, cache)
    # dx[n, c].flat[indices[n, c, p]] = dy[n, c, p]: every cell is in at most one window
    return scatter_to_planes(dy, indices, input_shape[2:])


def max_unpool2d_forward(x, indices, output_hw):
    """x, indices (N, C, H, W) -> y (N, C, *output_hw): zeros with y[n, c].flat[indices[n, c, p]] = x[n, c, p]."""
    return scatter_to_planes(x, indices, output_hw), indices


def max_unpool2d_backward(dy, indices):
    """dy (N, C, Hout, Wout) -> dx (N, C, H, W)."""
    # dx[n, c, p] = dy[n, c].flat[indices[n, c, p]]
    return gather_from_planes(dy, indices)
