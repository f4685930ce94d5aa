"""Conv2d and ConvTranspose2d: finite differences, PyTorch parity, initialisation and input errors."""
import math

import numpy
import pytest

import minidl
from minidl.fast import conv as conv_functions
from minidl.gradcheck import TOLERANCE, check_module
from minidl.nn import Conv2d, ConvTranspose2d

from helpers import assert_close, copy_weights

# (kernel, stride, padding, dilation, bias, batch, (H, W)): every value of each option appears at least once
CONV_CONFIGS = [
    (1, 1, 0, 1, True, 1, (5, 6)),
    (3, 1, 1, 1, True, 3, (13, 17)),
    (3, 2, 0, 2, False, 1, (13, 17)),
    (5, 3, 2, 1, True, 1, (13, 17)),
    (3, (2, 1), (0, 2), (1, 2), True, 3, (7, 9)),
    ((3, 5), 3, (2, 1), 2, False, 1, (13, 17)),
    ((1, 3), (1, 3), (1, 0), 1, True, 1, (6, 8)),
]

# (kernel, stride, padding, output_padding, dilation, bias, batch, (H, W))
TRANSPOSED_CONFIGS = [
    (1, 1, 0, 0, 1, True, 1, (5, 6)),
    (3, 2, 1, 1, 1, True, 3, (5, 7)),
    (3, 1, 0, 1, 2, False, 1, (4, 5)),
    (5, 3, 2, 0, 1, True, 1, (4, 6)),
    ((3, 5), (2, 3), (0, 2), (1, 0), (1, 2), True, 3, (3, 4)),
    (3, 3, (2, 1), (2, 0), 1, False, 1, (5, 4)),
    (3, 2, (0, 1), 0, 2, True, 1, (13, 17)),
]


def build_conv(config):
    kernel, stride, padding, dilation, bias, batch, size = config
    return Conv2d(2, 3, kernel, stride, padding, dilation, bias), (batch, 2) + size


def build_transposed(config):
    kernel, stride, padding, output_padding, dilation, bias, batch, size = config
    return ConvTranspose2d(2, 3, kernel, stride, padding, output_padding, dilation, bias), (batch, 2) + size


def torch_equivalent(torch, module):
    """The PyTorch layer with the same hyper-parameters and weights (float64)."""
    if isinstance(module, ConvTranspose2d):
        theirs = torch.nn.ConvTranspose2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                                          module.padding, module.output_padding, bias=module.bias is not None,
                                          dilation=module.dilation)
    else:
        theirs = torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                                 module.padding, module.dilation, bias=module.bias is not None)
    return theirs


def assert_parity(torch, module, x, rtol):
    """Forward and backward of ``module`` against PyTorch with the same weights, input and upstream gradient."""
    theirs = torch_equivalent(torch, module).to(torch.float64 if x.dtype == numpy.float64 else torch.float32)
    copy_weights(theirs, module)
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = theirs(x_torch)
    y = module(x)
    upstream = numpy.random.default_rng(7).standard_normal(y.shape).astype(x.dtype)
    y_torch.backward(torch.tensor(upstream))
    module.zero_grad()
    dx = module.backward(upstream)
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    assert_close(y, y_torch.detach().numpy(), rtol, atol=rtol * numpy.abs(y).max(), name="output")
    assert_close(dx, x_torch.grad.numpy(), rtol, atol=rtol * numpy.abs(dx).max(), name="input grad")
    for name, parameter in module.named_parameters():
        expected = dict(theirs.named_parameters())[name].grad.numpy()
        assert_close(parameter.grad, expected, rtol, atol=rtol * numpy.abs(expected).max(), name=f"{name} grad")


