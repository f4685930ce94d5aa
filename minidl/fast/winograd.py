"""Winograd F(m x m, 3x3), m = 4 or 2: a 3x3 stride-1 convolution with 4x (or 2.25x) fewer multiplications.

Part of the fast engine (``minidl/fast/conv.py``). It equals the reference conv because the transforms are
exact polynomial interpolation identities; only rounding differs (tests/test_winograd.py).

For one input channel and one output channel, an m x m tile y of the output
comes from the t x t input tile d under it (t = m + 2) and the 3x3 kernel g as
(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)

    y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, t x t)

Flattening each t x t tile into t^2 values, every transform is one matrix
(a Kronecker product), and summing over input channels turns the elementwise
product into t^2 channel GEMMs:

    U = (G kron G) g              U (t^2, O, C)   the kernel, once per call
    V = (B^T kron B^T) d          V (t^2, C, T)   every input tile (T tiles)
    M[k] = U[k] @ V[k]            M (t^2, O, T)   t^2 O C multiplies per tile, direct conv 9 m^2 O C
    Y = (A^T kron A^T) M          Y (m^2, O, T)   the m x m output tiles

F(4x4, 3x3) spends 36 multiplies where direct convolution spends 144 (4x
fewer), F(2x2, 3x3) 16 where it spends 36 (2.25x). The backward pass is the
adjoint of those four linear maps, in reverse:

    dM = (A^T kron A^T)^T dY;  dU[k] = dM[k] @ V[k]^T;  dV[k] = U[k]^T @ dM[k]
    dd = (B^T kron B^T)^T dV;  dg = (G kron G)^T dU;  dx = the tiles dd added back (they overlap by 2)

so the gradients are those of the convolution itself, exactly (the
algorithm is an identity; only rounding differs: F(4x4)'s larger constants
cost about 1e-5 relative error in float32 against F(2x2)'s 5e-7).
The transforms cost O((C + O) * pixels) memory traffic and the channel GEMMs
save O(C * O * pixels) multiplies, so it pays only for wide layers
(``winograd_pays``); F(4x4) moves fewer numbers per pixel than F(2x2) (t^2/m^2
= 2.25 against 4) but its 4x4 tiles hang over small outputs, so outputs
under 16 pixels a side take F(2x2) (``tile_size``). docs/benchmarks.md has the
measurements.

Tiles: output tile (a, b) covers output rows m*a .. m*a + m - 1 and reads
padded input rows m*a .. m*a + t - 1: the t x t windows of the padded input
at stride m, one im2col. The transformed tiles take t^2/m^2 times the
input's memory, so the batch goes through in pieces within CHUNK_BYTES a
buffer: whole samples where they fit, else bands of tile rows of one sample,
the band from tile row a cut as row 0 under the top padding less m*a
(``band_padding`` with the tiles' stride m). When a backward will follow, the
forward keeps each piece's V for it, which needs V, not x, for dU: the cache
holds t^2/m^2 times x's memory (2.25 for F(4x4)) instead of x, in exchange
for not transforming x again.
"""
import numpy

from ..backend import cpu_budget, get_array_module
from .im2col import band_padding, col2im, im2col, row_bands
from .workspace import accumulate_product, workspace

# Lavin and Gray's (B^T, G, A^T) for each output tile size m, from interpolation at the points 0, +-1 and
# infinity (m = 2) or 0, +-1, +-2 and infinity (m = 4).
MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def kronecker_transforms(b_t, g, a_t):
    """The three tile transforms as single matrices acting on flattened tiles."""
    b_t, g, a_t = (numpy.array(matrix, dtype=numpy.float64) for matrix in (b_t, g, a_t))
    return {"input": numpy.kron(b_t, b_t),    # (t^2, t^2): d -> V
            "kernel": numpy.kron(g, g),       # (t^2, 9):   g -> U
            "output": numpy.kron(a_t, a_t)}   # (m^2, t^2): M -> Y


TRANSFORMS = {m: kronecker_transforms(*matrices) for m, matrices in MATRICES.items()}
MIN_CHANNEL_RATIO = 32
MIN_SIDE_FOR_4X4 = 16
CHUNK_BYTES = 16 << 20
_cast_transforms = {}


def is_winograd_shape(weight, stride, dilation):
    """A 3x3 kernel, stride 1, dilation 1 (any padding): the convolutions F(m x m, 3x3) computes."""
    return tuple(weight.shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)


