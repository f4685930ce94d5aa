"""MaxPool2d and MaxUnpool2d: finite differences, PyTorch parity (exact indices), ties, bad input."""
import numpy
import pytest
from helpers import assert_close, tie_free

import minidl
from minidl.engines import op
from minidl.fast.pooling import route_through_windows, scatter_to_planes
from minidl.gradcheck import TOLERANCE, check_module

# (kernel, stride, padding, dilation, input shape): kernel 2/3, stride 1/2/3/None, padding 0/1, odd sizes
POOL_CASES = [
    (2, None, 0, 1, (2, 2, 6, 8)),
    (2, 2, 1, 1, (1, 2, 5, 7)),
    (3, 1, 0, 1, (1, 2, 5, 6)),
    (3, 2, 1, 1, (2, 1, 7, 5)),
    (3, 3, 1, 1, (1, 2, 7, 8)),
    (3, None, 0, 1, (1, 1, 7, 9)),
    ((2, 3), (1, 2), (1, 0), 1, (1, 2, 5, 7)),
    (2, 1, 1, 2, (1, 2, 6, 5)),
    (1, 2, 0, 1, (1, 2, 5, 6)),
]


# ceil_mode: the last partial window is kept (first four) or dropped because it would start in the padding (last)
CEIL_CASES = [
    (2, 2, 0, 1, (1, 2, 7, 9)),
    (3, 2, 1, 1, (1, 2, 8, 6)),
    (3, 3, 0, 1, (2, 1, 7, 8)),
    (3, 2, 0, 2, (1, 1, 9, 8)),
    (2, 3, 1, 1, (1, 1, 6, 7)),
]


def max_pool2d_forward(*arguments):
    """The engine's max-pool forward."""
    return op("pooling", "max_pool2d_forward")(*arguments)


def _torch_pool(torch, x, kernel, stride, padding, dilation, dy, ceil_mode=False):
    """PyTorch's output, indices and input gradient for the same pooling."""
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.max_pool2d(xt, kernel, stride, padding, dilation=dilation, ceil_mode=ceil_mode,
                                            return_indices=True)
    yt.backward(torch.tensor(dy))
    return yt.detach().numpy(), it.numpy(), xt.grad.numpy()


@pytest.mark.parametrize("kernel, stride, padding, dilation, shape", POOL_CASES)
def test_max_pool_gradcheck(kernel, stride, padding, dilation, shape, rng):
    pool = minidl.nn.MaxPool2d(kernel, stride, padding, dilation=dilation)
    errors = check_module(pool, tie_free(shape, rng))
    assert errors["input"] < TOLERANCE, errors


@pytest.mark.parametrize("dtype, rtol", [(numpy.float64, 1e-12), (numpy.float32, 1e-6)])
@pytest.mark.parametrize("kernel, stride, padding, dilation, shape", POOL_CASES)
def test_max_pool_matches_torch(torch, kernel, stride, padding, dilation, shape, dtype, rtol, rng):
    x = tie_free(shape, rng, dtype)
    pool = minidl.nn.MaxPool2d(kernel, stride, padding, return_indices=True, dilation=dilation)
    y, indices = pool(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = pool.backward(dy)
    y_torch, indices_torch, dx_torch = _torch_pool(torch, x, kernel, stride, padding, dilation, dy)
    assert indices.dtype == numpy.int64 and y.dtype == dtype and dx.dtype == dtype
    assert indices.flags.c_contiguous and indices.flags.writeable
    assert (indices == indices_torch).all()
    assert (y == y_torch).all()
    assert_close(dx, dx_torch, rtol=rtol, atol=rtol, name="dx")


@pytest.mark.parametrize("kernel, stride, padding, dilation, shape", CEIL_CASES)
def test_ceil_mode_matches_torch_and_gradcheck(torch, kernel, stride, padding, dilation, shape, rng):
    x = tie_free(shape, rng)
    pool = minidl.nn.MaxPool2d(kernel, stride, padding, return_indices=True, dilation=dilation, ceil_mode=True)
    y, indices = pool(x)
    dy = rng.standard_normal(y.shape)
    dx = pool.backward(dy)
    y_torch, indices_torch, dx_torch = _torch_pool(torch, x, kernel, stride, padding, dilation, dy, True)
    assert (indices == indices_torch).all()
    assert (y == y_torch).all()
    assert_close(dx, dx_torch, rtol=1e-12, atol=1e-12, name="dx")
    errors = check_module(minidl.nn.MaxPool2d(kernel, stride, padding, dilation=dilation, ceil_mode=True), x)
    assert errors["input"] < TOLERANCE, errors


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (2, 1, 0)])
def test_ties_go_to_first_maximum_in_scan_order(torch, kernel, stride, padding, rng):
    x = rng.integers(0, 3, size=(2, 3, 7, 8)).astype(numpy.float64)
    (y, indices), _ = max_pool2d_forward(x, (kernel,) * 2, (stride,) * 2, (padding,) * 2)
    dy = rng.standard_normal(y.shape)
    y_torch, indices_torch, _ = _torch_pool(torch, x, kernel, stride, padding, 1, dy)
    assert (indices == indices_torch).all()
    assert (y == y_torch).all()


