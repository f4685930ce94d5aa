"""Convolution and transposed convolution, each the other's adjoint.

Convolution (cross-correlation, as PyTorch) by im2col:
    cols = im2col(x)                      (N, C*kh*kw, Ho*Wo)
    y[n] = W (O, C*kh*kw) @ cols[n]       (N, O, Ho*Wo) -> (N, O, Ho, Wo)
Transposed convolution is the adjoint map, by col2im:
    cols[n] = W^T (Cout*kh*kw, Cin) @ x[n]   then   y = col2im(cols)
So conv's input gradient is a transposed conv of dy, and a transposed conv's
input gradient is a conv of dy, with the same weight and geometry.

A stride-1 convolution is also a transposed convolution: with the kernel
flipped in space and its two channel axes swapped (``transposed_twin``) and
padding d(k-1) - p, both give the same y. im2col moves C_in*kh*kw values per
output pixel, the twin's col2im C_out*kh*kw, so ``conv2d_forward`` runs a
stride-1 conv through its twin when C_out < C_in (a decoder conv, say), and
its backward is then the twin's backward. The results are equal; only the
memory traffic differs.
"""
from ..backend import get_array_module
from .im2col import col2im, im2col
from .workspace import workspace


def _weight_matrix(weight):
    """(A, B, kh, kw) -> (A, B*kh*kw): the GEMM view of a conv weight."""
    return weight.reshape(weight.shape[0], -1)


def correlate(x, weight, stride, padding, dilation, grid):
    """Conv without bias: x (N, C, H, W), weight (O, C, kh, kw) -> y (N, O, Ho, Wo), cols.

    ``grid`` = (Ho, Wo) is the output size; cols is (N, C*kh*kw, Ho*Wo).
    """
    n = x.shape[0]
    out_channels, _, kh, kw = weight.shape
    cols = im2col(x, (kh, kw), stride, padding, dilation, grid=grid).reshape(n, -1, grid[0] * grid[1])
    y = _weight_matrix(weight) @ cols
    return y.reshape(n, out_channels, grid[0], grid[1]), cols


def scatter(x, weight, stride, padding, dilation, output_hw):
    """Transposed conv without bias: x (N, Cin, H, W), weight (Cin, Cout, kh, kw) -> (N, Cout, *output_hw)."""
    n, in_channels, h, w = x.shape
    _, out_channels, kh, kw = weight.shape
    cols = workspace.take("conv.scatter", (n, out_channels * kh * kw, h * w), x.dtype, x)
    get_array_module(x).matmul(_weight_matrix(weight).T, x.reshape(n, in_channels, h * w), out=cols)
    cols = cols.reshape(n, out_channels, kh, kw, h, w)
    return col2im(cols, (n, out_channels) + tuple(output_hw), stride, padding, dilation)


def _weight_gradient(dy_matrix, cols, weight_shape):
    """dW = sum_n dy[n] (A, P) @ cols[n]^T (P, B*kh*kw), reshaped to the weight's shape."""
    return (dy_matrix @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(weight_shape)


def transposed_twin(weight):
    """(A, B, kh, kw) -> (B, A, kh, kw) flipped in space: conv weight <-> its stride-1 transposed-conv twin."""
    return weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)


def twin_padding(weight, padding, dilation):
    """The twin's padding d(k-1) - p per axis."""
    return tuple(dilation[a] * (weight.shape[2 + a] - 1) - padding[a] for a in range(2))


def twin_is_cheaper(weight, stride, padding, dilation):
    """Whether a conv should run as its transposed twin: stride 1, C_out < C_in, and a valid twin padding."""
    out_channels, in_channels = weight.shape[:2]
    return (tuple(stride) == (1, 1) and out_channels < in_channels
            and min(twin_padding(weight, padding, dilation)) >= 0)


def conv2d_forward(x, weight, bias, stride, padding, dilation, grid):
    """x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None -> y (N, O, Ho, Wo), cache."""
    if twin_is_cheaper(weight, stride, padding, dilation):
        y, twin_cache = conv_transpose2d_forward(x, transposed_twin(weight), bias, stride,
                                                 twin_padding(weight, padding, dilation), dilation, grid)
        return y, ("twin", twin_cache)
    y, _ = correlate(x, weight, stride, padding, dilation, grid)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y, ("direct", (x, weight, bias is not None, stride, padding, dilation))


def conv2d_backward(dy, cache):
    """dy (N, O, Ho, Wo) -> dx (N, C, H, W), dweight (O, C, kh, kw), dbias (O,) or None."""
    form, cache = cache
    if form == "twin":
        # the twin's backward; dW = twin(dW_twin), as twin is its own inverse
        dx, dtwin, dbias = conv_transpose2d_backward(dy, cache)
        return dx, transposed_twin(dtwin), dbias
    x, weight, has_bias, stride, padding, dilation = cache
    n, out_channels, ho, wo = dy.shape
    # dx = W^T dy: the transposed convolution of dy, back onto x's grid
    dx = scatter(dy, weight, stride, padding, dilation, x.shape[2:])
    # dW[o, c, i, j] = sum_{n, p} dy[n, o, p] * cols[n, (c, i, j), p]
    _, _, kh, kw = weight.shape
    cols = im2col(x, (kh, kw), stride, padding, dilation, grid=(ho, wo)).reshape(n, -1, ho * wo)
    dweight = _weight_gradient(dy.reshape(n, out_channels, ho * wo), cols, weight.shape)
    # db[o] = sum_{n, p} dy[n, o, p]
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias


def conv_transpose2d_forward(x, weight, bias, stride, padding, dilation, output_hw):
    """x (N, Cin, H, W), weight (Cin, Cout, kh, kw), bias (Cout,) or None -> y (N, Cout, Hout, Wout), cache."""
    y = scatter(x, weight, stride, padding, dilation, output_hw)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y, (x, weight, bias is not None, stride, padding, dilation)


def conv_transpose2d_backward(dy, cache):
    """dy (N, Cout, Hout, Wout) -> dx (N, Cin, H, W), dweight (Cin, Cout, kh, kw), dbias (Cout,) or None."""
    x, weight, has_bias, stride, padding, dilation = cache
    n, in_channels, h, w = x.shape
    # dx = conv(dy, W): the adjoint of the scatter, sampled on x's grid
    dx, dy_cols = correlate(dy, weight, stride, padding, dilation, (h, w))
    # dW[ci, (co, i, j)] = sum_{n, p} x[n, ci, p] * cols(dy)[n, (co, i, j), p]
    dweight = _weight_gradient(x.reshape(n, in_channels, h * w), dy_cols, weight.shape)
    # db[co] = sum_{n, p} dy[n, co, p]
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
