"""Convolution and transposed convolution by whole-array im2col and col2im, each the other's adjoint.

Convolution (cross-correlation, as PyTorch), with K = C*kh*kw and P = Ho*Wo:
    cols = im2col(x)                       (N, K, P)
    y[n] = W (O, K) @ cols[n] + b          (N, O, P) -> (N, O, Ho, Wo)
Transposed convolution is the adjoint map:
    cols[n] = W^T (Cout*kh*kw, Cin) @ x[n]     then     y = col2im(cols) + b
So conv's input gradient is a transposed conv of dy, and a transposed conv's input gradient is a conv of
dy, with the same weight and geometry. ``minidl/fast/conv.py`` computes the same sums faster.
"""
from ..backend import get_array_module
from .im2col import col2im, im2col


def weight_matrix(weight):
    """(A, B, kh, kw) -> (A, B*kh*kw): the GEMM view of a conv weight."""
    return weight.reshape(weight.shape[0], -1)


def flat_cols(cols):
    """cols (N, C, kh, kw, Ho, Wo) -> (N, C*kh*kw, Ho*Wo)."""
    n, c, kh, kw, ho, wo = cols.shape
    return cols.reshape(n, c * kh * kw, ho * wo)


def weight_gradient(left, cols):
    """left (N, A, P), cols (N, K, P) -> (A, K): sum_n left[n] @ cols[n]^T.

    Computed as its transpose, (sum_n cols[n] @ left[n]^T)^T: the same sums, which BLAS runs faster this way.
    """
    xp = get_array_module(left)
    # BEGIN SOLUTION
    return xp.ascontiguousarray(xp.matmul(cols, left.transpose(0, 2, 1)).sum(axis=0).T)
    # END SOLUTION


def add_bias(y, bias):
    """y (N, O, H, W) += bias (O,) per channel, unless bias is None; returns y."""
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def transposed_correlate(x, weight, stride, padding, dilation, output_hw):
    """Transposed conv without bias: x (N, Cin, H, W), weight (Cin, Cout, kh, kw) -> y (N, Cout, *output_hw).

    ``tensordot`` contracts W^T's Cin axis with x's for every sample in one product, cols laid out
    (Cout*kh*kw, N, H*W); the transpose views it as (N, Cout, kh, kw, H, W) without copying.
    """
    n, _, h, w = x.shape
    _, out_channels, kh, kw = weight.shape
    # BEGIN SOLUTION
    # cols[n] = W^T (Cout*kh*kw, Cin) @ x[n] (Cin, H*W), then y = col2im(cols)
    cols = get_array_module(x).tensordot(weight_matrix(weight).T, x.reshape(n, x.shape[1], h * w), axes=(1, 1))
    cols = cols.transpose(1, 0, 2).reshape(n, out_channels, kh, kw, h, w)
    return col2im(cols, (n, out_channels) + tuple(output_hw), stride, padding, dilation)
    # END SOLUTION


def conv2d_forward(x, weight, bias, stride, padding, dilation, for_backward=True):
    """x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None -> y (N, O, Ho, Wo), cache.

    The cache keeps the columns of x for dW. ``for_backward`` (False inside ``no_grad``) matters to the fast
    engine only.
    """
    # BEGIN SOLUTION
    cols = im2col(x, weight.shape[2:], stride, padding, dilation)
    # y[n] = W (O, K) @ cols(x)[n] (K, P) + b
    y = get_array_module(x).matmul(weight_matrix(weight), flat_cols(cols))
    y = add_bias(y.reshape(x.shape[0], weight.shape[0], cols.shape[4], cols.shape[5]), bias)
    return y, (flat_cols(cols), x.shape, weight, bias is not None, stride, padding, dilation)
    # END SOLUTION


def conv2d_backward(dy, cache):
    """dy (N, O, Ho, Wo) -> dx (N, C, H, W), dweight (O, C, kh, kw), dbias (O,) or None."""
    cols, x_shape, weight, has_bias, stride, padding, dilation = cache
    n, out_channels = dy.shape[:2]
    # BEGIN SOLUTION
    # dx = W^T dy: the transposed convolution of dy, back onto x's grid
    dx = transposed_correlate(dy, weight, stride, padding, dilation, x_shape[2:])
    # dW = sum_n dy[n] (O, P) @ cols(x)[n]^T (P, K)
    dweight = weight_gradient(dy.reshape(n, out_channels, cols.shape[2]), cols).reshape(weight.shape)
    # db[o] = sum_{n, p} dy[n, o, p]
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
    # END SOLUTION


def conv_transpose2d_forward(x, weight, bias, stride, padding, dilation, output_hw):
    """x (N, Cin, H, W), weight (Cin, Cout, kh, kw), bias (Cout,) or None -> y (N, Cout, *output_hw), cache."""
    # BEGIN SOLUTION
    y = add_bias(transposed_correlate(x, weight, stride, padding, dilation, output_hw), bias)
    return y, (x, weight, bias is not None, stride, padding, dilation)
    # END SOLUTION


def conv_transpose2d_backward(dy, cache):
    """dy (N, Cout, Hout, Wout) -> dx (N, Cin, H, W), dweight (Cin, Cout, kh, kw), dbias (Cout,) or None."""
    x, weight, has_bias, stride, padding, dilation = cache
    n, in_channels, h, w = x.shape
    # BEGIN SOLUTION
    # cols(dy) on x's grid (output_padding can leave room for one more window row or column)
    cols = flat_cols(im2col(dy, weight.shape[2:], stride, padding, dilation)[..., :h, :w])
    # dx[n] = W (Cin, Cout*kh*kw) @ cols(dy)[n]: the convolution of dy
    dx = get_array_module(dy).matmul(weight_matrix(weight), cols).reshape(x.shape)
    # dW = sum_n x[n] (Cin, P) @ cols(dy)[n]^T (P, Cout*kh*kw)
    dweight = weight_gradient(x.reshape(n, in_channels, h * w), cols).reshape(weight.shape)
    # db[co] = sum_{n, p} dy[n, co, p]
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
    # END SOLUTION