@pytest.mark.parametrize("config", CONV_CONFIGS, ids=str)
def test_conv2d_finite_differences(config, rng):
    module, shape = build_conv(config)
    errors = check_module(module, rng.standard_normal(shape))
    assert set(errors) == {"input", "weight"} | ({"bias"} if config[4] else set())
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("config", TRANSPOSED_CONFIGS, ids=str)
def test_conv_transpose2d_finite_differences(config, rng):
    module, shape = build_transposed(config)
    errors = check_module(module, rng.standard_normal(shape))
    assert set(errors) == {"input", "weight"} | ({"bias"} if config[5] else set())
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("config", CONV_CONFIGS, ids=str)
def test_conv2d_matches_pytorch_float64(config, torch, rng):
    module, shape = build_conv(config)
    assert_parity(torch, module.double(), rng.standard_normal(shape), rtol=1e-7)


@pytest.mark.parametrize("config", TRANSPOSED_CONFIGS, ids=str)
def test_conv_transpose2d_matches_pytorch_float64(config, torch, rng):
    module, shape = build_transposed(config)
    assert_parity(torch, module.double(), rng.standard_normal(shape), rtol=1e-7)


def test_conv2d_matches_pytorch_float32_at_a_realistic_size(torch, rng):
    module = Conv2d(16, 32, 3, padding=1)
    assert_parity(torch, module, rng.standard_normal((8, 16, 128, 192), dtype=numpy.float32), rtol=1e-4)


def test_conv_transpose2d_output_size_follows_pytorch(torch, rng):
    module = ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1)
    x = rng.standard_normal((1, 2, 7, 5)).astype(numpy.float32)
    assert module(x).shape == tuple(torch_equivalent(torch, module)(torch.tensor(x)).shape) == (1, 3, 14, 10)


def test_transposed_conv_is_the_adjoint_of_conv(rng):
    # <conv(x), y> = <x, conv_transpose(y)> with the same weight and no bias
    conv = Conv2d(3, 4, 3, stride=2, padding=1, bias=False).double()
    transposed = ConvTranspose2d(4, 3, 3, stride=2, padding=1, bias=False).double()
    transposed.weight.data[...] = conv.weight.data
    x = rng.standard_normal((2, 3, 9, 9))
    y = rng.standard_normal(conv(x).shape)
    assert math.isclose(numpy.sum(conv(x) * y), numpy.sum(x * transposed(y)), rel_tol=1e-12)


@pytest.mark.parametrize("layer, weight_shape, fan_in",
                         [(lambda: Conv2d(64, 32, 3), (32, 64, 3, 3), 64 * 9),
                          (lambda: ConvTranspose2d(16, 48, (3, 5)), (16, 48, 3, 5), 48 * 15)])
def test_initialisation_is_pytorch_default(layer, weight_shape, fan_in):
    module = layer()
    bound = 1 / math.sqrt(fan_in)
    weight, bias = module.weight.data, module.bias.data
    assert weight.shape == weight_shape and weight.dtype == numpy.float32 and bias.dtype == numpy.float32
    assert numpy.abs(weight).max() <= bound and numpy.abs(bias).max() <= bound
    assert numpy.abs(weight).max() > 0.99 * bound
    assert abs(weight.std() / (bound / math.sqrt(3)) - 1) < 0.05
    assert abs(weight.mean()) < 0.05 * bound


def test_initialisation_is_reproducible_from_the_seed():
    minidl.manual_seed(42)
    first = Conv2d(3, 4, 3).state_dict()
    minidl.manual_seed(42)
    second = Conv2d(3, 4, 3).state_dict()
    third = Conv2d(3, 4, 3).state_dict()
    for key in first:
        numpy.testing.assert_array_equal(first[key], second[key])
        assert not numpy.array_equal(first[key], third[key])


@pytest.mark.parametrize("layer", [Conv2d, ConvTranspose2d])
def test_float32_stays_float32_and_a_dtype_mismatch_is_refused(layer, rng):
    module = layer(2, 3, 3, padding=1)
    x = rng.standard_normal((1, 2, 5, 5)).astype(numpy.float32)
    y = module(x)
    assert y.dtype == numpy.float32 and module.backward(numpy.ones_like(y)).dtype == numpy.float32
    assert module.weight.grad.dtype == numpy.float32
    with pytest.raises(TypeError, match=rf"{layer.__name__}: input dtype float64 \(shape \(1, 2, 5, 5\)\)"):
        module(x.astype(numpy.float64))


