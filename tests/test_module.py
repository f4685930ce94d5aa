"""The Module contract: registration, names, modes, gradients, dtype casts, no_grad, caches, Sequential."""
import re
from collections import OrderedDict

import numpy
import pytest

import minidl
from minidl import Parameter
from minidl.gradcheck import TOLERANCE, check_module
from minidl.nn import Conv2d, ConvTranspose2d, Module, ReLU, Sequential, Sigmoid


class Scale(Module):
    """y = x * gain + offset (per channel), with a step counter buffer: a tiny user layer."""

    def __init__(self, channels):
        super().__init__()
        self.gain = Parameter(numpy.full((channels,), 2.0, numpy.float32))
        self.offset = Parameter(numpy.zeros((channels,), numpy.float32))
        self.register_buffer("steps", numpy.zeros((), numpy.int64))
        self.register_buffer("scale_history", numpy.zeros((channels,), numpy.float32))

    def forward(self, x):
        y = x * self.gain.data.reshape(1, -1, 1, 1) + self.offset.data.reshape(1, -1, 1, 1)
        self.keep(x, y)
        return y

    def backward(self, dy):
        x = self.take_cache(dy)
        self.gain.grad += (dy * x).sum(axis=(0, 2, 3))
        self.offset.grad += dy.sum(axis=(0, 2, 3))
        return dy * self.gain.data.reshape(1, -1, 1, 1)


class Block(Module):
    def __init__(self):
        super().__init__()
        self.conv = Conv2d(2, 3, 3, padding=1)
        self.scale = Scale(3)


class Net(Module):
    def __init__(self):
        super().__init__()
        self.enc1 = Block()
        self.head = Parameter(numpy.ones((4,), numpy.float32))
        self.dec = Sequential(ConvTranspose2d(3, 2, 2, stride=2), ReLU())


def test_parameters_and_buffers_are_registered_in_order_with_dotted_names():
    net = Net()
    names = [name for name, _ in net.named_parameters()]
    assert names == ["head", "enc1.conv.weight", "enc1.conv.bias", "enc1.scale.gain", "enc1.scale.offset",
                     "dec.0.weight", "dec.0.bias"]
    assert [p for p in net.parameters()] == [p for _, p in net.named_parameters()]
    assert [name for name, _ in net.named_buffers()] == ["enc1.scale.steps", "enc1.scale.scale_history"]
    assert list(net.state_dict()) == ["head", "enc1.conv.weight", "enc1.conv.bias", "enc1.scale.gain",
                                      "enc1.scale.offset", "enc1.scale.steps", "enc1.scale.scale_history",
                                      "dec.0.weight", "dec.0.bias"]
    assert [type(m).__name__ for m in net.modules()] == ["Net", "Block", "Conv2d", "Scale", "Sequential",
                                                        "ConvTranspose2d", "ReLU"]


def test_state_dict_keys_match_pytorch(torch):
    ours = Sequential(Conv2d(1, 2, 3), ReLU(), Sequential(Conv2d(2, 2, 1, bias=False), ConvTranspose2d(2, 1, 2)))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(),
                                 torch.nn.Sequential(torch.nn.Conv2d(2, 2, 1, bias=False),
                                                     torch.nn.ConvTranspose2d(2, 1, 2)))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in theirs.named_parameters()]


def test_reassigning_and_deleting_attributes_updates_the_registry():
    module = Scale(2)
    module.offset = None
    assert [name for name, _ in module.named_parameters()] == ["gain"]
    module.extra = Scale(1)
    del module.extra
    assert [type(m).__name__ for m in module.modules()] == ["Scale"]
    module.steps = numpy.ones((), numpy.int64)
    assert module.state_dict()["steps"] == 1
    with pytest.raises(TypeError, match="Scale: cannot assign ndarray to parameter 'gain'"):
        module.gain = numpy.zeros(2)
    assert [name for name, _ in module.named_parameters()] == ["gain"]


def test_assigning_before_super_init_is_a_clear_error():
    class Forgetful(Module):
        def __init__(self):
            self.weight = Parameter(numpy.zeros(2))

    with pytest.raises(AttributeError, match=r"Forgetful: call super\(\).__init__\(\)"):
        Forgetful()


def test_parameter_grad_starts_at_zero_and_integer_data_is_refused():
    parameter = Parameter(numpy.arange(6, dtype=numpy.float64).reshape(2, 3))
    assert parameter.grad.shape == (2, 3) and parameter.grad.dtype == numpy.float64
    assert not parameter.grad.any()
    with pytest.raises(TypeError, match="Parameter: expected a floating-point array, got ndarray of dtype int64"):
        Parameter(numpy.arange(3))