def test_first_of_equal_maxima_wins():
    x = numpy.array([[[[1.0, 5.0], [5.0, 5.0]]]])
    (_, indices), _ = max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    assert indices.item() == 1


def test_first_and_last_true_along_the_window_axis():
    from minidl.functional.pooling import first_true, last_true
    # columns p: no True, True at k=1, True at k=1 and k=3, True everywhere
    mask = numpy.array([[0, 0, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 1, 1]], dtype=bool)[None, None]
    assert first_true(mask).tolist() == [[[3, 1, 1, 0]]]
    assert last_true(mask).tolist() == [[[-1, 1, 3, 3]]]


def test_nan_and_minus_inf_windows_match_torch(torch):
    x = numpy.arange(36, dtype=numpy.float64).reshape(1, 1, 6, 6)
    x[0, 0, 0, :3] = -numpy.inf
    x[0, 0, 1, :3] = -numpy.inf
    x[0, 0, 3, 3] = numpy.nan
    x[0, 0, 4, 4] = numpy.nan
    (y, indices), _ = max_pool2d_forward(x, (3, 3), (2, 2), (1, 1))
    y_torch, indices_torch, _ = _torch_pool(torch, x, 3, 2, 1, 1, numpy.ones(y.shape))
    assert (indices == indices_torch).all()
    numpy.testing.assert_array_equal(y, y_torch)


@pytest.mark.engines("fast")
@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 3, 1), (2, 3, 1)])
def test_scatter_backward_equals_col2im_backward(kernel, stride, padding, rng):
    x = tie_free((2, 3, 9, 8), rng)
    geometry = ((kernel,) * 2, (stride,) * 2, (padding,) * 2)
    (y, indices), cache = max_pool2d_forward(x, *geometry)
    dy = rng.standard_normal(y.shape)
    scattered = scatter_to_planes(dy, indices, x.shape[2:])
    numpy.testing.assert_array_equal(scattered, route_through_windows(dy, cache))
    assert numpy.count_nonzero(scattered) == y.size


@pytest.mark.parametrize("shape, output_size", [((2, 3, 6, 8), None), ((2, 3, 7, 9), (7, 9)),
                                                ((1, 2, 7, 9), (1, 2, 7, 9)), ((1, 2, 6, 8), (6, 8))])
