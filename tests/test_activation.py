"""ReLU and Sigmoid: finite differences, PyTorch parity, any shape, dtype and extreme inputs."""
import warnings

import numpy
import pytest

import minidl
import models
from minidl.gradcheck import TOLERANCE, check_module
from minidl.nn import ReLU, Sigmoid

from helpers import assert_close, away_from_zero

SHAPES = [(7,), (2, 3, 5, 4), (1, 2, 3, 2, 2)]


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_relu_finite_differences(shape, inplace, rng):
    errors = check_module(ReLU(inplace=inplace), away_from_zero(shape, rng))
    assert list(errors) == ["input"] and errors["input"] < TOLERANCE


@pytest.mark.parametrize("shape", SHAPES)
def test_sigmoid_finite_differences(shape, rng):
    errors = check_module(Sigmoid(), 3 * rng.standard_normal(shape))
    assert list(errors) == ["input"] and errors["input"] < TOLERANCE


@pytest.mark.parametrize("layer, torch_name", [(ReLU, "relu"), (lambda: ReLU(inplace=True), "relu"),
                                               (Sigmoid, "sigmoid")])
@pytest.mark.parametrize("dtype, rtol", [(numpy.float64, 1e-12), (numpy.float32, 1e-6)])
def test_matches_pytorch(layer, torch_name, dtype, rtol, torch, rng):
    x = (4 * rng.standard_normal((2, 3, 5, 4))).astype(dtype)
    x.flat[:3] = 0  # ReLU's gradient at exactly 0 is 0, as PyTorch
    upstream = rng.standard_normal(x.shape).astype(dtype)
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = getattr(torch, torch_name)(x_torch)
    y_torch.backward(torch.tensor(upstream))
    module = layer()
    y = module(x.copy())
    dx = module.backward(upstream)
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, y_torch.detach().numpy(), rtol, atol=rtol, name="output")
    assert_close(dx, x_torch.grad.numpy(), rtol, atol=rtol, name="input grad")


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_sigmoid_saturates_without_overflow(dtype):
    x = numpy.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dtype)
    module = Sigmoid()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = module(x)
        dx = module.backward(numpy.ones_like(x))
    expected = 1 / (1 + numpy.exp(-numpy.clip(x.astype(numpy.float64), -700, 700)))
    numpy.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-40)
    assert y[2] == 0.5 and dx[2] == 0.25
    assert numpy.all(numpy.isfinite(dx)) and numpy.all(dx >= 0)


@pytest.mark.parametrize("layer", [ReLU, Sigmoid])
def test_integer_input_is_refused(layer):
    with pytest.raises(TypeError, match=rf"{layer.__name__}: expected a floating-point input, got dtype int32 "
                                        r"for input of shape \(2, 3\)"):
        layer()(numpy.zeros((2, 3), numpy.int32))


def test_relu_does_not_modify_its_input_or_upstream_gradient(rng):
    x = rng.standard_normal((3, 4))
    upstream = rng.standard_normal((3, 4))
    x_copy, upstream_copy = x.copy(), upstream.copy()
    module = ReLU()
    module(x)
    module.backward(upstream)
    numpy.testing.assert_array_equal(x, x_copy)
    numpy.testing.assert_array_equal(upstream, upstream_copy)


def test_inplace_relu_writes_over_its_input_and_keeps_a_one_byte_mask(rng):
    x = rng.standard_normal((3, 4, 5))
    x.flat[:2] = 0
    expected_y, upstream = numpy.maximum(x, 0), rng.standard_normal(x.shape)
    module = ReLU(inplace=True)
    y = module(x)
    assert y is x
    numpy.testing.assert_array_equal(x, expected_y)
    mask = module.cache[0]
    assert mask.dtype == bool and not numpy.shares_memory(mask, x)
    numpy.testing.assert_array_equal(mask, expected_y > 0)
    numpy.testing.assert_array_equal(module.backward(upstream), upstream * (expected_y > 0))
    assert repr(module) == "ReLU(inplace=True)" and repr(ReLU()) == "ReLU()"


@pytest.mark.parametrize("make_model, shape", [
    (lambda: models.SegNetSmall(init_features=4), (2, 1, 32, 32)),
    (lambda: models.SegNetSmall(init_features=4, upsample="unpool"), (2, 1, 35, 33)),
    (lambda: models.FCN(in_channels=1, num_classes=2, widths=(4, 4, 8, 8, 8)), (2, 1, 32, 32)),
    (lambda: models.SegNet(widths=(4, 4, 8, 8, 8), depths=(1, 1, 2, 2, 2)), (2, 1, 32, 32)),
    (lambda: models.FCN8s(in_channels=1, num_classes=2, fc_channels=8, widths=(4, 4, 8, 8, 8)), (2, 1, 32, 32))])
def test_inplace_and_plain_relu_agree_inside_a_model_step(make_model, shape, rng):
    x = rng.standard_normal(shape)
    results = []
    for inplace in (True, False):
        minidl.manual_seed(0)
        model = make_model().double()
        for module in model.modules():
            if isinstance(module, ReLU):
                module.inplace = inplace
        logits = model(x.copy())
        dx = model.backward(numpy.ones_like(logits))
        results.append((logits, dx, [p.grad.copy() for p in model.parameters()]))
    (logits_a, dx_a, grads_a), (logits_b, dx_b, grads_b) = results
    numpy.testing.assert_array_equal(logits_a, logits_b)
    numpy.testing.assert_array_equal(dx_a, dx_b)
    for grad_a, grad_b in zip(grads_a, grads_b):
        numpy.testing.assert_array_equal(grad_a, grad_b)
