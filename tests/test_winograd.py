"""Winograd F(4x4, 3x3) and F(2x2, 3x3): equal to the reference im2col convolution, finite differences,
PyTorch parity, when each is chosen."""
import numpy
import pytest

from minidl.fast import winograd
from minidl.fast.conv import conv2d_forward
from minidl.functional import conv as reference
from minidl.gradcheck import TOLERANCE, check_module
from minidl.nn import Conv2d

from helpers import assert_close
from test_conv import assert_parity

pytestmark = pytest.mark.engines("fast")  # the fast engine's internals

# (batch, C_in, C_out, (H, W), padding): odd and even sizes, every padding 0..3 and asymmetric ones; outputs
# of at least 16x16 take F(4x4, 3x3) (the first and third: 18x21 and 21x21), smaller ones F(2x2, 3x3)
GEOMETRIES = [
    (2, 3, 4, (18, 21), (1, 1)),
    (1, 2, 3, (17, 16), (0, 1)),
    (2, 3, 2, (19, 23), (2, 0)),
    (2, 3, 4, (7, 9), (1, 1)),
    (2, 5, 3, (8, 8), (0, 0)),
    (1, 2, 3, (6, 5), (2, 2)),
    (3, 4, 2, (9, 4), (1, 0)),
    (2, 3, 2, (5, 5), (3, 1)),
    (3, 2, 2, (3, 3), (1, 1)),
    (1, 1, 1, (3, 4), (0, 1)),
]
WIDE = 64  # C*O = 4096 = 32 (C + O): the narrowest equal-width conv winograd_pays accepts


def direct_conv(x, weight, bias, padding, grid):
    """The plain im2col convolution (no Winograd, no twin), for comparison."""
    return reference.conv2d_forward(x, weight, bias, (1, 1), padding, (1, 1))[0]


@pytest.mark.parametrize("rows", [1, 2, None], ids=["one-tile-row bands", "two-tile-row bands", "whole batch"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_winograd_equals_the_im2col_convolution(geometry, rows, rng, monkeypatch):
    n, c, o, (h, w), padding = geometry
    x, weight, bias = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, 3, 3)), rng.standard_normal(o)
    grid = (h + 2 * padding[0] - 2, w + 2 * padding[1] - 2)
    m = winograd.tile_size(grid)
    (th, tw), t = winograd.tile_grid(grid, m), m + 2
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1 << 30 if rows is None else rows * t * t * max(c, o) * tw * 8)
    pieces, original = [], winograd.tile_pieces

    def logged(*arguments):
        pieces.append(original(*arguments))
        return pieces[-1]
    monkeypatch.setattr(winograd, "tile_pieces", logged)
    y, cache = winograd.winograd_forward(x, weight, bias, padding, grid)
    if rows is not None and th > rows:
        assert len(pieces[0]) > n and rows in [stop - top for _, top, stop in pieces[0]]
    assert_close(y, direct_conv(x, weight, bias, padding, grid), rtol=1e-12, atol=1e-12, name="output")
    dy = rng.standard_normal(y.shape)
    _, reference_cache = reference.conv2d_forward(x, weight, bias, (1, 1), padding, (1, 1))
    expected = reference.conv2d_backward(dy, reference_cache)
    for name, actual, wanted in zip(("dx", "dweight", "dbias"), winograd.winograd_backward(dy, cache), expected):
        assert actual.dtype == x.dtype
        assert_close(actual, wanted, rtol=1e-12, atol=1e-12, name=name)


def test_pieces_are_whole_samples_within_the_budget_else_even_bands_of_tile_rows():
    # 100 bytes a tile row, 4 rows: 400 bytes a sample, two samples a piece
    assert winograd.tile_pieces(5, 4, 100, 1000) == [(slice(0, 2), 0, 4), (slice(2, 4), 0, 4), (slice(4, 5), 0, 4)]
    # 300 bytes a tile row, 5 rows: a sample passes the budget, so bands of at most 3 rows, as even as can be
    assert winograd.tile_pieces(2, 5, 300, 1000) == [(slice(s, s + 1), top, stop) for s in range(2)
                                                      for top, stop in [(0, 3), (3, 5)]]
    assert winograd.tile_pieces(1, 7, 300, 1000) == [(slice(0, 1), 0, 3), (slice(0, 1), 3, 6), (slice(0, 1), 6, 7)]
    assert winograd.tile_pieces(1, 2, 5000, 1000) == [(slice(0, 1), 0, 1), (slice(0, 1), 1, 2)]
    assert winograd.tile_pieces(3, 9, 5000, None) == [(slice(0, 3), 0, 9)]     # no budget: the whole batch


