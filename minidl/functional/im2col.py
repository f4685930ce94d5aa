"""im2col and col2im: the one sliding-window helper of minidl.

``im2col`` copies every (kh, kw) window of a padded input into a column
buffer, so a convolution becomes one matrix product and a max-pool one
``argmax``. ``col2im`` is its adjoint: it adds every column back onto the
window it came from, summing where windows overlap. On the CPU each is a
loop over the kh*kw kernel offsets, one strided-slice copy (or ``+=``) per
offset; device arrays go to the CUDA kernels in ``minidl.kernels``.

Shapes, for input (N, C, H, W), kernel (kh, kw) and output grid (Ho, Wo):
    cols: (N, C, kh, kw, Ho, Wo)
Window (ho, wo) at offset (i, j) reads padded pixel (ho*sh + i*dh, wo*sw + j*dw).
"""

from ..backend import is_gpu_array
from .windows import window_output_size
from .workspace import workspace


def _gpu_kernels():
    from .. import kernels
    return kernels


def output_grid(input_hw, kernel, stride, padding, dilation):
    """(Ho, Wo) of the windows that fit in the padded input."""
    return tuple(window_output_size(input_hw[axis], kernel[axis], stride[axis], padding[axis], dilation[axis])
                 for axis in range(2))


def im2col(x, kernel, stride, padding, dilation, pad_value=0.0, grid=None, out=None):
    """(N, C, H, W) -> cols (N, C, kh, kw, Ho, Wo).

    ``pad_value`` fills the border (0 for convolution, -inf for max-pooling).
    ``grid`` = (Ho, Wo) keeps only the first Ho x Wo windows (default: all that fit).
    ``out``, if given, is a preallocated cols buffer to fill; otherwise cols is a
    view of the shared workspace, valid until the next ``im2col`` call (copy it to
    keep it). The dtype is kept.
    """
    if grid is None:
        grid = output_grid(x.shape[2:], kernel, stride, padding, dilation)
    if is_gpu_array(x):
        return _gpu_kernels().im2col(x, kernel, stride, padding, dilation, pad_value, grid, out)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, grid
    if ph or pw:
        padded = workspace.take("im2col.padded", (n, c, h + 2 * ph, w + 2 * pw), x.dtype, x)
        _fill_border(padded, (ph, pw), pad_value)
        padded[:, :, ph:ph + h, pw:pw + w] = x
    else:
        padded = x
    cols = workspace.take("im2col.cols", (n, c, kh, kw, ho, wo), x.dtype, x) if out is None else out
    for i in range(kh):
        top = i * dh
        for j in range(kw):
            left = j * dw
            cols[:, :, i, j] = padded[:, :, top:top + sh * (ho - 1) + 1:sh, left:left + sw * (wo - 1) + 1:sw]
    return cols


def col2im(cols, input_shape, stride, padding, dilation):
    """cols (N, C, kh, kw, Ho, Wo) -> (N, C, H, W): each column added back onto its window.

    The adjoint of ``im2col`` (with zero padding): pixels covered by several
    windows receive the sum of their columns; padding is cropped away. The
    result is a new array.
    """
    if is_gpu_array(cols):
        return _gpu_kernels().col2im(cols, input_shape, stride, padding, dilation)
    n, c, kh, kw, ho, wo = cols.shape
    _, _, h, w = input_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    padded = workspace.take("col2im.padded", (n, c, h + 2 * ph, w + 2 * pw), cols.dtype, cols)
    padded.fill(0)
    for i in range(kh):
        top = i * dh
        for j in range(kw):
            left = j * dw
            padded[:, :, top:top + sh * (ho - 1) + 1:sh, left:left + sw * (wo - 1) + 1:sw] += cols[:, :, i, j]
    return padded[:, :, ph:ph + h, pw:pw + w].copy()


def _fill_border(padded, padding, value):
    """Set the ``padding``-wide frame of (N, C, Hp, Wp) ``padded`` to ``value``, leaving the inside alone."""
    ph, pw = padding
    if ph:
        padded[:, :, :ph] = value
        padded[:, :, -ph:] = value
    if pw:
        padded[:, :, :, :pw] = value
        padded[:, :, :, -pw:] = value
