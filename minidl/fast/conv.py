"""Fast convolution and transposed convolution: the reference ops of ``minidl/functional/conv.py``, faster.

Speeds up: Winograd for wide 3x3 convs, the transposed twin for narrowing stride-1 convs, one sample (or a
band of rows) unfolded at a time into a reused buffer, several samples and a batched dW on a GPU. Equals the
reference because every route computes the same linear map (the twin is the conv written as its adjoint,
Winograd an exact interpolation identity, bands and chunks split the same sums); tests/test_engines.py checks
forward and gradients to 1e-12 in float64. Same signatures; the cache is this module's own.

The math (im2col and a GEMM; the transposed conv as the adjoint, by col2im) is the reference's,
``minidl/functional/conv.py``, derived in docs/convolution.md and docs/transposed_convolution.md.

On the CPU the unfolding goes one sample at a time and, where a sample's
columns would pass ``backend.unfold_budget`` (16 MiB), in bands of rows of the window
grid (y's rows for a conv, x's for a transposed conv, whose col2im then adds
overlapping rows): the band starting at row r is unfolded as row 0 under the
padding p - r * stride (``band_padding``), which im2col and col2im take as
they take any padding. The sums are the same; only the workspace stays
bounded for large images.

A stride-1 convolution is also a transposed convolution: with the kernel
flipped in space and its two channel axes swapped (``transposed_twin``) and
padding d(k-1) - p, both give the same y. im2col moves C_in*kh*kw values per
output pixel, the twin's col2im C_out*kh*kw, so ``conv2d_forward`` runs a
stride-1 conv through its twin when C_out < C_in (a decoder conv, say), and
its backward is then the twin's backward. The results are equal; only the
memory traffic differs.

Wide 3x3 stride-1 convs on the CPU run by Winograd F(4x4, 3x3), or F(2x2, 3x3)
for outputs under 16 pixels a side, instead (``minidl/fast/winograd.py``):
the same result with 4x (2.25x) fewer multiplies.
"""
from ..backend import get_array_module, runs_winograd, samples_per_unfold, unfold_budget
from ..functional.conv import weight_matrix
from .im2col import band_padding, col2im, im2col_in_workspace, output_grid, row_bands
from .winograd import winograd_backward, winograd_forward, winograd_pays
from .workspace import accumulate_product, workspace


def sample_chunks(x, sample_bytes):
    """Slices of the batch unfolded together (``backend.samples_per_unfold``), a sample's columns being
    ``sample_bytes``: one sample on the CPU keeps them in cache; on a GPU as many as the budget allows."""
    step = samples_per_unfold(x, sample_bytes)
    return [slice(start, min(start + step, x.shape[0])) for start in range(0, x.shape[0], step)]


def pieces(x, channels, kernel, grid):
    """The pieces a batch is unfolded in: (sample slice, first row, stop row).

    Each of ``sample_chunks`` is cut into bands of the rows of ``grid``, the grid of windows being unfolded
    (channels*kh*kw values a window), each band's columns within ``backend.unfold_budget`` (one row at
    least). A batch that fits the budget is one piece of all rows.
    """
    budget = unfold_budget(x)
    row_bytes = max(1, channels * kernel[0] * kernel[1] * grid[1] * x.itemsize)
    bands = []
    for chunk in sample_chunks(x, row_bytes * grid[0]):
        max_rows = budget // (row_bytes * (chunk.stop - chunk.start))
        bands += [(chunk, top, stop) for top, stop in row_bands(grid[0], max_rows)]
    return bands


def is_pointwise(kernel, stride, padding):
    """Whether a conv is 1x1 with stride 1 and no padding: its im2col columns are x itself."""
    return tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def unfolded(x, kernel, stride, padding, dilation, grid):
    """x (n, C, H, W) -> cols (n, C*kh*kw, Ho*Wo): im2col as GEMM operands (a workspace view, or x itself
    for a pointwise conv)."""
    if is_pointwise(kernel, stride, padding) and tuple(grid) == tuple(x.shape[2:]):
        return x.reshape(x.shape[0], x.shape[1], grid[0] * grid[1])
    return im2col_in_workspace(x, kernel, stride, padding, dilation, grid=grid).reshape(x.shape[0], -1,
                                                                                         grid[0] * grid[1])


def correlate(x, weight, stride, padding, dilation, grid):
    """Conv without bias: x (N, C, H, W), weight (O, C, kh, kw) -> y (N, O, Ho, Wo), ``grid`` = (Ho, Wo).

    y[n] = W (O, C*kh*kw) @ cols[n] (C*kh*kw, Ho*Wo), a chunk of samples at a time.
    """
    xp = get_array_module(x)
    n, out_channels = x.shape[0], weight.shape[0]
    y = xp.empty((n, out_channels, grid[0] * grid[1]), dtype=x.dtype)
    kernel, width = weight.shape[2:], grid[1]
    for chunk, top, stop in pieces(x, x.shape[1], kernel, grid):
        cols = unfolded(x[chunk], kernel, stride, band_padding(padding, stride, top), dilation, (stop - top, width))
        xp.matmul(weight_matrix(weight), cols, out=y[chunk, :, top * width:stop * width])
    return y.reshape(n, out_channels, grid[0], grid[1])


