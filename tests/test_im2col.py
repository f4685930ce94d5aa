"""im2col / col2im of both engines: values against a direct window loop, adjointness, dtype, and the window
geometry; then the fast engine's own options (grid, out, overwrite, row bands)."""
import numpy
import pytest

import minidl.fast.im2col as fast_unfolding
import minidl.functional.im2col as reference_unfolding
from minidl.fast.im2col import band_padding, col2im, im2col, output_grid, row_bands
from minidl.functional.windows import pair, transposed_output_size, window_output_size

GEOMETRIES = [
    # kernel, stride, padding, dilation
    ((3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 3), (2, 1), (0, 2), (1, 1)),
    ((3, 2), (3, 2), (2, 1), (2, 1)),
    ((1, 1), (2, 2), (0, 0), (1, 1)),
    ((5, 3), (1, 3), (2, 0), (1, 2)),
]


def naive_im2col(x, kernel, stride, padding, dilation, pad_value=0.0):
    """The definition, one window at a time: cols[n, c, i, j, ho, wo] = padded[n, c, ho*s + i*d, wo*s + j*d]."""
    n, c, h, w = x.shape
    padded = numpy.full((n, c, h + 2 * padding[0], w + 2 * padding[1]), pad_value, dtype=x.dtype)
    padded[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w] = x
    ho, wo = output_grid((h, w), kernel, stride, padding, dilation)
    cols = numpy.empty((n, c, kernel[0], kernel[1], ho, wo), dtype=x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            for a in range(ho):
                for b in range(wo):
                    cols[:, :, i, j, a, b] = padded[:, :, a * stride[0] + i * dilation[0],
                                                    b * stride[1] + j * dilation[1]]
    return cols


@pytest.fixture(params=[reference_unfolding, fast_unfolding], ids=["reference", "fast"])
def unfolding(request):
    """The module whose im2col and col2im are under test."""
    return request.param


@pytest.mark.parametrize("kernel, stride, padding, dilation", GEOMETRIES)
def test_im2col_matches_the_window_definition(kernel, stride, padding, dilation, rng, unfolding):
    x = rng.standard_normal((2, 3, 9, 11))
    expected = naive_im2col(x, kernel, stride, padding, dilation)
    numpy.testing.assert_array_equal(unfolding.im2col(x, kernel, stride, padding, dilation), expected)


def test_im2col_pad_value_fills_only_the_border(rng, unfolding):
    x = rng.standard_normal((1, 2, 4, 5))
    cols = unfolding.im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), pad_value=-numpy.inf)
    numpy.testing.assert_array_equal(cols, naive_im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), -numpy.inf))
    assert numpy.isneginf(cols[0, 0, 0, 0, 0, 0]) and numpy.isfinite(cols[0, 0, 1, 1]).all()


def test_im2col_grid_keeps_the_first_windows_and_fills_out(rng):
    x = rng.standard_normal((2, 2, 7, 8))
    full = im2col(x, (3, 3), (2, 2), (1, 1), (1, 1))
    out = numpy.empty((2, 2, 3, 3, 2, 3))
    returned = im2col(x, (3, 3), (2, 2), (1, 1), (1, 1), grid=(2, 3), out=out)
    assert returned is out
    numpy.testing.assert_array_equal(out, full[..., :2, :3])


@pytest.mark.parametrize("kernel, stride, padding, dilation", GEOMETRIES)
def test_col2im_is_the_adjoint_of_im2col(kernel, stride, padding, dilation, rng, unfolding):
    # <im2col(x), c> = <x, col2im(c)> for every x and c
    x = rng.standard_normal((2, 3, 9, 11))
    cols = rng.standard_normal(unfolding.im2col(x, kernel, stride, padding, dilation).shape)
    left = numpy.sum(unfolding.im2col(x, kernel, stride, padding, dilation) * cols)
    right = numpy.sum(x * unfolding.col2im(cols, x.shape, stride, padding, dilation))
    assert abs(left - right) <= 1e-12 * max(1.0, abs(left))


def test_col2im_sums_overlapping_windows(unfolding):
    # 3x3 windows, stride 1, pad 1 on a 3x3 image: pixel (r, c) is covered by (#rows)*(#cols) windows
    cols = numpy.ones((1, 1, 3, 3, 3, 3))
    counts = unfolding.col2im(cols, (1, 1, 3, 3), (1, 1), (1, 1), (1, 1))
    expected = numpy.outer([2, 3, 2], [2, 3, 2]).reshape(1, 1, 3, 3)
    numpy.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), (0, 0)), ((4, 4), (4, 4), (1, 1)),
                                                     ((2, 3), (3, 3), (1, 2))])