@pytest.mark.parametrize("m", [2, 4])
def test_the_transforms_compute_one_tile_as_lavin_and_gray_write_it(m, rng):
    """y = A^T [(G g G^T) * (B^T d B)] A on one (m+2)x(m+2) tile equals the m x m valid correlation of d with g."""
    b_t, g_matrix, a_t = (numpy.array(matrix) for matrix in winograd.MATRICES[m])
    d, g = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
    y = a_t @ ((g_matrix @ g @ g_matrix.T) * (b_t @ d @ b_t.T)) @ a_t.T
    expected = [[numpy.sum(d[i:i + 3, j:j + 3] * g) for j in range(m)] for i in range(m)]
    assert_close(y, numpy.array(expected), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("output_hw, m", [((16, 16), 4), ((224, 17), 4), ((15, 200), 2), ((14, 14), 2), ((8, 12), 2)])
def test_outputs_of_16_pixels_a_side_take_4x4_tiles(output_hw, m):
    assert winograd.tile_size(output_hw) == m


@pytest.mark.parametrize("bias, size", [(True, (5, 7)), (False, (5, 7)), (True, (16, 17))], ids=str)
def test_wide_conv2d_finite_differences(bias, size, rng):
    module = Conv2d(WIDE, WIDE, 3, padding=1, bias=bias)
    _, cache = conv2d_forward(rng.standard_normal((2, WIDE) + size), module.weight.data, None, (1, 1), (1, 1), (1, 1))
    assert cache[0] == "winograd"
    errors = check_module(module, rng.standard_normal((2, WIDE) + size), max_elements=200)
    assert set(errors) == {"input", "weight"} | ({"bias"} if bias else set())
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("dtype,rtol,size", [(numpy.float64, 1e-10, (6, 9)), (numpy.float32, 1e-4, (28, 28))])
def test_wide_conv2d_matches_pytorch(dtype, rtol, size, torch, rng):
    module = Conv2d(WIDE, 2 * WIDE, 3, padding=1)
    if dtype == numpy.float64:
        module.double()
    assert winograd.winograd_pays(module.weight.data, module.stride, module.dilation)
    assert_parity(torch, module, rng.standard_normal((2, WIDE) + size).astype(dtype), rtol=rtol)


@pytest.mark.parametrize("shape,stride,dilation,expected", [
    ((128, 64, 3, 3), (1, 1), (1, 1), True),     # 64 -> 128: 8192 >= 32 * 192
    ((64, 64, 3, 3), (1, 1), (1, 1), True),      # 4096 >= 32 * 128: the threshold
    ((512, 512, 3, 3), (1, 1), (1, 1), True),
    ((64, 128, 3, 3), (1, 1), (1, 1), True),     # 128 -> 64 too: Winograd before the transposed twin
    ((64, 32, 3, 3), (1, 1), (1, 1), False),     # 32 -> 64: too narrow, the transforms cost more than they save
    ((32, 64, 3, 3), (1, 1), (1, 1), False),     # 64 -> 32: the transposed twin is cheaper
    ((256, 256, 3, 3), (2, 2), (1, 1), False),   # stride 2
    ((256, 256, 3, 3), (1, 1), (2, 2), False),   # dilated
    ((256, 256, 5, 5), (1, 1), (1, 1), False),   # not 3x3
    ((256, 256, 3, 1), (1, 1), (1, 1), False),
])
def test_winograd_is_chosen_for_wide_3x3_stride_1_convs_only(shape, stride, dilation, expected):
    assert winograd.winograd_pays(numpy.zeros(shape), stride, dilation) is expected


def test_a_wide_conv_layer_runs_by_winograd_and_keeps_its_results(rng, monkeypatch):
    """Conv2d(128, 128) takes the Winograd path; forcing the im2col path gives the same output and gradients."""
    module = Conv2d(128, 128, 3, padding=1).double()
    x, dy = rng.standard_normal((2, 128, 6, 8)), rng.standard_normal((2, 128, 6, 8))
    y = module(x)
    assert module.cache[0][1][0] == "winograd"
    module.zero_grad()
    dx = module.backward(dy)
    grads = {name: p.grad.copy() for name, p in module.named_parameters()}
    monkeypatch.setattr(winograd, "MIN_CHANNEL_RATIO", 10 ** 9)
    plain = Conv2d(128, 128, 3, padding=1).double()
    plain.load_state_dict(module.state_dict())
    assert_close(plain(x), y, rtol=1e-12, atol=1e-12, name="output")
    assert plain.cache[0][1][0] != "winograd"
    plain.zero_grad()
    assert_close(plain.backward(dy), dx, rtol=1e-12, atol=1e-12, name="dx")
    for name, parameter in plain.named_parameters():
        assert_close(parameter.grad, grads[name], rtol=1e-12, atol=1e-12, name=name)


def test_backward_uses_the_transformed_tiles_kept_by_forward(rng, monkeypatch):
    """The forward keeps V for each piece (not x); the backward transforms nothing again and changes x not at all."""
    module = Conv2d(WIDE, WIDE, 3, padding=1).double()
    x = rng.standard_normal((2, WIDE, 16, 20))
    x_before = x.copy()
    y = module(x)
    (_, (form, (transformed, x_shape, *_))), _, _ = module.cache
    assert form == "winograd" and x_shape == x.shape
    assert all(v.shape[:2] == (36, WIDE) for *_, v in transformed)
    assert not any(item is x for item in module.cache[0][1][1])
    x[...] = numpy.nan  # the backward must not read x: the gradients come out of V alone

    def no_transform(*args):
        raise AssertionError("backward ran the input transform again")
    monkeypatch.setattr(winograd, "input_transform", no_transform)
    dy = rng.standard_normal(y.shape)
    module.zero_grad()
    dx = module.backward(dy)
    _, cache = reference.conv2d_forward(x_before, module.weight.data, module.bias.data, (1, 1), (1, 1), (1, 1))
    expected = reference.conv2d_backward(dy, cache)
    assert_close(dx, expected[0], rtol=1e-9, atol=1e-9, name="dx")
    assert_close(module.weight.grad, expected[1], rtol=1e-9, atol=1e-9, name="dweight")


def test_inference_keeps_no_transformed_tiles(rng):
    """Under no_grad the forward's only large allocation is y: V goes through the workspace (kept, V would
    add 2.25x x's memory to the peak), and the result is the same."""
    import tracemalloc

    import minidl
    module = Conv2d(WIDE, WIDE, 3, padding=1)
    x = rng.standard_normal((2, WIDE, 32, 40)).astype(numpy.float32)
    y_kept = module(x)
    with minidl.no_grad():
        module(x)                                   # the workspace grows to its size here
        tracemalloc.start()
        try:
            y = module(x)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert module.cache is None
    assert peak < 1.5 * y.nbytes, f"peak {peak} bytes for an output of {y.nbytes}"
    numpy.testing.assert_array_equal(y, y_kept)
    assert winograd.winograd_forward(x, module.weight.data, None, (1, 1), (32, 40), for_backward=False)[1] is None


def test_an_empty_batch_gives_zero_weight_gradients(rng):
    module = Conv2d(WIDE, WIDE, 3, padding=1)
    module.weight.grad[...] = 0
    y = module(numpy.zeros((0, WIDE, 20, 20), dtype=numpy.float32))
    assert module.cache[0][1][0] == "winograd" and y.shape == (0, WIDE, 20, 20)
    module.weight.grad[...] = 0
    dx = module.backward(numpy.zeros(y.shape, dtype=numpy.float32))
    assert dx.shape == (0, WIDE, 20, 20)
    assert not module.weight.grad.any() and not module.bias.grad.any()