@pytest.mark.parametrize("layer", [Conv2d, ConvTranspose2d])
def test_bad_input_names_the_layer_and_the_shape(layer):
    name = layer.__name__
    module = layer(3, 4, 3)
    with pytest.raises(ValueError, match=rf"{name}: expected a 4-D input \(N, C, H, W\), got input of shape "
                                         r"\(3, 8, 8\)"):
        module(numpy.zeros((3, 8, 8), numpy.float32))
    with pytest.raises(ValueError, match=rf"{name}: expected 3 input channels, got input of shape \(2, 4, 8, 8\)"):
        module(numpy.zeros((2, 4, 8, 8), numpy.float32))
    with pytest.raises(TypeError, match=rf"{name}: expected a floating-point input, got dtype int64 for input "
                                        r"of shape \(2, 3, 8, 8\)"):
        module(numpy.zeros((2, 3, 8, 8), numpy.int64))


def test_conv2d_input_smaller_than_the_dilated_kernel():
    module = Conv2d(3, 4, 3, dilation=2, padding=(1, 0))
    module(numpy.zeros((1, 3, 5, 5), numpy.float32))
    with pytest.raises(ValueError, match=r"Conv2d: input of shape \(1, 3, 4, 4\) is smaller than the kernel "
                                         r"\(3, 3\) with dilation \(2, 2\)"):
        module(numpy.zeros((1, 3, 4, 4), numpy.float32))


def test_conv_transpose2d_non_positive_output_size():
    module = ConvTranspose2d(3, 4, 3, padding=2)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: input of shape \(1, 3, 1, 2\) gives a non-positive "
                                         r"output size \(-1, 0\)"):
        module(numpy.zeros((1, 3, 1, 2), numpy.float32))


@pytest.mark.parametrize("stride, dilation, output_padding", [(2, 1, 2), (1, 1, 1), (2, 3, (0, 3)), (1, 1, -1)])
def test_conv_transpose2d_bad_output_padding(stride, dilation, output_padding):
    with pytest.raises(ValueError, match=r"ConvTranspose2d: output_padding \(.*\) must be non-negative and smaller "
                                         r"than max\(stride, dilation\)"):
        ConvTranspose2d(3, 4, 3, stride=stride, output_padding=output_padding, dilation=dilation)


@pytest.mark.parametrize("arguments, text", [((0, 4, 3), "channel counts must be positive, got in_channels=0"),
                                             ((3, 4, 0), r"must be positive .*got kernel_size=\(0, 0\)"),
                                             ((3, 4, 3, 1, -1), r"padding non-negative, .*padding=\(-1, -1\)")])
def test_bad_constructor_arguments(arguments, text):
    with pytest.raises(ValueError, match=f"Conv2d: .*{text}"):
        Conv2d(*arguments)


@pytest.mark.parametrize("layer", [Conv2d, ConvTranspose2d])
@pytest.mark.parametrize("name, position", [("kernel_size", 2), ("stride", 3), ("padding", 4)])
def test_a_float_geometry_argument_is_named_with_its_value(layer, name, position):
    arguments = [3, 4, 3, 1, 0]
    arguments[position] = 3.0
    with pytest.raises(ValueError, match=f"{layer.__name__} {name} must be an int or a pair of ints, got 3.0"):
        layer(*arguments)


def test_a_misplaced_groups_argument_is_refused_as_a_non_boolean_bias():
    # PyTorch's Conv2d(4, 4, 3, 1, 1, 1, 2) means groups=2; minidl's seventh Conv2d argument is bias
    with pytest.raises(TypeError, match=r"Conv2d: bias must be True or False, got 2 \(groups is not supported"):
        Conv2d(4, 4, 3, 1, 1, 1, 2)


