"""im2col and col2im: every sliding window of an input as a column, and back.

For input (N, C, H, W), kernel (kh, kw) and window grid (Ho, Wo):
    cols[n, c, i, j, p, q] = x_padded[n, c, p*sh + i*dh, q*sw + j*dw]      cols: (N, C, kh, kw, Ho, Wo)
A convolution is then one matrix product and a max-pool one ``max``. ``col2im`` is the adjoint: it adds
every column back onto the window it came from, summing where windows overlap. Both return new arrays.
"""
from ..backend import get_array_module
from .windows import window_output_size


def output_grid(input_hw, kernel, stride, padding, dilation):
    """(Ho, Wo) of the windows that fit in the padded input."""
    return tuple(window_output_size(input_hw[axis], kernel[axis], stride[axis], padding[axis], dilation[axis])
                 for axis in range(2))


def tap_slices(kernel_offset, stride, dilation, grid):
    """(rows, columns): the slices of the padded input that kernel tap (i, j) reads for the whole grid."""
    # BEGIN SOLUTION
    return tuple(slice(kernel_offset[a] * dilation[a], kernel_offset[a] * dilation[a] + (grid[a] - 1) * stride[a] + 1,
                       stride[a]) for a in range(2))
    # END SOLUTION


def padded(x, padding, pad_value=0.0):
    """x (N, C, H, W) -> (N, C, H + 2ph, W + 2pw), the border filled with ``pad_value`` (x if no padding)."""
    if not any(padding):
        return x
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * padding[0], w + 2 * padding[1]), pad_value, dtype=x.dtype)
    out[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w] = x
    return out


def im2col(x, kernel, stride, padding, dilation, pad_value=0.0):
    """x (N, C, H, W) -> cols (N, C, kh, kw, Ho, Wo), a new array; ``pad_value`` fills the border.

    cols[:, :, i, j] = x_padded[:, :, i*dh : ... : sh, j*dw : ... : sw], one strided slice per kernel tap.
    """
    xp = get_array_module(x)
    grid = output_grid(x.shape[2:], kernel, stride, padding, dilation)
    source = padded(x, padding, pad_value)
    # BEGIN SOLUTION
    cols = xp.empty(tuple(x.shape[:2]) + tuple(kernel) + grid, dtype=x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            rows, columns = tap_slices((i, j), stride, dilation, grid)
            cols[:, :, i, j] = source[:, :, rows, columns]
    return cols
    # END SOLUTION


def col2im(cols, input_shape, stride, padding, dilation):
    """cols (N, C, kh, kw, Ho, Wo) -> x (N, C, H, W): each column added back onto its window.

    The adjoint of ``im2col``: pixels covered by several windows get the sum of their columns, columns in the
    padding are dropped (x is a view of the padded sums, without the border).
    """
    xp = get_array_module(cols)
    n, c, kh, kw, ho, wo = cols.shape
    h, w = input_shape[2:]
    # BEGIN SOLUTION
    target = xp.zeros((n, c, h + 2 * padding[0], w + 2 * padding[1]), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = tap_slices((i, j), stride, dilation, (ho, wo))
            target[:, :, rows, columns] += cols[:, :, i, j]
    return target[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w]
    # END SOLUTION
