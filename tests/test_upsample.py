"""Upsample: finite differences, PyTorch parity for both modes, the integer-scale path, bad input."""
import numpy
import pytest
from helpers import assert_close

import minidl
from minidl.fast.upsample import interpolation_operator, resize_planes, upsample_nearest2d_forward
from minidl.gradcheck import TOLERANCE, check_module

# (size, scale_factor, input shape): scales 2 and 3, odd and non-integer targets such as 5x6 -> 11x13
RESIZES = [
    (None, 2, (2, 2, 3, 4)),
    (None, 3, (1, 2, 3, 2)),
    (None, (1.5, 2.5), (1, 2, 4, 3)),
    ((11, 13), None, (1, 2, 5, 6)),
    ((7, 4), None, (1, 1, 3, 5)),
    (9, None, (2, 1, 4, 4)),
]
MODES = [("nearest", None), ("bilinear", True), ("bilinear", False)]


@pytest.mark.parametrize("mode, align_corners", MODES)
@pytest.mark.parametrize("size, scale_factor, shape", RESIZES)
def test_gradcheck(mode, align_corners, size, scale_factor, shape, rng):
    layer = minidl.nn.Upsample(size, scale_factor, mode, align_corners)
    errors = check_module(layer, rng.standard_normal(shape))
    assert errors["input"] < TOLERANCE, errors


@pytest.mark.parametrize("dtype, rtol", [(numpy.float64, 1e-12), (numpy.float32, 2e-6)])
@pytest.mark.parametrize("mode, align_corners", MODES)
@pytest.mark.parametrize("size, scale_factor, shape", RESIZES + [(None, 1 / 3, (1, 2, 9, 7)), ((3, 10), None,
                                                                                           (1, 1, 5, 4))])
def test_matches_torch(torch, mode, align_corners, size, scale_factor, shape, dtype, rtol, rng):
    x = rng.standard_normal(shape).astype(dtype)
    layer = minidl.nn.Upsample(size, scale_factor, mode, align_corners)
    y = layer(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = torch.nn.Upsample(size, scale_factor, mode, align_corners)(x_torch)
    y_torch.backward(torch.tensor(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, y_torch.detach().numpy(), rtol=rtol, atol=rtol, name="y")
    assert_close(dx, x_torch.grad.numpy(), rtol=rtol, atol=10 * rtol, name="dx")


def test_nearest_source_cells_match_torch_for_many_sizes(torch):
    """Including scale factors near 2 whose output is exactly twice the input (2.05 on 10, 2.3 on 3), where
    PyTorch takes dst // 2 whatever the factor says."""
    factors = (0.5, 0.7, 1.3, 1.7, 2.05, 2.3, 2.5, 3, 3.3)
    for in_size in range(1, 13):
        x = numpy.arange(in_size, dtype=numpy.float32).reshape(1, 1, 1, in_size)
        for resize in [dict(size=(1, out)) for out in range(1, 40)] + [
                dict(scale_factor=(1, s)) for s in factors if int(in_size * s) >= 1]:
            y = minidl.nn.Upsample(mode="nearest", **resize)(x)
            y_torch = torch.nn.functional.interpolate(torch.tensor(x), mode="nearest", **resize)
            numpy.testing.assert_array_equal(y, y_torch.numpy(), err_msg=f"{in_size} -> {resize}")


@pytest.mark.engines("fast")
@pytest.mark.parametrize("scale", [2, 3])
def test_integer_scale_path_equals_matrix_path(scale, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    layer = minidl.nn.Upsample(scale_factor=scale)
    y = layer(x)
    rows = interpolation_operator(4, 4 * scale, "nearest", False, float(scale), x)
    columns = interpolation_operator(5, 5 * scale, "nearest", False, float(scale), x)
    numpy.testing.assert_array_equal(y, resize_planes(x, rows, columns))
    dy = rng.standard_normal(y.shape)
    rows_t = interpolation_operator(4, 4 * scale, "nearest", False, float(scale), x, transposed=True)
    columns_t = interpolation_operator(5, 5 * scale, "nearest", False, float(scale), x, transposed=True)
    assert_close(layer.backward(dy), resize_planes(dy, rows_t, columns_t), rtol=1e-14, atol=1e-14, name="dx")
    _, (_, scales, _) = upsample_nearest2d_forward(x, y.shape[2:], (float(scale),) * 2)
    assert scales == (scale, scale)


@pytest.mark.engines("fast")

def test_interpolation_matrices_keep_the_dtype_and_rows_sum_to_one():
    for dtype in (numpy.float32, numpy.float64):
        matrix, _ = interpolation_operator(5, 11, "bilinear", False, None, numpy.zeros(1, dtype))
        assert matrix.dtype == dtype and matrix.shape == (11, 5)
        numpy.testing.assert_allclose(matrix.sum(axis=1), 1, rtol=1e-6)


@pytest.mark.parametrize("mode, in_size, out_size", [("bilinear", 50, 101), ("bilinear", 70, 23),
                                                     ("nearest", 60, 17), ("nearest", 9, 40)])
@pytest.mark.engines("fast")

def test_band_blocks_cover_every_nonzero(mode, in_size, out_size):
    for transposed in (False, True):
        matrix, blocks = interpolation_operator(in_size, out_size, mode, False, None, numpy.zeros(1),
                                                transposed)
        covered = numpy.zeros(matrix.shape, bool)
        for start, stop, first, end in blocks:
            covered[start:stop, first:end] = True
        assert (matrix[~covered] == 0).all()
        assert sum(stop - start for start, stop, _, _ in blocks) == matrix.shape[0]


@pytest.mark.engines("fast")

def test_band_blocks_of_a_doubling_are_narrow():
    _, blocks = interpolation_operator(112, 224, "bilinear", True, None, numpy.zeros(1, numpy.float32))
    assert len(blocks) == 14 and max(end - first for _, _, first, end in blocks) <= 10


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(), ValueError, "exactly one of size and scale_factor"),
    (dict(size=4, scale_factor=2), ValueError, "exactly one"),
    (dict(scale_factor=2, mode="bicubic"), ValueError, "mode"),
    (dict(scale_factor=2, align_corners=True), ValueError, "align_corners"),
    (dict(scale_factor=-1), ValueError, "positive"),
    (dict(scale_factor=float("nan")), ValueError, "scale_factor must be positive and finite, got nan"),
    (dict(scale_factor=(2, float("inf"))), ValueError, r"scale_factor must be positive and finite, got \(2, inf\)"),
    (dict(size=(2, 3, 4)), ValueError, "pair"),
])
def test_rejects_bad_construction(kwargs, error, message):
    with pytest.raises(error, match=message):
        minidl.nn.Upsample(**kwargs)


@pytest.mark.parametrize("x, error, message", [
    (numpy.zeros((2, 3, 4)), ValueError, r"4-D.*\(2, 3, 4\)"),
    (numpy.zeros((1, 1, 4, 4), numpy.int32), TypeError, "floating"),
    (numpy.zeros((1, 1, 1, 4)), ValueError, r"\(1, 1, 1, 4\) gives output size \(0, 1\)"),
])
def test_rejects_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        minidl.nn.Upsample(scale_factor=0.4, mode="bilinear")(x)
