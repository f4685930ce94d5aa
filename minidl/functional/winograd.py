"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 2.25x fewer multiplications.

For one input channel and one output channel, a 2x2 tile y of the output
comes from the 4x4 input tile d under it and the 3x3 kernel g as
(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)

    y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, 4x4)

Flattening each 4x4 tile into 16 values, every transform is one matrix
(a Kronecker product), and summing over input channels turns the elementwise
product into 16 channel GEMMs:

    U = (G kron G) g              U (16, O, C)   the kernel, once per call
    V = (B^T kron B^T) d          V (16, C, T)   every input tile (T tiles)
    M[k] = U[k] @ V[k]            M (16, O, T)   16*O*C multiplies per tile, direct conv 36*O*C
    Y = (A^T kron A^T) M          Y (4, O, T)    the 2x2 output tiles

The backward pass is the adjoint of those four linear maps, in reverse:

    dM = (A^T kron A^T)^T dY;  dU[k] = dM[k] @ V[k]^T;  dV[k] = U[k]^T @ dM[k]
    dd = (B^T kron B^T)^T dV;  dg = (G kron G)^T dU;  dx = the tiles dd added back (they overlap by 2)

so the gradients are those of the convolution itself, exactly (the
algorithm is an identity; only rounding differs). The transforms cost
O((C + O) * pixels) memory traffic and the channel GEMMs save
O(C * O * pixels) multiplies, so it pays only for wide layers
(``winograd_pays``); docs/benchmarks.md has the measurements.

