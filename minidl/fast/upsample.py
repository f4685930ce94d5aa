"""Fast upsampling: the interpolation matrices of ``minidl/functional/upsample.py`` without their zeros.

Speeds up: banded products (16 rows at a time over the columns they touch), the cheaper of the two product
orders, a broadcast and a reshape-sum for integer nearest factors, matrices cached (on the device too).
Equal to the reference: the same matrices (built by the reference), the zeros skipped.

The matrices and PyTorch's source positions are the reference's (docs/upsampling.md). They are banded:
each product runs block by block of 16 output rows over just the input span those rows touch, so its cost
grows with the output size, not with output size times input size. Nearest's backward with an integer
scale is a reshape and a sum; an axis whose size does not change is copied.
"""
import functools

import numpy

from ..backend import cupy_or_none, get_array_module, is_gpu_array
from ..functional.upsample import interpolation_matrix, nearest_sources

BAND_BLOCK_ROWS = 16


@functools.lru_cache(maxsize=128)
def _host_matrix(in_size, out_size, mode, align_corners, scale_factor, dtype_name):
    """The (out_size, in_size) interpolation matrix on the host (cached, so read-only)."""
    matrix = interpolation_matrix(in_size, out_size, mode, align_corners, scale_factor, numpy.dtype(dtype_name))
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=64)
def _host_operator(in_size, out_size, mode, align_corners, scale_factor, dtype_name, transposed):
    """The matrix (or its transpose) and its band blocks, on the host (cached, so read-only).

    A block (start, stop, first, end) says that rows start:stop of the matrix are
    zero outside columns first:end; an interpolation matrix is banded, so products
    with these blocks skip almost all of its zeros.
    """
    matrix = _host_matrix(in_size, out_size, mode, align_corners, scale_factor, dtype_name)
    if transposed:
        matrix = numpy.ascontiguousarray(matrix.T)
        matrix.flags.writeable = False
    blocks = []
    for start in range(0, matrix.shape[0], BAND_BLOCK_ROWS):
        stop = min(start + BAND_BLOCK_ROWS, matrix.shape[0])
        used = numpy.flatnonzero(matrix[start:stop].any(axis=0))
        blocks.append((start, stop, int(used[0]), int(used[-1]) + 1) if used.size else (start, stop, 0, 0))
    return matrix, tuple(blocks)


@functools.lru_cache(maxsize=64)
def _device_operator(in_size, out_size, mode, align_corners, scale_factor, dtype_name, transposed, device_id):
    """The matrix (or its transpose) copied once to GPU ``device_id`` (the current one), as one dense block.

    On a GPU a launch costs more than the band's zeros: each product is then one dense GEMM (two a resize).
    """
    matrix, _ = _host_operator(in_size, out_size, mode, align_corners, scale_factor, dtype_name, transposed)
    return cupy_or_none().asarray(matrix), ((0, matrix.shape[0], 0, matrix.shape[1]),)


def interpolation_operator(in_size, out_size, mode, align_corners, scale_factor, like, transposed=False):
    """(A, blocks): the (out_size, in_size) matrix with y = A @ x along one axis (A^T if ``transposed``),
    in ``like``'s dtype and on its device, and its band blocks (see ``_host_operator``; one block on a GPU)."""
    key = (in_size, out_size, mode, bool(align_corners), scale_factor, numpy.dtype(like.dtype).name, transposed)
    if is_gpu_array(like):
        return _device_operator(*key, cupy_or_none().cuda.runtime.getDevice())
    return _host_operator(*key)


def _rows_product(operator, x):
    """A (P, Q) with its blocks, x (B, Q, R) -> (B, P, R): A @ x[b] for every b, block by block."""
    matrix, blocks = operator
    xp = get_array_module(x)
    out = xp.empty((x.shape[0], matrix.shape[0], x.shape[2]), dtype=x.dtype)
    for start, stop, first, end in blocks:
        if end > first:
            xp.matmul(matrix[start:stop, first:end], x[:, first:end], out=out[:, start:stop])
        else:
            out[:, start:stop] = 0
    return out


