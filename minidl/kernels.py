"""CUDA kernels for the sliding-window work on device arrays (CuPy ``RawModule``).

What NumPy does with strided slices on the host runs here as one CUDA thread
per output element, and every backward is a gather (one thread per input
element sums what reaches it), so no kernel needs atomics and results are
deterministic. GEMMs stay in ``cupy.matmul`` (cuBLAS).

The CUDA source is written once over ``T`` (float or double) and ``I`` (the
index type: int, or long long for arrays of 2**31 elements or more); each
(T, I) pair is compiled on first use and memoised, geometry is passed as
arguments, so no call ever recompiles. Shapes follow ``minidl.fast.im2col``:
    cols    (N, C, kh, kw, Ho, Wo), window (ho, wo) at offset (i, j) reading
            padded pixel (ho*sh + i*dh, wo*sw + j*dw)
    indices int64, shaped like the pooled output, each ``h * W + w`` inside
            its own (n, c) plane of the unpadded input (as PyTorch).
"""
import functools

import numpy

from .backend import cupy_or_none, get_array_module, is_gpu_array
from .functional.windows import window_output_size

THREADS_PER_BLOCK = 256
INT32_LIMIT = 2 ** 31  # arrays at least this large get 64-bit index arithmetic

SOURCE = r"""
// cols[n, c, i, j, ho, wo] = x[n, c, ho*sh + i*dh - ph, wo*sw + j*dw - pw], pad_value outside x
extern "C" __global__ void im2col(const T* x, T* cols, I total, I height, I width, I kernel_h, I kernel_w,
                                  I out_h, I out_w, I stride_h, I stride_w, I pad_h, I pad_w,
                                  I dilation_h, I dilation_w, T pad_value)
{
    I index = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= total) return;
    I wo = index % out_w;  I rest = index / out_w;
    I ho = rest % out_h;   rest /= out_h;
    I j = rest % kernel_w; rest /= kernel_w;
    I i = rest % kernel_h; I plane = rest / kernel_h;
    I h = ho * stride_h + i * dilation_h - pad_h;
    I w = wo * stride_w + j * dilation_w - pad_w;
    bool inside = h >= 0 && h < height && w >= 0 && w < width;
    cols[index] = inside ? x[(plane * height + h) * width + w] : pad_value;
}

// Which window reads coordinate x (of an axis padded by pad) at kernel tap t: the q with
// x + pad = q*stride + t*dilation. Returns 1 and sets *q; 0 if no window of the count does;
// -1 if none does at this tap or any later one (the gathers below stop there).
__device__ inline int window_reading(I x, I pad, I tap, I dilation, I stride, I count, I* q)
{
    I start = x + pad - tap * dilation;
    if (start < 0) return -1;
    if (start % stride != 0 || start / stride >= count) return 0;
    *q = start / stride;
    return 1;
}

// x[n, c, h, w] (+)= sum of cols[n, c, i, j, ho, wo] over h + ph = ho*sh + i*dh, w + pw = wo*sw + j*dw
extern "C" __global__ void col2im(const T* cols, T* x, I total, I height, I width, I kernel_h, I kernel_w,
                                  I out_h, I out_w, I stride_h, I stride_w, I pad_h, I pad_w,
                                  I dilation_h, I dilation_w, I accumulate)
{
    I index = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= total) return;
    I w = index % width;  I rest = index / width;
    I h = rest % height;  I plane = rest / height;
    const T* plane_cols = cols + plane * kernel_h * kernel_w * out_h * out_w;
    T sum = 0;
    for (I i = 0; i < kernel_h; ++i) {
        I ho;
        int row = window_reading(h, pad_h, i, dilation_h, stride_h, out_h, &ho);
        if (row < 0) break;
        if (row == 0) continue;
        for (I j = 0; j < kernel_w; ++j) {
            I wo;
            int column = window_reading(w, pad_w, j, dilation_w, stride_w, out_w, &wo);
            if (column < 0) break;
            if (column == 0) continue;
            sum += plane_cols[((i * kernel_w + j) * out_h + ho) * out_w + wo];
        }
    }
    x[index] = accumulate ? x[index] + sum : sum;
}

// y[n, c, ho, wo] = max of the window's cells inside x, indices = h * W + w of the (first) maximum
extern "C" __global__ void max_pool_forward(const T* x, T* y, long long* indices, I total, I height, I width,
                                            I out_h, I out_w, I kernel_h, I kernel_w, I stride_h, I stride_w,
                                            I pad_h, I pad_w, I dilation_h, I dilation_w)
{
    I index = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= total) return;
    I wo = index % out_w;  I rest = index / out_w;
    I ho = rest % out_h;   I plane = rest / out_h;
    const T* plane_x = x + plane * height * width;
    I best_index = -1;
    T best = (T)__int_as_float(0xff800000);  // -inf
    for (I i = 0; i < kernel_h; ++i) {
        I h = ho * stride_h - pad_h + i * dilation_h;
        if (h < 0 || h >= height) continue;
        for (I j = 0; j < kernel_w; ++j) {
            I w = wo * stride_w - pad_w + j * dilation_w;
            if (w < 0 || w >= width) continue;
            T value = plane_x[h * width + w];
            if (best_index < 0 || value > best || isnan(value)) {
                best = value;
                best_index = h * width + w;
            }
        }
    }
    y[index] = best;
    indices[index] = best_index < 0 ? 0 : (long long)best_index;
}

// dx[n, c, h, w] = sum of dy[n, c, ho, wo] over the windows covering (h, w) whose index is h * W + w
extern "C" __global__ void max_pool_backward(const T* dy, const long long* indices, T* dx, I total, I height,
                                             I width, I out_h, I out_w, I kernel_h, I kernel_w,
                                             I stride_h, I stride_w, I pad_h, I pad_w,
                                             I dilation_h, I dilation_w)
{
    I index = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= total) return;
    I w = index % width;  I rest = index / width;
    I h = rest % height;  I plane = rest / height;
    long long position = (long long)h * width + w;
    I offset = plane * out_h * out_w;
    T sum = 0;
    for (I i = 0; i < kernel_h; ++i) {
        I ho;
        int row = window_reading(h, pad_h, i, dilation_h, stride_h, out_h, &ho);
        if (row < 0) break;
        if (row == 0) continue;
        for (I j = 0; j < kernel_w; ++j) {
            I wo;
            int column = window_reading(w, pad_w, j, dilation_w, stride_w, out_w, &wo);
            if (column < 0) break;
            if (column == 0) continue;
            I window = offset + ho * out_w + wo;
            if (indices[window] == position) sum += dy[window];
        }
    }
    dx[index] = sum;
}

// owner[n, c].flat[indices[n, c, p]] = the largest p aiming there (owner filled with -1 beforehand)
extern "C" __global__ void max_unpool_claim(const long long* indices, int* owner, I total, I in_plane_size,
                                            I out_plane_size)
{
    I index = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= total) return;
    long long target = indices[index];
    if (target >= 0 && target < out_plane_size)
        atomicMax(owner + (index / in_plane_size) * out_plane_size + target, (int)(index % in_plane_size));
}

// y[n, c].flat[indices[n, c, p]] = x[n, c, p] where p owns that cell (y zeroed beforehand): the last
// position in scan order wins a repeated index, as on the host, whatever order the threads run in
extern "C" __global__ void max_unpool_forward(const T* x, const long long* indices, const int* owner, T* y,
                                              I total, I in_plane_size, I out_plane_size)
{
    I index = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= total) return;
    long long target = indices[index];
    if (target < 0 || target >= out_plane_size) return;
    I cell = (index / in_plane_size) * out_plane_size + target;
    if (owner[cell] == (int)(index % in_plane_size)) y[cell] = x[index];
}

// dx[n, c, p] = dy[n, c].flat[indices[n, c, p]]
extern "C" __global__ void max_unpool_backward(const T* dy, const long long* indices, T* dx, I total,
                                               I in_plane_size, I out_plane_size)
{
    I index = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= total) return;
    long long target = indices[index];
    bool inside = target >= 0 && target < out_plane_size;
    dx[index] = inside ? dy[(index / in_plane_size) * out_plane_size + target] : (T)0;
}

// One Adam step per element, the host's formula (minidl.optim.adam.adam_update) in the same order:
// g += wd p; m += (1 - b1)(g - m); v = b2 v + (1 - b2) g g; v_max = max(v_max, v) with AMSGrad;
// p -= step_size * m / (sqrt(v or v_max) / bias_correction2_sqrt + eps)
extern "C" __global__ void adam_update(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
                                       I total, I amsgrad, T step_size, T one_minus_beta1, T beta2,
                                       T one_minus_beta2, T eps, T weight_decay, T bias_correction2_sqrt)
{
    I index = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= total) return;
    T g = grad[index];
    if (weight_decay != (T)0) g = g + weight_decay * param[index];
    T m = exp_avg[index];
    m = m + one_minus_beta1 * (g - m);
    T v = exp_avg_sq[index] * beta2;
    v = v + one_minus_beta2 * g * g;
    exp_avg[index] = m;
    exp_avg_sq[index] = v;
    if (amsgrad) {
        v = max_exp_avg_sq[index] > v ? max_exp_avg_sq[index] : v;
        max_exp_avg_sq[index] = v;
    }
    param[index] = param[index] - step_size * (m / (sqrt(v) / bias_correction2_sqrt + eps));
}
"""