def test_col2im_overwrite_writes_non_overlapping_windows_and_keeps_uncovered_pixels(kernel, stride, padding, rng):
    shape = (2, 3, 9, 11)
    cols = rng.standard_normal(im2col(numpy.zeros(shape), kernel, stride, padding, (1, 1)).shape)
    out = rng.standard_normal(shape)
    covered = col2im(numpy.ones_like(cols), shape, stride, padding, (1, 1)) > 0
    expected = numpy.where(covered, col2im(cols, shape, stride, padding, (1, 1)), out)
    assert col2im(cols, shape, stride, padding, (1, 1), out=out, overwrite=True) is out
    numpy.testing.assert_array_equal(out, expected)
    assert not covered.all()  # each geometry leaves pixels that must keep their values


def test_col2im_overwrite_refuses_overlapping_windows_or_no_out():
    cols = numpy.zeros((1, 1, 3, 3, 2, 2))
    with pytest.raises(ValueError, match=r"col2im: overwrite .*kernel \(3, 3\), stride \(2, 2\)"):
        col2im(cols, (1, 1, 5, 5), (2, 2), (0, 0), (1, 1), out=numpy.zeros((1, 1, 5, 5)), overwrite=True)
    with pytest.raises(ValueError, match="overwrite needs out"):
        col2im(numpy.zeros((1, 1, 2, 2, 2, 2)), (1, 1, 4, 4), (2, 2), (0, 0), (1, 1), overwrite=True)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_dtype_is_kept(dtype, rng, unfolding):
    x = rng.standard_normal((1, 2, 6, 6)).astype(dtype)
    cols = unfolding.im2col(x, (3, 3), (1, 1), (1, 1), (1, 1))
    assert cols.dtype == dtype
    assert unfolding.col2im(cols, x.shape, (1, 1), (1, 1), (1, 1)).dtype == dtype


def test_window_sizes_follow_pytorch_formulas():
    assert window_output_size(13, 3, 2, 1, 1) == 7
    assert window_output_size(17, 5, 3, 2, 2) == 5
    assert window_output_size(2, 3, 1, 0, 2) == -2
    assert transposed_output_size(7, 3, 2, 1, 1, 1) == 14
    assert transposed_output_size(4, 5, 3, 2, 2, 0) == 14


def test_pair_accepts_ints_and_pairs_only():
    assert pair(3) == (3, 3) and pair((2, 5)) == (2, 5)
    with pytest.raises(ValueError, match="stride must be an int or a pair"):
        pair((1, 2, 3), "stride")
    with pytest.raises(ValueError, match="padding"):
        pair((1.5, 2), "padding")


@pytest.mark.parametrize("stride, padding, dilation", [((1, 1), (1, 1), (1, 1)), ((2, 1), (2, 0), (1, 2)),
                                                       ((3, 2), (0, 1), (2, 1))])
def test_band_padding_unfolds_a_band_of_window_rows(stride, padding, dilation, rng):
    x = rng.standard_normal((2, 3, 11, 9))
    grid = output_grid(x.shape[2:], (3, 3), stride, padding, dilation)
    whole = im2col(x, (3, 3), stride, padding, dilation).copy()
    for top, stop in [(0, 2), (1, grid[0]), (grid[0] - 1, grid[0])]:
        band = im2col(x, (3, 3), stride, band_padding(padding, stride, top), dilation, grid=(stop - top, grid[1]))
        numpy.testing.assert_array_equal(band, whole[:, :, :, :, top:stop])
        # the adjoint: adding the band's columns back equals adding back only those rows of the whole
        rows_only = numpy.zeros_like(whole)
        rows_only[:, :, :, :, top:stop] = whole[:, :, :, :, top:stop]
        numpy.testing.assert_allclose(col2im(band, x.shape, stride, band_padding(padding, stride, top), dilation),
                                      col2im(rows_only, x.shape, stride, padding, dilation), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("rows, max_rows, bands", [(10, 3, [(0, 3), (3, 6), (6, 9), (9, 10)]),
                                                   (8, 3, [(0, 3), (3, 6), (6, 8)]),
                                                   (56, 36, [(0, 28), (28, 56)]),
                                                   (5, 0, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
                                                   (4, 9, [(0, 4)]), (0, 3, [])])
def test_row_bands_are_the_fewest_within_the_limit_and_even(rows, max_rows, bands):
    assert row_bands(rows, max_rows) == bands