def transposed_correlate(x, weight, stride, padding, dilation, output_hw):
    """Transposed conv without bias: x (N, Cin, H, W), weight (Cin, Cout, kh, kw) -> (N, Cout, *output_hw).

    cols[n] = W^T (Cout*kh*kw, Cin) @ x[n] (Cin, H*W), then y[n] = col2im(cols[n]); a pointwise
    transposed conv's col2im is the identity, so its y[n] is the product itself.
    """
    xp = get_array_module(x)
    n, in_channels, h, w = x.shape
    _, out_channels, kh, kw = weight.shape
    flat_x = x.reshape(n, in_channels, h * w)
    if is_pointwise((kh, kw), stride, padding) and tuple(output_hw) == (h, w):
        return xp.matmul(weight_matrix(weight).T, flat_x).reshape(n, out_channels, h, w)
    y = xp.zeros((n, out_channels) + tuple(output_hw), dtype=x.dtype)
    for chunk, top, stop in pieces(x, out_channels, (kh, kw), (h, w)):
        size = chunk.stop - chunk.start
        cols = workspace.take("conv.transposed_correlate", (size, out_channels * kh * kw, (stop - top) * w), x.dtype, x)
        xp.matmul(weight_matrix(weight).T, flat_x[chunk, :, top * w:stop * w], out=cols)
        col2im(cols.reshape(size, out_channels, kh, kw, stop - top, w), y[chunk].shape, stride,
               band_padding(padding, stride, top), dilation, out=y[chunk])
    return y


def add_weight_gradient(dweight_t, left, cols, first):
    """dweight_t (B*kh*kw, A) += sum_n cols[n] @ left[n]^T: a piece's share of dW^T (= if ``first``).

    The reference's dW = sum_n left[n] @ cols[n]^T, accumulated transposed: BLAS runs the long P axis
    about twice as fast with cols on the left. A one-sample piece (the CPU) is one GEMM into dW^T
    (``accumulate_product``). A piece of several samples (a GPU) is one batched GEMM and a sum over its
    samples: two launches instead of two a sample. A batched GEMM takes C-contiguous operands, so the one
    given transposed is copied: the smaller of the two, as cols[n] @ left[n]^T or (left[n] @ cols[n]^T)^T.
    """
    if left.shape[0] == 1:
        accumulate_product(dweight_t, cols[0], left[0].reshape(left.shape[1], -1).T, first, "conv.dweight")
        return
    xp = get_array_module(dweight_t)
    left = left.reshape(left.shape[0], left.shape[1], -1)
    if left.shape[1] <= cols.shape[1]:
        total = xp.matmul(cols, left.transpose(0, 2, 1)).sum(axis=0)
    else:
        total = xp.matmul(left, cols.transpose(0, 2, 1)).sum(axis=0).T
    if first:
        dweight_t[...] = total
    else:
        dweight_t += total


def transposed_twin(weight):
    """(A, B, kh, kw) -> (B, A, kh, kw) flipped in space: conv weight <-> its stride-1 transposed-conv twin."""
    return weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)


def twin_padding(weight, padding, dilation):
    """The twin's padding d(k-1) - p per axis."""
    return tuple(dilation[a] * (weight.shape[2 + a] - 1) - padding[a] for a in range(2))


def has_twin(weight, stride, padding, dilation):
    """Whether the conv equals a transposed conv of its twin: stride 1 and a non-negative twin padding."""
    return tuple(stride) == (1, 1) and min(twin_padding(weight, padding, dilation)) >= 0


def twin_is_cheaper(weight, stride, padding, dilation):
    """Whether a conv should run as its transposed twin: it has one, C_out < C_in, and it is not pointwise
    (a 1x1 conv unfolds nothing either way)."""
    return (has_twin(weight, stride, padding, dilation) and weight.shape[0] < weight.shape[1]
            and not is_pointwise(weight.shape[2:], stride, padding))