VALUE_TYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}
INDEX_TYPES = {numpy.dtype(numpy.int32): "int", numpy.dtype(numpy.int64): "long long"}


def source_for(value_type, index_type):
    """The CUDA source specialised to C types, e.g. ``source_for("float", "int")``."""
    return f"typedef {value_type} T;\ntypedef {index_type} I;\n" + SOURCE


@functools.lru_cache(maxsize=None)
def compiled_module(dtype, index_dtype):
    """The ``cupy.RawModule`` for one (value dtype, index dtype) pair, compiled once per process."""
    code = source_for(VALUE_TYPES[numpy.dtype(dtype)], INDEX_TYPES[numpy.dtype(index_dtype)])
    return cupy_or_none().RawModule(code=code)


@functools.lru_cache(maxsize=None)
def compiled_function(name, dtype, index_dtype):
    """Kernel ``name`` of the (value dtype, index dtype) module, looked up once per process."""
    return compiled_module(dtype, index_dtype).get_function(name)


def _check_array(function, array):
    """The array's dtype, after checking that it is a float32 or float64 device array."""
    if not is_gpu_array(array):
        raise TypeError(f"minidl.kernels.{function}: expected a cupy.ndarray, got {type(array).__name__}")
    dtype = numpy.dtype(array.dtype)
    if dtype not in VALUE_TYPES:
        raise TypeError(f"minidl.kernels.{function}: expected a float32 or float64 array, got dtype {dtype} "
                        f"for shape {tuple(array.shape)}")
    return dtype