def test_train_and_eval_propagate_to_every_submodule():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.enc1.train()
    assert net.enc1.scale.training and not net.training and not net.dec[0].training
    net.train()
    assert all(m.training for m in net.modules())


def test_backward_accumulates_and_zero_grad_clears(rng):
    module = Conv2d(2, 3, 3).double()
    x = rng.standard_normal((1, 2, 5, 5))
    upstream = rng.standard_normal((1, 3, 3, 3))
    module(x)
    module.backward(upstream)
    once = module.weight.grad.copy()
    module(x)
    module.backward(upstream)
    numpy.testing.assert_allclose(module.weight.grad, 2 * once, rtol=1e-14)
    module.zero_grad()
    assert all(not p.grad.any() for p in module.parameters())


def test_casting_parameters_grads_and_buffers():
    net = Net()
    assert net.double() is net
    assert all(p.data.dtype == numpy.float64 and p.grad.dtype == numpy.float64 for p in net.parameters())
    assert net.enc1.scale.scale_history.dtype == numpy.float64
    assert net.enc1.scale.steps.dtype == numpy.int64  # integer buffers are not cast
    net.float()
    assert all(p.data.dtype == numpy.float32 and p.grad.dtype == numpy.float32 for p in net.parameters())
    net.to(numpy.float64)
    assert net.head.data.dtype == numpy.float64
    net.to("cpu", dtype=numpy.float32)
    assert net.head.data.dtype == numpy.float32 and isinstance(net.head.data, numpy.ndarray)
    assert net.state_dict()["enc1.scale.scale_history"].dtype == numpy.float32
    with pytest.raises(TypeError, match="Net.to: dtype must be floating point, got int32"):
        net.to(dtype=numpy.int32)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        net.to("tpu")


def test_no_grad_keeps_no_cache_so_backward_raises(rng):
    module = Sigmoid()
    x = rng.standard_normal((2, 3))
    assert minidl.is_grad_enabled()
    with minidl.no_grad():
        assert not minidl.is_grad_enabled()
        y = module(x)
    assert minidl.is_grad_enabled() and module.cache is None
    numpy.testing.assert_allclose(y, 1 / (1 + numpy.exp(-x)), rtol=1e-14)
    with pytest.raises(RuntimeError, match=r"Sigmoid.backward: no forward pass is waiting .*no_grad\(\)"):
        module.backward(numpy.ones_like(y))


def test_no_grad_as_decorator_and_restored_after_an_exception():
    @minidl.no_grad()
    def inference():
        return minidl.is_grad_enabled()

    assert inference() is False and minidl.is_grad_enabled()
    with pytest.raises(KeyError):
        with minidl.no_grad():
            raise KeyError("boom")
    assert minidl.is_grad_enabled()


def test_backward_twice_raises(rng):
    module = Conv2d(2, 2, 1)
    y = module(rng.standard_normal((1, 2, 3, 3)).astype(numpy.float32))
    module.backward(numpy.ones_like(y))
    with pytest.raises(RuntimeError, match="Conv2d.backward: no forward pass is waiting .*already called"):
        module.backward(numpy.ones_like(y))


@pytest.mark.parametrize("layer", [lambda: Conv2d(2, 3, 3), lambda: ConvTranspose2d(2, 3, 3), ReLU, Sigmoid])
def test_upstream_gradient_of_the_wrong_shape_raises(layer, rng):
    module = layer()
    y = module(rng.standard_normal((1, 2, 5, 5)).astype(numpy.float32))
    wrong = numpy.ones(y.shape[:-1] + (y.shape[-1] + 1,), numpy.float32)
    name = type(module).__name__
    message = f"{name}.backward: upstream gradient has shape {wrong.shape}, the forward output had shape {y.shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        module.backward(wrong)
    assert module.backward(numpy.ones_like(y)).shape == (1, 2, 5, 5)


def test_sequential_chains_forward_and_backward(rng):
    first, second, third = Conv2d(2, 3, 3, padding=1), Sigmoid(), ConvTranspose2d(3, 2, 2, stride=2)
    model = Sequential(first, second, third).double()
    assert len(model) == 3 and model[1] is second and model[-1] is third and list(model) == [first, second, third]
    assert isinstance(model[1:], Sequential) and len(model[1:]) == 2
    x = rng.standard_normal((2, 2, 4, 5))
    expected = third(second(first(x)))
    upstream = rng.standard_normal(expected.shape)
    expected_dx = first.backward(second.backward(third.backward(upstream)))
    numpy.testing.assert_array_equal(model(x), expected)
    numpy.testing.assert_array_equal(model.backward(upstream), expected_dx)
    errors = check_module(model, x)
    assert set(errors) == {"input", "0.weight", "0.bias", "2.weight", "2.bias"}
    assert max(errors.values()) < TOLERANCE, errors