Tiles: output tile (a, b) covers output rows 2a, 2a+1 and reads padded input
rows 2a .. 2a+3. Cutting 4x4 windows at stride 2 would copy every other
element, which NumPy does slowly, so the windows are cut in two contiguous
passes of the one im2col: first the four phase planes
``P[r, s] = x_padded[r::2, s::2]`` (a 2x2 stride-2 im2col), then 2x2
stride-1 windows of those planes; tile row u = 2 * (window row) + (phase r).
The transformed tiles take 4x the input's memory, so the batch goes through
in pieces within CHUNK_BYTES a buffer: whole samples where they fit, else
bands of tile rows of one sample, the band from tile row a cut as row 0 under
the top padding less 2a (``band_padding`` with the tiles' stride 2).
"""
import numpy

from ..backend import get_array_module
from .im2col import band_padding, col2im, im2col
from .workspace import workspace

B_T = numpy.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=numpy.float64)
G = numpy.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=numpy.float64)
A_T = numpy.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=numpy.float64)

# The 16 window values of a tile as the two im2col passes lay them out: (phase r, phase s, window row, window
# col), i.e. tile position (u, v) = (2 * row + r, 2 * col + s); the input transform's columns follow that order.
TILE_ORDER = [(2 * row + r) * 4 + (2 * col + s) for r in range(2) for s in range(2)
              for row in range(2) for col in range(2)]
TRANSFORMS = {"input": numpy.kron(B_T, B_T)[:, TILE_ORDER],   # (16, 16): d (window order) -> V
              "kernel": numpy.kron(G, G),                      # (16, 9):  g -> U
              "output": numpy.kron(A_T, A_T)}                  # (4, 16):  M -> Y
MIN_CHANNEL_RATIO = 40
CHUNK_BYTES = 16 << 20
_cast_transforms = {}


def is_winograd_shape(weight, stride, dilation):
    """A 3x3 kernel, stride 1, dilation 1 (any padding): the convolutions F(2x2, 3x3) computes."""
    return tuple(weight.shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)


def winograd_pays(weight, stride, dilation):
    """Whether to run this conv by Winograd: its shape fits, C_out >= C_in, and C_in*C_out >= 40 (C_in + C_out).

    The transforms cost memory traffic ~ (C_in + C_out) per pixel, the input side
    the most; the saved multiplies ~ C_in*C_out. Measured on 2 cores
    (docs/benchmarks.md): 128->128 to 512->512 gain 10-35%, 64->128 and 128->256
    up to 20%; 64->64 and narrower lose. Convs with C_out < C_in run as their
    transposed twin (conv.py), which unfolds only C_out*9 values per pixel, and
    measured faster than Winograd at 128->64 and 256->128.
    """
    out_channels, in_channels = weight.shape[:2]
    return (is_winograd_shape(weight, stride, dilation) and out_channels >= in_channels
            and in_channels * out_channels >= MIN_CHANNEL_RATIO * (in_channels + out_channels))


def transform(name, like):
    """The transform matrix ``name`` in ``like``'s dtype, on its device (memoised)."""
    xp = get_array_module(like)
    key = (name, xp.__name__, like.dtype.str)
    if key not in _cast_transforms:
        _cast_transforms[key] = xp.asarray(TRANSFORMS[name], dtype=like.dtype)
    return _cast_transforms[key]


def tile_grid(output_hw):
    """(th, tw): 2x2 tiles covering an output of ``output_hw`` (the last row/column may hang over)."""
    return (output_hw[0] + 1) // 2, (output_hw[1] + 1) // 2


def tile_pieces(n, tile_rows, bytes_per_tile_row):
    """The pieces transformed together: (sample slice, first tile row, stop tile row).

    As many whole samples as fit CHUNK_BYTES per buffer (``bytes_per_tile_row`` a tile row and
    sample); a sample that alone passes it goes in bands of tile rows within it (at least one row).
    """
    sample_bytes = max(1, bytes_per_tile_row * tile_rows)
    if sample_bytes <= CHUNK_BYTES:
        step = CHUNK_BYTES // sample_bytes
        return [(slice(start, min(start + step, n)), 0, tile_rows) for start in range(0, n, step)]
    step = max(1, CHUNK_BYTES // max(1, bytes_per_tile_row))
    return [(slice(sample, sample + 1), top, min(top + step, tile_rows))
            for sample in range(n) for top in range(0, tile_rows, step)]


def kernel_transform(weight):
    """weight (O, C, 3, 3) -> U (16, O, C) = (G kron G) g for every channel pair."""
    out_channels, in_channels = weight.shape[:2]
    g = weight.transpose(2, 3, 0, 1).reshape(9, out_channels * in_channels)
    return (transform("kernel", weight) @ g).reshape(16, out_channels, in_channels)


def input_transform(x, padding, grid, role):
    """x (n, C, H, W) -> V (C, 16, n*T) = (B^T kron B^T) d for every tile d, in the workspace ``role``."""
    n, channels = x.shape[:2]
    th, tw = grid
    planes = workspace.take("winograd.planes", (n, channels, 2, 2, th + 1, tw + 1), x.dtype, x)
    im2col(x, (2, 2), (2, 2), padding, (1, 1), grid=(th + 1, tw + 1), out=planes)
    windows = workspace.take("winograd.windows", (channels, 16, n * th * tw), x.dtype, x)
    im2col(planes.reshape(n, 4 * channels, th + 1, tw + 1), (2, 2), (1, 1), (0, 0), (1, 1), grid=grid,
           out=windows.reshape(4 * channels, 2, 2, n, th, tw).transpose(3, 0, 1, 2, 4, 5))
    v = workspace.take(role, windows.shape, x.dtype, x)
    get_array_module(x).matmul(transform("input", x), windows, out=v)
    return v


def input_transform_adjoint(dv, padding, grid, dx):
    """dv (C, 16, n*T) -> the tiles (B^T kron B^T)^T dv added back onto dx (n, C, H, W)."""
    n, channels = dx.shape[:2]
    th, tw = grid
    xp = get_array_module(dv)
    windows = workspace.take("winograd.windows", dv.shape, dv.dtype, dv)
    xp.matmul(transform("input", dv).T, dv, out=windows)
    planes = workspace.take("winograd.planes", (n, 4 * channels, th + 1, tw + 1), dv.dtype, dv)
    planes.fill(0)
    col2im(windows.reshape(4 * channels, 2, 2, n, th, tw).transpose(3, 0, 1, 2, 4, 5), planes.shape,
           (1, 1), (0, 0), (1, 1), out=planes)
    col2im(planes.reshape(n, channels, 2, 2, th + 1, tw + 1), dx.shape, (2, 2), padding, (1, 1), out=dx)


def winograd_forward(x, weight, bias, padding, grid):
    """x (N, C, H, W), weight (O, C, 3, 3), bias (O,) or None -> y (N, O, Ho, Wo), cache; ``grid`` = (Ho, Wo)."""
    xp = get_array_module(x)
    n, out_channels = x.shape[0], weight.shape[0]
    u = kernel_transform(weight)
    th, tw = tile_grid(grid)
    y = xp.empty((n, out_channels) + tuple(grid), dtype=x.dtype)
    y[...] = 0 if bias is None else bias.reshape(1, -1, 1, 1)
    for chunk, top, stop in tile_pieces(n, th, 16 * max(x.shape[1], out_channels) * tw * x.itemsize):
        size, rows = chunk.stop - chunk.start, stop - top
        v = input_transform(x[chunk], band_padding(padding, (2, 2), top), (rows, tw), "winograd.v")
        m = workspace.take("winograd.m", (16, out_channels, size * rows * tw), x.dtype, x)
        xp.matmul(u, v.transpose(1, 0, 2), out=m)
        tiles = workspace.take("winograd.tiles", (4, out_channels * size * rows * tw), x.dtype, x)
        xp.matmul(transform("output", x), m.reshape(16, -1), out=tiles)
        # y[n, o, 2a + i, 2b + j] += tiles[(i, j), o, n, a, b]: a 2x2 stride-2 col2im (tiles do not overlap)
        col2im(tiles.reshape(2, 2, out_channels, size, rows, tw).transpose(3, 2, 0, 1, 4, 5), y[chunk].shape,
               (2, 2), band_padding((0, 0), (2, 2), top), (1, 1), out=y[chunk])
    return y, (x, weight, bias is not None, padding)


def winograd_backward(dy, cache):
    """dy (N, O, Ho, Wo) -> dx (N, C, H, W), dweight (O, C, 3, 3), dbias (O,) or None."""
    x, weight, has_bias, padding = cache
    xp = get_array_module(dy)
    n, in_channels = x.shape[:2]
    out_channels = weight.shape[0]
    u = kernel_transform(weight)
    th, tw = tile_grid(dy.shape[2:])
    dx = xp.zeros(x.shape, dtype=x.dtype)
    du = xp.zeros((16, out_channels, in_channels), dtype=x.dtype)
    for chunk, top, stop in tile_pieces(n, th, 16 * max(in_channels, out_channels) * tw * x.itemsize):
        size, rows = chunk.stop - chunk.start, stop - top
        dtiles = workspace.take("winograd.tiles", (4, out_channels * size * rows * tw), dy.dtype, dy)
        im2col(dy[chunk], (2, 2), (2, 2), band_padding((0, 0), (2, 2), top), (1, 1), grid=(rows, tw),
               out=dtiles.reshape(2, 2, out_channels, size, rows, tw).transpose(3, 2, 0, 1, 4, 5))
        # dM = (A^T kron A^T)^T dY
        dm = workspace.take("winograd.m", (16, out_channels, size * rows * tw), dy.dtype, dy)
        xp.matmul(transform("output", dy).T, dtiles, out=dm.reshape(16, -1))
        v = input_transform(x[chunk], band_padding(padding, (2, 2), top), (rows, tw), "winograd.v")
        # dU[k] = dM[k] @ V[k]^T, summed over pieces
        du += xp.matmul(dm, v.transpose(1, 2, 0))
        # dV[k] = U[k]^T @ dM[k]; then the tiles go back onto dx
        dv = workspace.take("winograd.v", v.shape, dy.dtype, dy)
        xp.matmul(u.transpose(0, 2, 1), dm, out=dv.transpose(1, 0, 2))
        input_transform_adjoint(dv, band_padding(padding, (2, 2), top), (rows, tw), dx[chunk])
    # dg = (G kron G)^T dU, computed as dU^T (O*C, 16) @ (G kron G) (16, 9): already in (O, C, 3, 3) order
    dweight = (du.reshape(16, -1).T @ transform("kernel", du)).reshape(out_channels, in_channels, 3, 3)
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