def _launch(name, dtype, sizes, total, arrays, integers, extra=()):
    """Run kernel ``name`` with one thread per element of ``total``.

    Integers go in as the index type, chosen from the largest array involved
    (``sizes``) so that 32-bit arithmetic is used whenever it cannot overflow.
    """
    if total == 0:
        return
    index_dtype = numpy.int32 if max(sizes) < INT32_LIMIT else numpy.int64
    kernel = compiled_function(name, numpy.dtype(dtype), numpy.dtype(index_dtype))
    blocks = (total + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    arguments = tuple(arrays) + tuple(index_dtype(v) for v in (total,) + tuple(integers)) + tuple(extra)
    kernel((blocks,), (THREADS_PER_BLOCK,), arguments)


def im2col(x, kernel, stride, padding, dilation, pad_value=0.0, grid=None, out=None):
    """x (N, C, H, W) -> cols (N, C, kh, kw, Ho, Wo); the device twin of ``fast.im2col.im2col``.

    ``pad_value`` fills the border, ``grid`` = (Ho, Wo) (default: every window
    that fits), ``out`` an optional cols buffer to fill. One thread per cols element.
    """
    dtype = _check_array("im2col", x)
    xp = get_array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    if grid is None:
        grid = (window_output_size(h, kh, sh, ph, dh), window_output_size(w, kw, sw, pw, dw))
    ho, wo = grid
    shape = (n, c, kh, kw, ho, wo)
    if out is not None and (tuple(out.shape) != shape or out.dtype != dtype):
        raise ValueError(f"minidl.kernels.im2col: out has shape {tuple(out.shape)} and dtype {out.dtype}, "
                         f"expected {shape} and {dtype}")
    direct = out is not None and out.flags.c_contiguous
    cols = out if direct else xp.empty(shape, dtype=dtype)
    x = xp.ascontiguousarray(x)
    _launch("im2col", dtype, (x.size, cols.size), cols.size, (x, cols),
            (h, w, kh, kw, ho, wo, sh, sw, ph, pw, dh, dw), (dtype.type(pad_value),))
    if out is not None and not direct:
        out[...] = cols
        return out
    return cols


def col2im(cols, input_shape, stride, padding, dilation, out=None):
    """cols (N, C, kh, kw, Ho, Wo) -> (N, C, H, W), the adjoint of ``im2col`` (zero padding).

    A gather: one thread per input pixel adds the columns of every window
    offset (i, j) that covers it, in the order of the host loop. With ``out``
    (a C-contiguous array of the input's shape and dtype), the sums are added
    to it in place and it is returned; otherwise they fill a new array.
    """
    dtype = _check_array("col2im", cols)
    xp = get_array_module(cols)
    n, c, kh, kw, ho, wo = cols.shape
    h, w = int(input_shape[2]), int(input_shape[3])
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    if out is not None and (tuple(out.shape) != (n, c, h, w) or out.dtype != dtype or not out.flags.c_contiguous):
        raise ValueError(f"minidl.kernels.col2im: out has shape {tuple(out.shape)} and dtype {out.dtype}, expected "
                         f"a C-contiguous {(n, c, h, w)} array of {dtype}")
    cols = xp.ascontiguousarray(cols)
    x = xp.empty((n, c, h, w), dtype=dtype) if out is None else out
    _launch("col2im", dtype, (x.size, cols.size), x.size, (cols, x),
            (h, w, kh, kw, ho, wo, sh, sw, ph, pw, dh, dw, int(out is not None)))
    return x


def max_pool_forward(x, kernel, stride, padding, dilation, grid):
    """x (N, C, H, W) -> y (N, C, Ho, Wo), indices int64 (N, C, Ho, Wo), as PyTorch.

    One thread per output scans its window's cells inside the input (the
    border counts as -inf) in row order: the first maximum wins, a NaN wins
    over numbers and the last NaN over earlier ones, and a window of -inf
    points at its first cell inside the input. The index is ``h * W + w``.
    """
    dtype = _check_array("max_pool_forward", x)
    xp = get_array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, grid
    x = xp.ascontiguousarray(x)
    y = xp.empty((n, c, ho, wo), dtype=dtype)
    indices = xp.empty((n, c, ho, wo), dtype=numpy.int64)
    _launch("max_pool_forward", dtype, (x.size, y.size), y.size, (x, y, indices),
            (h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw))
    return y, indices


def max_pool_backward(dy, indices, input_shape, kernel, stride, padding, dilation):
    """dy (N, C, Ho, Wo), indices (N, C, Ho, Wo) -> dx (N, C, H, W).

    A gather: one thread per input pixel sums dy over the windows that cover
    it and whose stored index is that pixel (in the order of the host col2im).
    """
    dtype = _check_array("max_pool_backward", dy)
    xp = get_array_module(dy)
    n, c, h, w = (int(s) for s in input_shape)
    _, _, ho, wo = dy.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    dy = xp.ascontiguousarray(dy)
    indices = xp.ascontiguousarray(indices, dtype=numpy.int64)
    dx = xp.empty((n, c, h, w), dtype=dtype)
    _launch("max_pool_backward", dtype, (dx.size, dy.size), dx.size, (dy, indices, dx),
            (h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw))
    return dx


def max_unpool_forward(x, indices, output_hw):
    """x (N, C, H, W), indices (N, C, H, W) -> y (N, C, Hout, Wout): zeros, x scattered to its indices.

    Two passes, so a repeated index within a plane keeps the value of its last
    position in scan order (as the host's sequential assignment) whatever order
    the threads run in: each input element claims its target cell with an
    atomic maximum of its position, then the owner of each cell writes it.
    Indices outside the output plane are skipped (validate them before calling).
    """
    dtype = _check_array("max_unpool_forward", x)
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out_h, out_w = (int(s) for s in output_hw)
    if h * w >= INT32_LIMIT:
        raise ValueError(f"minidl.kernels.max_unpool_forward: planes of {h}x{w} inputs are too large (positions "
                         f"must fit in 32 bits)")
    x = xp.ascontiguousarray(x)
    indices = xp.ascontiguousarray(indices, dtype=numpy.int64)
    y = xp.zeros((n, c, out_h, out_w), dtype=dtype)
    owner = xp.full(y.shape, -1, dtype=numpy.int32)
    sizes, planes = (x.size, y.size), (h * w, out_h * out_w)
    _launch("max_unpool_claim", dtype, sizes, x.size, (indices, owner), planes)
    _launch("max_unpool_forward", dtype, sizes, x.size, (x, indices, owner, y), planes)
    return y


def max_unpool_backward(dy, indices):
    """dy (N, C, Hout, Wout), indices (N, C, H, W) -> dx (N, C, H, W): ``dx[n, c, h, w] = dy[n, c].flat[index]``.

    A gather, one thread per input element (0 for an index outside the plane).
    """
    dtype = _check_array("max_unpool_backward", dy)
    xp = get_array_module(dy)
    n, c, out_h, out_w = dy.shape
    _, _, h, w = indices.shape
    dy = xp.ascontiguousarray(dy)
    indices = xp.ascontiguousarray(indices, dtype=numpy.int64)
    dx = xp.empty(indices.shape, dtype=dtype)
    _launch("max_unpool_backward", dtype, (dx.size, dy.size), dx.size, (dy, indices, dx),
            (h * w, out_h * out_w))
    return dx


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step_size, beta1, beta2, eps, weight_decay,
                bias_correction2_sqrt):
    """One fused Adam step over device arrays of one shape, in place: the arithmetic of
    ``minidl.optim.adam.adam_update`` (step_size = lr / (1 - beta1^t)) in one launch instead of about ten.
    ``max_exp_avg_sq`` is None without AMSGrad."""
    dtype = _check_array("adam_update", param)
    arrays = (param, grad, exp_avg, exp_avg_sq, exp_avg_sq if max_exp_avg_sq is None else max_exp_avg_sq)
    for array in arrays:
        if not (is_gpu_array(array) and array.dtype == dtype and array.shape == param.shape
                and array.flags.c_contiguous):
            raise ValueError(f"minidl.kernels.adam_update: expected C-contiguous {dtype} device arrays of shape "
                             f"{tuple(param.shape)}, got {type(array).__name__} {getattr(array, 'shape', None)}")
    scalars = tuple(dtype.type(v) for v in (step_size, 1 - beta1, beta2, 1 - beta2, eps, weight_decay,
                                            bias_correction2_sqrt))
    _launch("adam_update", dtype, (param.size,), param.size, arrays, (int(max_exp_avg_sq is not None),), scalars)
    return param