def test_sequential_names_like_pytorch_when_sliced_or_built_from_an_ordered_dict(torch):
    ours = Sequential(Conv2d(1, 2, 3), ReLU(), Conv2d(2, 3, 1))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Conv2d(2, 3, 1))
    assert list(ours[1:].state_dict()) == list(theirs[1:].state_dict()) == ["2.weight", "2.bias"]
    named = Sequential(OrderedDict([("features", Conv2d(1, 2, 3)), ("act", ReLU())]))
    assert list(named.state_dict()) == ["features.weight", "features.bias"]
    assert [name for name, _ in named.named_children()] == ["features", "act"]
    for bad_name in ("a.b", "", "cache", "training", "forward"):
        with pytest.raises(KeyError, match=f"Sequential: child name '{re.escape(bad_name)}' must be"):
            Sequential(OrderedDict([(bad_name, ReLU())]))


def test_sequential_refuses_non_modules():
    with pytest.raises(TypeError, match="Sequential: argument 1 is a function, not a Module"):
        Sequential(ReLU(), lambda x: x)


def test_manual_seed_makes_a_model_reproducible():
    minidl.manual_seed(3)
    first = Net().state_dict()
    minidl.manual_seed(3)
    second = Net().state_dict()
    assert all(numpy.array_equal(first[key], second[key]) for key in first)
    minidl.manual_seed(4)
    third = Net().state_dict()
    assert not numpy.array_equal(first["enc1.conv.weight"], third["enc1.conv.weight"])


def test_reassigning_a_parameter_or_child_keeps_its_place_in_the_order():
    layer = Conv2d(2, 3, 3)
    layer.weight = minidl.Parameter(numpy.zeros((3, 2, 3, 3), dtype=numpy.float32))
    assert list(layer.state_dict()) == ["weight", "bias"]
    model = Sequential(Conv2d(1, 2, 3), ReLU(), Conv2d(2, 1, 3))
    setattr(model, "0", Conv2d(1, 2, 3))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_a_shared_child_is_listed_once_by_parameters_and_under_each_name_by_state_dict():
    model = Sequential(Conv2d(1, 2, 3), ReLU())
    model.tied = model[0]
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert len(list(model.parameters())) == 2
    assert list(model.state_dict()) == ["0.weight", "0.bias", "tied.weight", "tied.bias"]


def test_assigning_a_non_module_to_a_child_is_refused():
    model = Sequential(ReLU())
    with pytest.raises(TypeError, match="cannot assign int as child module '0'"):
        setattr(model, "0", 5)


def test_backward_refuses_an_upstream_gradient_of_another_dtype():
    layer = Conv2d(1, 2, 3)
    y = layer(numpy.ones((1, 1, 5, 5), dtype=numpy.float32))
    with pytest.raises(TypeError, match="Conv2d.backward: upstream gradient has dtype float64, the forward output "
                                        "had dtype float32"):
        layer.backward(numpy.ones(y.shape))


@pytest.mark.parametrize("make_layer, channels", [
    (lambda: Conv2d(3, 4, 3, padding=1), 3), (lambda: Conv2d(4, 2, 3, padding=1), 4),
    (lambda: Conv2d(128, 128, 3, padding=1), 128), (lambda: ConvTranspose2d(3, 2, 3, stride=2), 3),
    (lambda: ReLU(), 3), (lambda: ReLU(inplace=True), 3), (lambda: Sigmoid(), 3),
    (lambda: minidl.nn.MaxPool2d(2), 3), (lambda: minidl.nn.Upsample(scale_factor=2, mode="bilinear"), 3),
    (lambda: minidl.nn.Upsample(scale_factor=2), 3), (lambda: minidl.nn.BatchNorm2d(3).eval(), 3)])
def test_an_empty_batch_passes_through_forward_and_backward(make_layer, channels):
    layer = make_layer()
    y = layer(numpy.zeros((0, channels, 6, 6), numpy.float32))
    assert y.shape[0] == 0 and y.dtype == numpy.float32
    dx = layer.backward(numpy.zeros(y.shape, numpy.float32))
    assert dx.shape == (0, channels, 6, 6) and dx.dtype == numpy.float32
    for parameter in layer.parameters():
        numpy.testing.assert_array_equal(parameter.grad, 0)