def winograd_pays(weight, stride, dilation):
    """Whether to run this conv by Winograd: its shape fits and C_in*C_out >= 32 (C_in + C_out).

    The transforms cost memory traffic ~ (C_in + C_out) per pixel, the saved
    multiplies ~ C_in*C_out. Measured on 2 cores (docs/benchmarks.md): 64->64 and
    wider gain (64->128 at 112x112 and 128->128 by a third with F(4x4)); 32->64 and
    narrower are about even or lose, and narrow decoder convs (64->32, 32->16) run
    faster as their transposed twin (conv.py).
    """
    out_channels, in_channels = weight.shape[:2]
    return (is_winograd_shape(weight, stride, dilation)
            and in_channels * out_channels >= MIN_CHANNEL_RATIO * (in_channels + out_channels))


def tile_size(output_hw):
    """m: 4 (F(4x4, 3x3)) when both sides of the output have at least 16 pixels, else 2, whose smaller
    tiles hang less over a small output (14x14: 16x16 covered by 4x4 tiles)."""
    return 4 if min(output_hw) >= MIN_SIDE_FOR_4X4 else 2


def transform(m, name, like):
    """F(m x m)'s transform matrix ``name`` in ``like``'s dtype, on its device (memoised)."""
    xp = get_array_module(like)
    key = (m, name, xp.__name__, like.dtype.str)
    if key not in _cast_transforms:
        _cast_transforms[key] = xp.asarray(TRANSFORMS[m][name], dtype=like.dtype)
    return _cast_transforms[key]