def _columns_product(x, operator):
    """x (B, R, Q), A (P, Q) with its blocks -> (B, R, P): x[b] @ A^T for every b, block by block.

    The planes are stacked into one (B*R, Q) matrix, so each block is one tall GEMM.
    """
    matrix, blocks = operator
    xp = get_array_module(x)
    rows = x.reshape(-1, x.shape[2])
    out = xp.empty((rows.shape[0], matrix.shape[0]), dtype=x.dtype)
    for start, stop, first, end in blocks:
        if end > first:
            xp.matmul(rows[:, first:end], matrix[start:stop, first:end].T, out=out[:, start:stop])
        else:
            out[:, start:stop] = 0
    return out.reshape(x.shape[0], x.shape[1], matrix.shape[0])


def resize_planes(x, rows, columns):
    """x (N, C, H, W), operators rows (Ho, H) and columns (Wo, W) -> (N, C, Ho, Wo): rows @ x[n, c] @ columns^T.

    Resizes first along the axis that gives the smaller intermediate. Every product is a
    stack of small per-plane GEMMs, which BLAS runs without waking its threads.
    """
    n, c, h, w = x.shape
    out_h, out_w = rows[0].shape[0], columns[0].shape[0]
    planes = x.reshape(n * c, h, w)
    if h * out_w <= out_h * w:
        resized = _rows_product(rows, _columns_product(planes, columns))
    else:
        resized = _columns_product(_rows_product(rows, planes), columns)
    return resized.reshape(n, c, out_h, out_w)


def _operators(input_hw, output_hw, mode, align_corners, scale_factor, like, transposed=False):
    """The (rows, columns) operators of a resize from input_hw to output_hw (transposed for its adjoint)."""
    return tuple(interpolation_operator(input_hw[a], output_hw[a], mode, align_corners, scale_factor[a], like,
                                        transposed) for a in range(2))


def upsample_bilinear2d_forward(x, output_hw, align_corners, scale_factor=(None, None)):
    """x (N, C, H, W) -> y (N, C, *output_hw), cache; ``scale_factor`` per axis as given by the user (or None)."""
    rows, columns = _operators(x.shape[2:], output_hw, "bilinear", align_corners, scale_factor, x)
    return resize_planes(x, rows, columns), (x.shape, align_corners, scale_factor)


def upsample_bilinear2d_backward(dy, cache):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    input_shape, align_corners, scale_factor = cache
    rows, columns = _operators(input_shape[2:], dy.shape[2:], "bilinear", align_corners, scale_factor, dy, True)
    # dx = A_h^T @ dy @ A_w, plane by plane
    return resize_planes(dy, rows, columns)


def integer_scale(in_size, sources):
    """The integer s when ``sources`` is dst // s with s * in_size outputs, else None."""
    scale = len(sources) // in_size
    if scale * in_size == len(sources) and numpy.array_equal(sources, numpy.arange(len(sources)) // scale):
        return scale
    return None


def upsample_nearest2d_forward(x, output_hw, scale_factor=(None, None)):
    """x (N, C, H, W) -> y (N, C, *output_hw), cache: y[n, c, i, j] = x[n, c, src_h[i], src_w[j]]."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    sources = (nearest_sources(h, output_hw[0], scale_factor[0]), nearest_sources(w, output_hw[1], scale_factor[1]))
    scales = (integer_scale(h, sources[0]), integer_scale(w, sources[1]))
    if None not in scales:
        y = xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, scales[0], w, scales[1]))
        y = y.reshape(n, c, h * scales[0], w * scales[1])
    else:
        y = x[:, :, xp.asarray(sources[0])[:, None], xp.asarray(sources[1])[None, :]]
    return y, (x.shape, scales, scale_factor)


def upsample_nearest2d_backward(dy, cache):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W): every input cell gets the sum of the outputs copied from it."""
    input_shape, scales, scale_factor = cache
    n, c, h, w = input_shape
    if None not in scales:
        # dx[n, c, i, j] = sum over the s_h x s_w block of dy that copied x[n, c, i, j]
        return dy.reshape(n, c, h, scales[0], w, scales[1]).sum(axis=(3, 5))
    rows, columns = _operators((h, w), dy.shape[2:], "nearest", False, scale_factor, dy, True)
    # dx = B_h^T @ dy @ B_w with the 0/1 matrices B of the forward gather
    return resize_planes(dy, rows, columns)
