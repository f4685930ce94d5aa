"""Nearest and bilinear upsampling (any resize, in fact) by interpolation matrices, with PyTorch's arithmetic.

Both modes are separable: with A_h (Ho, H) and A_w (Wo, W) interpolation matrices, every plane is resized as
    y = A_h @ x @ A_w^T        and its adjoint        dx = A_h^T @ dy @ A_w
Row o of a bilinear A holds the weights (1 - lambda, lambda) at the source cells i0 and i1; row o of a
nearest A a single 1 at the source cell, so nearest's forward is the gather y = x[src_h][:, src_w] (a
product with 0 * inf would give NaN) and its backward the product above, which sums the repeated sources.

Source positions along an axis of input size n and output size m, as PyTorch computes them (in float32
for nearest; in the input's dtype for bilinear):
    s = 1 / scale_factor when a scale factor was given, else n / m
    nearest:                 src = min(floor(dst * s), n - 1)   (dst // 2 when m = 2n, dst when m = n)
    bilinear, align_corners: src = dst * (n - 1) / (m - 1)
    bilinear, otherwise:     src = max(s * (dst + 0.5) - 0.5, 0)
    i0 = min(floor(src), n - 1),  i1 = min(i0 + 1, n - 1),  lambda = clip(src - i0, 0, 1)
"""
import numpy

from ..backend import get_array_module


def _ratio(in_size, out_size, scale_factor, dtype):
    """PyTorch's source-per-destination step: 1 / scale_factor if one was given, else in / out."""
    if scale_factor is not None and scale_factor > 0:
        return dtype.type(1.0 / scale_factor)
    return dtype.type(in_size) / dtype.type(out_size)


def nearest_sources(in_size, out_size, scale_factor=None):
    """(out_size,) int64: the source cell of every output cell, in PyTorch's float32 arithmetic.

    As in PyTorch's CPU kernel, an output of the input's size copies it and one of twice its size takes dst // 2,
    whatever scale factor produced it (2.05 on 10 cells gives 20: dst // 2, not floor(dst / 2.05)).
    """
    if out_size == in_size:
        return numpy.arange(out_size, dtype=numpy.int64)
    if out_size == 2 * in_size:
        return numpy.arange(out_size, dtype=numpy.int64) // 2
    ratio = _ratio(in_size, out_size, scale_factor, numpy.dtype(numpy.float32))
    sources = numpy.floor(numpy.arange(out_size, dtype=numpy.float32) * ratio).astype(numpy.int64)
    return numpy.minimum(sources, in_size - 1)


def linear_sources(in_size, out_size, align_corners, scale_factor, dtype):
    """(i0, i1, lambda) for every output cell: y[dst] = (1 - lambda) x[i0] + lambda x[i1], in ``dtype``."""
    dtype = numpy.dtype(dtype)
    destinations = numpy.arange(out_size, dtype=dtype)
    if out_size == in_size:
        return numpy.arange(out_size), numpy.arange(out_size), numpy.zeros(out_size, dtype)
    # BEGIN SOLUTION
    if align_corners:
        ratio = dtype.type(in_size - 1) / dtype.type(out_size - 1) if out_size > 1 else dtype.type(0)
        sources = destinations * ratio
    else:
        ratio = _ratio(in_size, out_size, scale_factor, dtype)
        sources = numpy.maximum(ratio * (destinations + dtype.type(0.5)) - dtype.type(0.5), dtype.type(0))
    first = numpy.minimum(numpy.floor(sources).astype(numpy.int64), in_size - 1)
    second = numpy.minimum(first + 1, in_size - 1)
    weight = numpy.clip(sources - first.astype(dtype), 0, 1).astype(dtype)
    return first, second, weight
    # END SOLUTION


def interpolation_matrix(in_size, out_size, mode, align_corners, scale_factor, dtype):
    """The (out_size, in_size) host matrix A of a resize along one axis: y = A @ x."""
    matrix = numpy.zeros((out_size, in_size), dtype)
    rows = numpy.arange(out_size)
    if mode == "nearest":
        matrix[rows, nearest_sources(in_size, out_size, scale_factor)] = 1
    else:
        first, second, weight = linear_sources(in_size, out_size, align_corners, scale_factor, dtype)
        matrix[rows, first] = 1 - weight
        matrix[rows, second] += weight
    return matrix


def axis_matrices(input_hw, output_hw, mode, align_corners, scale_factor, like):
    """(A_h, A_w) on ``like``'s device, in its dtype."""
    xp = get_array_module(like)
    return tuple(xp.asarray(interpolation_matrix(input_hw[a], output_hw[a], mode, align_corners, scale_factor[a],
                                                 like.dtype)) for a in range(2))


def times_on_the_right(x, matrix):
    """x (N, C, H, W) @ matrix (W, M) -> (N, C, H, M): every plane times matrix, as one (N*C*H, W) product."""
    return (x.reshape(-1, x.shape[-1]) @ matrix).reshape(x.shape[:-1] + (matrix.shape[1],))


def upsample_bilinear2d_forward(x, output_hw, align_corners, scale_factor=(None, None)):
    """x (N, C, H, W) -> y (N, C, *output_hw), cache; ``scale_factor`` per axis as given by the user (or None)."""
    rows, columns = axis_matrices(x.shape[2:], output_hw, "bilinear", align_corners, scale_factor, x)
    xp = get_array_module(x)
    # BEGIN SOLUTION
    # y = A_h @ x @ A_w^T, plane by plane
    y = xp.matmul(rows, times_on_the_right(x, columns.T))
    return y, (rows, columns)
    # END SOLUTION


def upsample_bilinear2d_backward(dy, cache):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    rows, columns = cache
    xp = get_array_module(dy)
    # BEGIN SOLUTION
    # dx = A_h^T @ dy @ A_w, plane by plane
    return times_on_the_right(xp.matmul(rows.T, dy), columns)
    # END SOLUTION


def upsample_nearest2d_forward(x, output_hw, scale_factor=(None, None)):
    """x (N, C, H, W) -> y (N, C, *output_hw), cache: y[n, c, i, j] = x[n, c, src_h[i], src_w[j]]."""
    xp = get_array_module(x)
    h, w = x.shape[2:]
    sources = (nearest_sources(h, output_hw[0], scale_factor[0]), nearest_sources(w, output_hw[1], scale_factor[1]))
    y = x[:, :, xp.asarray(sources[0])[:, None], xp.asarray(sources[1])[None, :]]
    return y, axis_matrices((h, w), output_hw, "nearest", False, scale_factor, x)


def upsample_nearest2d_backward(dy, cache):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W): every input cell gets the sum of the outputs copied from it."""
    rows, columns = cache
    xp = get_array_module(dy)
    # BEGIN SOLUTION
    # dx = B_h^T @ dy @ B_w with the 0/1 matrices B of the forward gather
    return times_on_the_right(xp.matmul(rows.T, dy), columns)
    # END SOLUTION