def test_max_unpool_gradcheck(shape, output_size, rng):
    x = tie_free(shape, rng)
    y, indices = minidl.nn.MaxPool2d(2, return_indices=True)(x)
    unpool = minidl.nn.MaxUnpool2d(2)
    errors = check_module(unpool, (rng.standard_normal(y.shape), indices, output_size))
    assert errors["input"] < TOLERANCE, errors


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("kernel, stride, padding, shape, output_size", [
    (2, None, 0, (2, 3, 8, 8), None),
    (2, 2, 0, (2, 3, 7, 9), (7, 9)),
    (3, 2, 1, (1, 2, 9, 7), (2, 3, 9, 7)),
    (3, 3, 0, (1, 2, 9, 9), None),
])
def test_max_unpool_matches_torch(torch, kernel, stride, padding, shape, output_size, dtype, rng):
    x = tie_free(shape, rng, dtype)
    pooled, indices = minidl.nn.MaxPool2d(kernel, stride, padding, return_indices=True)(x)
    unpool = minidl.nn.MaxUnpool2d(kernel, stride, padding)
    y = unpool(pooled, indices, output_size)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = unpool.backward(dy)
    pooled_torch = torch.tensor(pooled, requires_grad=True)
    y_torch = torch.nn.functional.max_unpool2d(pooled_torch, torch.tensor(indices), kernel, stride, padding,
                                               output_size=output_size)
    y_torch.backward(torch.tensor(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    numpy.testing.assert_array_equal(y, y_torch.detach().numpy())
    numpy.testing.assert_array_equal(dx, pooled_torch.grad.numpy())


def test_pool_then_unpool_keeps_only_the_maxima(rng):
    x = tie_free((2, 2, 7, 5), rng)
    pooled, indices = minidl.nn.MaxPool2d(2, return_indices=True)(x)
    restored = minidl.nn.MaxUnpool2d(2)(pooled, indices, output_size=x.shape)
    kept = restored != 0
    assert kept.sum() == pooled.size
    numpy.testing.assert_array_equal(restored[kept], x[kept])
    numpy.testing.assert_array_equal(numpy.sort(restored[kept]), numpy.sort(pooled.reshape(-1)))


def test_no_grad_keeps_nothing(rng):
    pool = minidl.nn.MaxPool2d(2)
    with minidl.no_grad():
        pool(tie_free((1, 1, 4, 4), rng))
    with pytest.raises(RuntimeError, match="no forward pass"):
        pool.backward(numpy.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("make_layer, x, error, message", [
    (lambda: minidl.nn.MaxPool2d(2), numpy.zeros((3, 8, 8)), ValueError, r"4-D.*\(3, 8, 8\)"),
    (lambda: minidl.nn.MaxPool2d(2), numpy.zeros((1, 1, 4, 4), numpy.int32), TypeError, "floating"),
    (lambda: minidl.nn.MaxPool2d(3), numpy.zeros((1, 1, 2, 5)), ValueError,
     r"\(1, 1, 2, 5\) is smaller than the window"),
    (lambda: minidl.nn.MaxPool2d(3, padding=1, dilation=3), numpy.zeros((1, 1, 4, 4)), ValueError, "smaller"),
    # rows -1 and 1 of a one-row input: the window lies wholly in the padding
    (lambda: minidl.nn.MaxPool2d((2, 1), 1, (1, 0), dilation=(2, 1)), numpy.zeros((1, 1, 1, 2)), ValueError,
     r"window 0 reads no input row of input shape \(1, 1, 1, 2\) \(its rows -1, 1"),
    (lambda: minidl.nn.MaxPool2d((1, 2), 1, (0, 1), dilation=(1, 2)), numpy.zeros((1, 1, 2, 1)), ValueError,
     "window 0 reads no input column"),
])
def test_max_pool_rejects_bad_input(make_layer, x, error, message):
    with pytest.raises(error, match=message):
        make_layer()(x)


def test_max_pool_rejects_bad_construction():
    with pytest.raises(ValueError, match="at most half"):
        minidl.nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="positive"):
        minidl.nn.MaxPool2d(0)
    with pytest.raises(TypeError, match="dilation by keyword"):
        minidl.nn.MaxPool2d(3, 2, 1, 2)


def test_max_unpool_rejects_bad_indices_and_sizes(rng):
    x = rng.standard_normal((1, 2, 3, 3))
    _, indices = minidl.nn.MaxPool2d(2, return_indices=True)(rng.standard_normal((1, 2, 7, 7)))
    unpool = minidl.nn.MaxUnpool2d(2)
    with pytest.raises(ValueError, match=rf"index {indices.max()} does not fit .* 6x6"):
        unpool(x, indices)
    negative = indices.copy()
    negative[0, 1, 2, 0] = -1
    with pytest.raises(ValueError, match=r"index -1"):
        unpool(x, negative, (7, 7))
    with pytest.raises(TypeError, match="integer"):
        unpool(x, indices.astype(numpy.float64), (7, 7))
    with pytest.raises(ValueError, match=r"\(1, 2, 2, 2\) do not match input of shape \(1, 2, 3, 3\)"):
        unpool(x, indices[:, :, :2, :2], (7, 7))
    with pytest.raises(ValueError, match="strictly between 4 and 8"):
        unpool(x, indices, (8, 7))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(N, C, H, W\)"):
        unpool(x, indices, (1, 7, 7))
    with pytest.raises(ValueError, match=r"4-D"):
        unpool(x[0], indices[0])
    with pytest.raises(TypeError, match="floating"):
        unpool(x.astype(numpy.int64), indices)


def test_empty_batch_passes_through_pool_and_unpool():
    pool, unpool = minidl.nn.MaxPool2d(2, return_indices=True), minidl.nn.MaxUnpool2d(2)
    y, indices = pool(numpy.zeros((0, 2, 6, 6), numpy.float32))
    assert y.shape == indices.shape == (0, 2, 3, 3) and indices.dtype == numpy.int64
    z = unpool(y, indices, output_size=(6, 6))
    assert z.shape == (0, 2, 6, 6) and z.dtype == numpy.float32
    assert unpool.backward(z).shape == (0, 2, 3, 3)
    assert pool.backward(y).shape == (0, 2, 6, 6)