def tile_grid(output_hw, m):
    """(th, tw): m x m tiles covering an output of ``output_hw`` (the last row/column may hang over)."""
    return -(-output_hw[0] // m), -(-output_hw[1] // m)


def tile_pieces(n, tile_rows, bytes_per_tile_row, budget):
    """The pieces transformed together: (sample slice, first tile row, stop tile row).

    As many whole samples as fit ``budget`` bytes per buffer (``bytes_per_tile_row`` a tile row and
    sample); a sample that alone passes it goes in bands of tile rows within it (at least one row).
    A budget of None takes the whole batch at once.
    """
    sample_bytes = max(1, bytes_per_tile_row * tile_rows)
    if budget is None or sample_bytes <= budget:
        step = n if budget is None else budget // sample_bytes
        return [(slice(start, min(start + step, n)), 0, tile_rows) for start in range(0, n, max(1, step))]
    return [(slice(sample, sample + 1), top, stop) for sample in range(n)
            for top, stop in row_bands(tile_rows, budget // max(1, bytes_per_tile_row))]


def kernel_transform(weight, m):
    """weight (O, C, 3, 3) -> U (t^2, O, C) = (G kron G) g for every channel pair, in the workspace (U takes
    4x the weight's memory: 38 MB fresh for 512 -> 512 would page-fault on every call)."""
    out_channels, in_channels = weight.shape[:2]
    g = weight.reshape(out_channels * in_channels, 9).T     # (9, O*C): a transposed view, no copy
    u = workspace.take("winograd.u", ((m + 2) ** 2, out_channels * in_channels), weight.dtype, weight)
    get_array_module(weight).matmul(transform(m, "kernel", weight), g, out=u)
    return u.reshape(-1, out_channels, in_channels)


def input_transform(x, m, padding, grid, for_backward):
    """x (n, C, H, W) -> V (t^2, C, n*T) = (B^T kron B^T) d for every t x t tile d: a new array if ``for_backward`` (the
    backward's operand), else a workspace view."""
    xp = get_array_module(x)
    n, channels = x.shape[:2]
    (th, tw), t = grid, m + 2
    windows = workspace.take("winograd.windows", (t * t, channels, n * th * tw), x.dtype, x)
    im2col(x, (t, t), (m, m), padding, (1, 1), grid=grid,
           out=windows.reshape(t, t, channels, n, th, tw).transpose(3, 2, 0, 1, 4, 5))
    v = xp.empty(windows.shape, dtype=x.dtype) if for_backward else workspace.take("winograd.v", windows.shape, x.dtype, x)
    xp.matmul(transform(m, "input", x), windows.reshape(t * t, -1), out=v.reshape(t * t, -1))
    return v


def input_transform_adjoint(dv, m, padding, grid, dx):
    """dv (t^2, C, n*T) -> the tiles (B^T kron B^T)^T dv added back onto dx (n, C, H, W): a col2im."""
    n, channels = dx.shape[:2]
    (th, tw), t = grid, m + 2
    windows = workspace.take("winograd.windows", dv.shape, dv.dtype, dv)
    get_array_module(dv).matmul(transform(m, "input", dv).T, dv.reshape(t * t, -1), out=windows.reshape(t * t, -1))
    col2im(windows.reshape(t, t, channels, n, th, tw).transpose(3, 2, 0, 1, 4, 5), dx.shape, (m, m), padding,
           (1, 1), out=dx)


def winograd_forward(x, weight, bias, padding, grid, for_backward=True):
    """x (N, C, H, W), weight (O, C, 3, 3), bias (O,) or None -> y (N, O, Ho, Wo), cache; ``grid`` = (Ho, Wo).

    ``for_backward``: whether a backward will follow. The cache then holds each piece's V; without (inference),
    V goes through the workspace and the cache is None.
    """
    xp = get_array_module(x)
    n, out_channels = x.shape[0], weight.shape[0]
    m = tile_size(grid)
    u = kernel_transform(weight, m)
    th, tw = tile_grid(grid, m)
    y = xp.empty((n, out_channels) + tuple(grid), dtype=x.dtype)
    transformed = []  # (sample slice, first tile row, stop tile row, V): backward's operands instead of x
    for chunk, top, stop in tile_pieces(n, th, (m + 2) ** 2 * max(x.shape[1], out_channels) * tw * x.itemsize,
                                        cpu_budget(x, CHUNK_BYTES)):
        size, rows = chunk.stop - chunk.start, stop - top
        v = input_transform(x[chunk], m, band_padding(padding, (m, m), top), (rows, tw), for_backward)
        if for_backward:
            transformed.append((chunk, top, stop, v))
        products = workspace.take("winograd.m", (len(u), out_channels, size * rows * tw), x.dtype, x)
        xp.matmul(u, v, out=products)
        tiles = workspace.take("winograd.tiles", (m * m, out_channels * size * rows * tw), x.dtype, x)
        xp.matmul(transform(m, "output", x), products.reshape(len(u), -1), out=tiles)
        # y[n, o, m a + i, m b + j] = tiles[(i, j), o, n, a, b]: an m x m stride-m col2im, the tiles written
        # in place as they do not overlap (and cover y)
        col2im(tiles.reshape(m, m, out_channels, size, rows, tw).transpose(3, 2, 0, 1, 4, 5), y[chunk].shape,
               (m, m), band_padding((0, 0), (m, m), top), (1, 1), out=y[chunk], overwrite=True)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y, ((transformed, x.shape, weight, bias is not None, padding) if for_backward else None)


def winograd_backward(dy, cache):
    """dy (N, O, Ho, Wo) -> dx (N, C, H, W), dweight (O, C, 3, 3), dbias (O,) or None."""
    transformed, x_shape, weight, has_bias, padding = cache
    xp = get_array_module(dy)
    out_channels, in_channels = weight.shape[:2]
    m = tile_size(dy.shape[2:])
    u = kernel_transform(weight, m)
    tw = tile_grid(dy.shape[2:], m)[1]
    dx = xp.zeros(x_shape, dtype=dy.dtype)
    # dU in a reused buffer, summed over pieces by accumulate_product: a fresh accumulator of this size
    # page-faults on every step (docs/benchmarks.md); an empty batch has no pieces and dU = 0
    du = workspace.take("winograd.du", u.shape, dy.dtype, dy)
    if not transformed:
        du.fill(0)
    for index, (chunk, top, stop, v) in enumerate(transformed):
        size, rows = chunk.stop - chunk.start, stop - top
        dtiles = workspace.take("winograd.tiles", (m * m, out_channels * size * rows * tw), dy.dtype, dy)
        im2col(dy[chunk], (m, m), (m, m), band_padding((0, 0), (m, m), top), (1, 1), grid=(rows, tw),
               out=dtiles.reshape(m, m, out_channels, size, rows, tw).transpose(3, 2, 0, 1, 4, 5))
        # dM = (A^T kron A^T)^T dY
        dm = workspace.take("winograd.m", (len(u), out_channels, size * rows * tw), dy.dtype, dy)
        xp.matmul(transform(m, "output", dy).T, dtiles, out=dm.reshape(len(u), -1))
        # dU[k] = dM[k] @ V[k]^T, summed over pieces
        accumulate_product(du, dm, v.transpose(0, 2, 1), index == 0, "winograd.du_piece")
        # dV[k] = U[k]^T @ dM[k]; then the tiles go back onto dx
        dv = workspace.take("winograd.v", v.shape, dy.dtype, dy)  # the role V takes under no_grad
        xp.matmul(u.transpose(0, 2, 1), dm, out=dv)
        input_transform_adjoint(dv, m, band_padding(padding, (m, m), top), (rows, tw), dx[chunk])
    # dg = (G kron G)^T dU, computed as dU^T (O*C, t^2) @ (G kron G) (t^2, 9): already in (O, C, 3, 3) order
    dweight = (du.reshape(len(u), -1).T @ transform(m, "kernel", du)).reshape(out_channels, in_channels, 3, 3)
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