@pytest.mark.parametrize("layer", [Conv2d, ConvTranspose2d])
def test_bias_takes_booleans_zero_one_and_none(layer):
    with pytest.raises(TypeError, match=rf"{layer.__name__}: bias must be True or False, got 'yes'"):
        layer(4, 4, 3, bias="yes")
    assert layer(4, 4, 3, bias=False).bias is None and layer(4, 4, 3, bias=None).bias is None
    assert layer(4, 4, 3, bias=1).bias.shape == (4,) and layer(4, 4, 3).bias.shape == (4,)


# Stride-1 convs with fewer output than input channels run as their transposed twin (see conv2d_forward).
# (kernel, padding, dilation, bias, batch, (H, W), expected form)
TWIN_CONFIGS = [
    (3, 1, 1, True, 2, (13, 17), "twin"),
    ((3, 5), (0, 2), 1, False, 1, (9, 11), "twin"),
    (3, 2, 2, True, 3, (7, 9), "twin"),
    (5, (1, 3), (2, 1), True, 1, (13, 10), "twin"),
    (1, 0, 1, True, 1, (5, 6), "direct"),
    (1, 1, 1, True, 1, (5, 6), "direct"),
]


# Stride-1 convs with C_out == C_in run directly but take dx as a conv of dy with the twin kernel.
@pytest.mark.parametrize("kernel, padding, dilation", [(3, 1, 1), ((3, 5), (0, 2), 1), (3, 2, 2), (3, 3, 1)])
def test_equal_channel_conv_input_gradient_by_the_twin_kernel(kernel, padding, dilation, torch, rng):
    module = Conv2d(3, 3, kernel, 1, padding, dilation).double()
    x = rng.standard_normal((2, 3, 9, 11))
    errors = check_module(module, x)
    assert max(errors.values()) < TOLERANCE, errors
    assert_parity(torch, module, x, rtol=1e-7)


def build_twin_case(config):
    kernel, padding, dilation, bias, batch, size, form = config
    return Conv2d(4, 2, kernel, 1, padding, dilation, bias), (batch, 4) + size, form


@pytest.mark.engines("fast")
@pytest.mark.parametrize("config", TWIN_CONFIGS, ids=str)
def test_conv2d_through_its_transposed_twin_finite_differences(config, rng):
    module, shape, form = build_twin_case(config)
    module.double()
    module(rng.standard_normal(shape))
    assert module.cache[0][1][0] == form
    errors = check_module(module, rng.standard_normal(shape))
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("config", TWIN_CONFIGS, ids=str)
def test_conv2d_through_its_transposed_twin_matches_pytorch(config, torch, rng):
    module, shape, _ = build_twin_case(config)
    assert_parity(torch, module.double(), rng.standard_normal(shape), rtol=1e-7)


@pytest.mark.engines("fast")