def conv2d_forward(x, weight, bias, stride, padding, dilation, for_backward=True):
    """x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None -> y (N, O, Ho, Wo), cache.

    ``for_backward`` False says no backward will follow (``no_grad``), so Winograd keeps nothing for one.
    """
    grid = output_grid(x.shape[2:], weight.shape[2:], stride, padding, dilation)
    if winograd_pays(weight, stride, dilation) and runs_winograd(x):
        y, winograd_cache = winograd_forward(x, weight, bias, padding, grid, for_backward)
        return y, ("winograd", winograd_cache)
    if twin_is_cheaper(weight, stride, padding, dilation):
        twin = get_array_module(weight).ascontiguousarray(transposed_twin(weight))
        y, twin_cache = conv_transpose2d_forward(x, twin, bias, stride,
                                                 twin_padding(weight, padding, dilation), dilation, grid)
        return y, ("twin", twin_cache)
    y = correlate(x, weight, stride, padding, dilation, grid)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y, ("direct", (x, weight, bias is not None, stride, padding, dilation))


def conv2d_backward(dy, cache):
    """dy (N, O, Ho, Wo) -> dx (N, C, H, W), dweight (O, C, kh, kw), dbias (O,) or None."""
    form, cache = cache
    if form == "winograd":
        return winograd_backward(dy, cache)
    if form == "twin":
        # the twin's backward; dW = twin(dW_twin), as twin is its own inverse
        dx, dtwin, dbias = conv_transpose2d_backward(dy, cache)
        return dx, transposed_twin(dtwin), dbias
    x, weight, has_bias, stride, padding, dilation = cache
    xp = get_array_module(dy)
    if has_twin(weight, stride, padding, dilation) and weight.shape[0] == weight.shape[1]:
        # C_out == C_in: the twin's backward unfolds dy once for both dx and dW (no col2im, one im2col)
        twin = xp.ascontiguousarray(transposed_twin(weight))
        twin_cache = (x, twin, has_bias, stride, twin_padding(weight, padding, dilation), dilation)
        dx, dtwin, dbias = conv_transpose2d_backward(dy, twin_cache)
        return dx, transposed_twin(dtwin), dbias
    # dx = W^T dy: the transposed convolution of dy, back onto x's grid
    dx = transposed_correlate(dy, weight, stride, padding, dilation, x.shape[2:])
    # dW[o, (c, i, j)] = sum_{n, p} dy[n, o, p] * cols(x)[n, (c, i, j), p]
    dweight_t = xp.zeros(weight_matrix(weight).shape[::-1], dtype=weight.dtype)
    kernel, (rows, width) = weight.shape[2:], dy.shape[2:]
    flat_dy = dy.reshape(dy.shape[0], dy.shape[1], rows * width)
    for index, (chunk, top, stop) in enumerate(pieces(x, x.shape[1], kernel, (rows, width))):
        cols = unfolded(x[chunk], kernel, stride, band_padding(padding, stride, top), dilation, (stop - top, width))
        add_weight_gradient(dweight_t, flat_dy[chunk, :, top * width:stop * width], cols, first=index == 0)
    # db[o] = sum_{n, p} dy[n, o, p]
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, xp.ascontiguousarray(dweight_t.T).reshape(weight.shape), dbias


def conv_transpose2d_forward(x, weight, bias, stride, padding, dilation, output_hw):
    """x (N, Cin, H, W), weight (Cin, Cout, kh, kw), bias (Cout,) or None -> y (N, Cout, Hout, Wout), cache."""
    y = transposed_correlate(x, weight, stride, padding, dilation, output_hw)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y, (x, weight, bias is not None, stride, padding, dilation)


def conv_transpose2d_backward(dy, cache):
    """dy (N, Cout, Hout, Wout) -> dx (N, Cin, H, W), dweight (Cin, Cout, kh, kw), dbias (Cout,) or None."""
    x, weight, has_bias, stride, padding, dilation = cache
    xp = get_array_module(dy)
    n, in_channels, h, w = x.shape
    dx = xp.empty((n, in_channels, h * w), dtype=dy.dtype)
    dweight_t = xp.zeros(weight_matrix(weight).shape[::-1], dtype=weight.dtype)
    kernel, flat_x = weight.shape[2:], x.reshape(n, in_channels, h * w)
    for index, (chunk, top, stop) in enumerate(pieces(dy, dy.shape[1], kernel, (h, w))):
        cols = unfolded(dy[chunk], kernel, stride, band_padding(padding, stride, top), dilation, (stop - top, w))
        # dx[n] = W (Cin, Cout*kh*kw) @ cols(dy)[n]: the conv of dy, sampled on x's grid
        xp.matmul(weight_matrix(weight), cols, out=dx[chunk, :, top * w:stop * w])
        # dW[ci, (co, i, j)] = sum_{n, p} x[n, ci, p] * cols(dy)[n, (co, i, j), p]
        add_weight_gradient(dweight_t, flat_x[chunk, :, top * w:stop * w], cols, first=index == 0)
    # db[co] = sum_{n, p} dy[n, co, p]
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx.reshape(x.shape), xp.ascontiguousarray(dweight_t.T).reshape(weight.shape), dbias