def test_twin_and_direct_forms_agree(rng):
    from minidl.fast.conv import conv2d_backward, correlate, twin_is_cheaper
    module = Conv2d(6, 3, 3, padding=1).double()
    x = rng.standard_normal((2, 6, 8, 9))
    assert twin_is_cheaper(module.weight.data, (1, 1), (1, 1), (1, 1))
    y = module(x)
    direct = correlate(x, module.weight.data, (1, 1), (1, 1), (1, 1), (8, 9))
    numpy.testing.assert_allclose(y, direct + module.bias.data.reshape(1, -1, 1, 1), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    twin_grads = conv2d_backward(dy, module.cache[0][1])
    direct_grads = conv2d_backward(dy, ("direct", (x, module.weight.data, True, (1, 1), (1, 1), (1, 1))))
    for twin_grad, direct_grad in zip(twin_grads, direct_grads):
        numpy.testing.assert_allclose(twin_grad, direct_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", [Conv2d, ConvTranspose2d])
def test_reset_parameters_redraws_from_the_default_distribution(layer):
    minidl.manual_seed(3)
    fresh = layer(4, 6, 3)
    module = layer(4, 6, 3).double()
    module.weight.data[...] = 10.0
    minidl.manual_seed(3)
    module.reset_parameters()
    assert module.weight.data.dtype == numpy.float64
    numpy.testing.assert_allclose(module.weight.data, fresh.weight.data, rtol=1e-7)
    numpy.testing.assert_allclose(module.bias.data, fresh.bias.data, rtol=1e-7)


def forward_and_backward(module, x, dy_seed=11):
    """y, dx and every parameter gradient of one forward and backward pass."""
    y = module(x)
    module.zero_grad()
    dx = module.backward(numpy.random.default_rng(dy_seed).standard_normal(y.shape))
    return [y, dx] + [parameter.grad.copy() for parameter in module.parameters()]


BANDED_CASES = ([build_conv(config) for config in CONV_CONFIGS]
                + [build_transposed(config) for config in TRANSPOSED_CONFIGS]
                + [build_twin_case(config)[:2] for config in TWIN_CONFIGS]
                + [(Conv2d(3, 3, 3, padding=1), (2, 3, 9, 11))])     # C_out == C_in: the twin's backward


def set_unfold_budget(monkeypatch, nbytes):
    """Have conv unfold at most ``nbytes`` of columns at once, whatever the device."""
    monkeypatch.setattr(conv_functions, "unfold_budget", lambda x: nbytes)


def record_pieces(monkeypatch):
    """Make conv.pieces log each call as (arguments, bands), to show that banding happened."""
    calls, original = [], conv_functions.pieces

    def logged(*arguments):
        bands = original(*arguments)
        calls.append((arguments, bands))
        return bands
    monkeypatch.setattr(conv_functions, "pieces", logged)
    return calls


# Above the unfolding budget (backend.unfold_budget) of columns a sample is unfolded in bands of rows under shifted padding (im2col.band_padding).
@pytest.mark.engines("fast")
@pytest.mark.parametrize("case", range(len(BANDED_CASES)))
@pytest.mark.parametrize("rows", [1, 2], ids=["one-row bands", "two-row bands"])
def test_unfolding_in_bands_of_rows_gives_the_whole_sample_sums(case, rows, monkeypatch, rng):
    module, shape = BANDED_CASES[case]
    module.double()
    x = rng.standard_normal(shape)
    calls = record_pieces(monkeypatch)
    whole = forward_and_backward(module, x)
    # a budget of `rows` rows of the narrowest columns unfolded (of a grid of at least 3 rows): that
    # unfolding goes in bands of `rows` rows, the others in bands of at least one
    row_bytes = [channels * kernel[0] * kernel[1] * grid[1] * 8 for (_, channels, kernel, grid), _ in calls
                 if grid[0] >= 3]
    set_unfold_budget(monkeypatch, rows * min(row_bytes))
    calls.clear()
    banded = forward_and_backward(module, x)
    with minidl.engine("reference"):
        reference = forward_and_backward(module, x)
    for got, expected, plain in zip(banded, whole, reference):
        numpy.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        numpy.testing.assert_allclose(got, plain, rtol=1e-12, atol=1e-12)
    assert max(len(bands) for _, bands in calls) > shape[0], "no unfolding was cut into bands"
    assert rows in [stop - top for _, bands in calls for _, top, stop in bands]


@pytest.mark.engines("fast")
def test_pieces_cut_each_sample_into_even_row_bands_within_the_budget(monkeypatch):
    from minidl.fast.conv import pieces
    set_unfold_budget(monkeypatch, 1000)
    x = numpy.zeros((2, 1, 10, 4), dtype=numpy.float32)
    # 3 channels x 5x5 kernel x 1 column x 4 bytes = 300 bytes a row: at most 3 rows a band, 4 bands of 3, 3, 3, 1
    assert pieces(x, 3, (5, 5), (10, 1)) == [(slice(s, s + 1), top, stop) for s in range(2)
                                             for top, stop in [(0, 3), (3, 6), (6, 9), (9, 10)]]
    # 8 rows of 300 bytes, at most 3 a band: 3 bands, as even as can be
    assert pieces(x, 3, (5, 5), (8, 1)) == [(slice(s, s + 1), top, stop) for s in range(2)
                                            for top, stop in [(0, 3), (3, 6), (6, 8)]]
    assert pieces(x, 50, (5, 5), (10, 1)) == [(slice(s, s + 1), row, row + 1) for s in range(2) for row in range(10)]
    set_unfold_budget(monkeypatch, 1 << 20)
    assert pieces(x, 3, (5, 5), (10, 1)) == [(slice(0, 1), 0, 10), (slice(1, 2), 0, 10)]


@pytest.mark.engines("fast")
@pytest.mark.parametrize("layer", ["conv", "transposed"])
def test_one_row_bands_pass_finite_differences_and_pytorch_parity(layer, monkeypatch, torch, rng):
    set_unfold_budget(monkeypatch, 1)
    module, shape = build_conv(CONV_CONFIGS[4]) if layer == "conv" else build_transposed(TRANSPOSED_CONFIGS[4])
    errors = check_module(module, rng.standard_normal(shape))
    assert max(errors.values()) < TOLERANCE, errors
    assert_parity(torch, module.double(), rng.standard_normal(shape), rtol=1e-7)


# On a GPU several samples are unfolded together and dW is one batched GEMM summed over them
# (conv.add_weight_gradient); the same path runs on the CPU when samples_per_unfold says so.
@pytest.mark.engines("fast")
@pytest.mark.parametrize("case", range(len(BANDED_CASES)))
def test_several_samples_unfolded_together_give_the_same_sums(case, monkeypatch, rng):
    module, shape = BANDED_CASES[case]
    module.double()
    x = rng.standard_normal((max(shape[0], 3),) + shape[1:])
    one_at_a_time = forward_and_backward(module, x)
    monkeypatch.setattr(conv_functions, "samples_per_unfold", lambda x, sample_bytes: 2)
    calls = record_pieces(monkeypatch)
    together = forward_and_backward(module, x)
    for got, expected in zip(together, one_at_a_time):
        numpy.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert any(chunk.stop - chunk.start == 2 for _, bands in calls for chunk, _, _ in bands)


@pytest.mark.parametrize("layer", [Conv2d(3, 4, 3, padding=1), ConvTranspose2d(3, 4, 3, stride=2),
                                   Conv2d(4, 2, 1), ConvTranspose2d(4, 2, 1)], ids=repr)
def test_an_empty_batch_gives_empty_outputs_and_gradients(layer, monkeypatch):
    x = numpy.zeros((0, layer.in_channels, 6, 5), dtype=numpy.float32)
    monkeypatch.setattr(conv_functions, "samples_per_unfold", lambda x, sample_bytes: 4)  # as on a GPU
    y = layer(x)
    assert y.shape[:2] == (0, layer.out_channels) and y.dtype == numpy.float32
    layer.zero_grad()
    dx = layer.backward(numpy.zeros(y.shape, dtype=numpy.float32))
    assert dx.shape == x.shape
    assert not layer.weight.grad.any() and not layer.bias.grad.any()


@pytest.mark.engines("fast")
@pytest.mark.parametrize("layer", ["conv", "transposed"])
def test_pointwise_layers_unfold_nothing_and_match_pytorch(layer, monkeypatch, torch, rng):
    """A 1x1 stride-1 conv is one GEMM on x itself (no im2col, no col2im) in either direction."""
    module = Conv2d(6, 2, 1) if layer == "conv" else ConvTranspose2d(6, 2, 1)
    unfold_calls = []
    monkeypatch.setattr(conv_functions, "im2col_in_workspace", lambda *a, **k: unfold_calls.append(a))
    monkeypatch.setattr(conv_functions, "col2im", lambda *a, **k: unfold_calls.append(a))
    assert_parity(torch, module.double(), rng.standard_normal((3, 6, 5, 7)), rtol=1e-10)
    assert unfold_calls == []
    errors = check_module(module, rng.standard_normal((2, 6, 4, 3)))
    assert max(errors.values()) < TOLERANCE, errors
