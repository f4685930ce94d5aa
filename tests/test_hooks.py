"""Module hooks: each kind fires once per call on every module of every model, handles remove them, returned
values replace what PyTorch lets them replace, a raising hook is named, and a module without hooks is untouched."""
import collections

import numpy
import pytest

import models
from minidl import losses
from minidl.nn import Conv2d, MaxPool2d, MaxUnpool2d, ReLU, Sequential
from minidl.nn.hooks import HookError

# every built-in model, tiny, with an input it accepts
MODELS = {
    "SegNetSmall-bilinear": (lambda: models.SegNetSmall(1, 1, init_features=2), (2, 1, 16, 16)),
    "SegNetSmall-unpool": (lambda: models.SegNetSmall(1, 1, init_features=2, upsample="unpool"), (2, 1, 17, 19)),
    "SegNet": (lambda: models.SegNet(1, 2, widths=(2, 2, 3, 3, 3)), (2, 1, 32, 32)),
    "SegNetBasic": (lambda: models.SegNetBasic(1, 2, width=2), (2, 1, 16, 16)),
    "FCN": (lambda: models.FCN(1, 2, widths=(2, 2, 3, 3, 4)), (2, 1, 32, 32)),
    "FCN32s": (lambda: models.FCN32s(1, 2, fc_channels=3, widths=(2, 2, 3, 3, 3)), (1, 1, 32, 32)),
    "FCN16s": (lambda: models.FCN16s(1, 2, fc_channels=3, widths=(2, 2, 3, 3, 3)), (1, 1, 32, 32)),
    "FCN8s": (lambda: models.FCN8s(1, 2, fc_channels=3, widths=(2, 2, 3, 3, 3)), (1, 1, 32, 32)),
}


def primary(value):
    return value[0] if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", MODELS)
def test_every_hook_kind_fires_once_per_call_on_every_module(name, rng):
    make_model, shape = MODELS[name]
    model = make_model()
    calls = collections.Counter()
    shapes = {}

    def pre(module, inputs):
        calls["forward_pre", id(module)] += 1
        shapes["input", id(module)] = inputs[0].shape

    def post(module, inputs, output):
        calls["forward", id(module)] += 1
        shapes["output", id(module)] = primary(output).shape

    def backward_pre(module, grad_output):
        calls["backward_pre", id(module)] += 1
        assert grad_output[0].shape == shapes["output", id(module)]

    def backward(module, grad_input, grad_output):
        calls["backward", id(module)] += 1
        assert grad_input[0].shape == shapes["input", id(module)]

    for module in model.modules():
        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
        module.register_full_backward_pre_hook(backward_pre)
        module.register_full_backward_hook(backward)
    logits = model(rng.standard_normal(shape).astype(numpy.float32))
    model.backward(numpy.ones_like(logits))
    modules = list(model.modules())
    assert len(modules) > 10
    for kind in ("forward_pre", "forward", "backward_pre", "backward"):
        counts = [calls[kind, id(module)] for module in modules]
        assert counts == [1] * len(modules), f"{name}: {kind} hook counts {counts}"


def test_backward_hooks_see_the_gradients_the_model_passes(rng):
    model = models.SegNetSmall(1, 1, init_features=2)
    seen = {}
    model.dec1.conv.register_full_backward_hook(
        lambda module, grad_input, grad_output: seen.update(dx=grad_input[0].copy(), dy=grad_output[0].copy()))
    model.dec1.relu.register_full_backward_hook(
        lambda module, grad_input, grad_output: seen.update(relu_dx=grad_input[0].copy()))
    model.out.register_full_backward_hook(lambda module, grad_input, grad_output: seen.update(out_dx=grad_input[0]))
    logits = model(rng.standard_normal((2, 1, 16, 16)).astype(numpy.float32))
    model.backward(numpy.ones_like(logits))
    numpy.testing.assert_array_equal(seen["dy"], seen["relu_dx"])  # the conv's upstream is the ReLU's dx
    assert seen["dx"].shape == (2, 4, 16, 16) and seen["out_dx"].shape == (2, 2, 16, 16)
    assert numpy.abs(seen["dx"]).sum() > 0


def test_removed_hooks_stop_firing_and_leave_the_class_methods(rng):
    layer = Conv2d(1, 2, 3, padding=1)
    calls = []
    handles = [layer.register_forward_pre_hook(lambda m, i: calls.append("pre")),
               layer.register_forward_hook(lambda m, i, o: calls.append("forward")),
               layer.register_full_backward_pre_hook(lambda m, g: calls.append("backward_pre")),
               layer.register_full_backward_hook(lambda m, gi, go: calls.append("backward"))]
    x = rng.standard_normal((1, 1, 5, 5)).astype(numpy.float32)
    layer.backward(numpy.ones_like(layer(x)))
    assert calls == ["pre", "forward", "backward_pre", "backward"]
    assert "forward" in vars(layer) and "backward" in vars(layer)
    for handle in handles:
        handle.remove()
    handles[0].remove()  # a second remove does nothing
    layer.backward(numpy.ones_like(layer(x)))
    assert calls == ["pre", "forward", "backward_pre", "backward"]
    assert "forward" not in vars(layer) and "backward" not in vars(layer)  # no wrapper left: no cost
    assert layer.backward.__func__ is Conv2d.backward


def test_a_handle_removes_only_its_own_hook_and_works_as_a_context(rng):
    relu = ReLU()
    calls = []
    first = relu.register_forward_hook(lambda m, i, o: calls.append(1))
    with relu.register_forward_hook(lambda m, i, o: calls.append(2)):
        relu(numpy.ones(3))
    relu(numpy.ones(3))
    first.remove()
    relu(numpy.ones(3))
    assert calls == [1, 2, 1]


def test_hooks_run_in_registration_order_and_prepend_goes_first():
    relu = ReLU()
    order = []
    relu.register_forward_hook(lambda m, i, o: order.append("a"))
    relu.register_forward_hook(lambda m, i, o: order.append("b"))
    relu.register_forward_hook(lambda m, i, o: order.append("first"), prepend=True)
    relu(numpy.ones(2))
    assert order == ["first", "a", "b"]


def test_returned_values_replace_inputs_output_and_gradients():
    relu = ReLU()
    relu.register_forward_pre_hook(lambda module, inputs: (inputs[0] - 1.0,))
    relu.register_forward_hook(lambda module, inputs, output: output * 10.0)
    y = relu(numpy.array([0.5, 2.0, 3.0]))
    numpy.testing.assert_array_equal(y, [0.0, 10.0, 20.0])
    relu.register_full_backward_pre_hook(lambda module, grad_output: (grad_output[0] * 3.0,))
    relu.register_full_backward_hook(lambda module, grad_input, grad_output: (grad_input[0] + 0.5,))
    dx = relu.backward(numpy.ones(3))
    numpy.testing.assert_array_equal(dx, [0.5, 3.5, 3.5])  # dy*3 through the mask [0, 1, 1], then + 0.5


def test_a_replaced_gradient_flows_on_through_the_models_backward(rng):
    model = models.SegNetSmall(1, 1, init_features=2)
    x = rng.standard_normal((2, 1, 16, 16)).astype(numpy.float32)
    model.enc2.register_full_backward_hook(lambda module, grad_input, grad_output: (0 * grad_input[0],))
    logits = model(x)
    dx = model.backward(numpy.ones_like(logits))
    assert not dx.any()
    assert not model.enc1.conv.weight.grad.any()  # enc1 received only zeros
    assert model.enc2.conv.weight.grad.any()


def test_a_forward_pre_hook_may_return_a_bare_array():
    relu = ReLU()
    relu.register_forward_pre_hook(lambda module, inputs: -inputs[0])
    numpy.testing.assert_array_equal(relu(numpy.array([-1.0, 2.0])), [1.0, 0.0])


def test_a_raising_hook_is_named_with_its_module():
    conv = Conv2d(1, 2, 3)
    model = Sequential(conv, ReLU())

    def broken_hook(module, inputs, output):
        raise ValueError("no good")

    conv.register_forward_hook(broken_hook)
    with pytest.raises(HookError, match=r"forward hook .*broken_hook registered on Conv2d\(1, 2, kernel_size=\(3, 3\)"
                                        r".*raised ValueError: no good"):
        model(numpy.zeros((1, 1, 4, 4), numpy.float32))


def test_a_backward_hook_returning_the_wrong_count_is_named():
    relu = ReLU()
    relu.register_full_backward_hook(lambda module, grad_input, grad_output: (grad_input[0], grad_input[0]))
    relu(numpy.ones(2))
    with pytest.raises(HookError, match=r"full backward hook .*registered on ReLU\(\) returned 2 values in place of 1"):
        relu.backward(numpy.ones(2))


def test_a_hook_must_be_callable():
    with pytest.raises(TypeError, match="ReLU.register_forward_hook: hook must be callable"):
        ReLU().register_forward_hook(3)


def test_pooling_hooks_see_pytorch_shaped_tuples(rng):
    pool, unpool = MaxPool2d(2, 2, return_indices=True), MaxUnpool2d(2, 2)
    seen = {}
    pool.register_forward_hook(lambda module, inputs, output: seen.update(pool_output=output))
    unpool.register_forward_pre_hook(lambda module, inputs: seen.update(unpool_inputs=inputs))
    unpool.register_full_backward_hook(lambda module, grad_input, grad_output: seen.update(unpool_grads=grad_input))
    y, indices = pool(rng.standard_normal((1, 1, 4, 4)))
    z = unpool(y, indices, output_size=(4, 4))
    unpool.backward(numpy.ones_like(z))
    assert isinstance(seen["pool_output"], tuple) and len(seen["pool_output"]) == 2
    assert len(seen["unpool_inputs"]) == 2 and seen["unpool_inputs"][1] is indices
    assert len(seen["unpool_grads"]) == 1 and seen["unpool_grads"][0].shape == (1, 1, 2, 2)


def test_backward_hook_gradients_match_pytorchs(torch, rng):
    x = rng.standard_normal((2, 3, 6, 6))
    theirs = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    ours = Conv2d(3, 4, 3, padding=1).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    seen = {}
    theirs.register_full_backward_hook(lambda m, gi, go: seen.update(torch=(gi[0].numpy(), go[0].numpy())))
    ours.register_full_backward_hook(lambda m, gi, go: seen.update(ours=(gi[0], go[0])))
    target = rng.uniform(size=(2, 4, 6, 6))
    x_torch = torch.tensor(x, requires_grad=True)
    loss = losses.BCEWithLogitsLoss()
    torch.nn.functional.binary_cross_entropy_with_logits(theirs(x_torch), torch.tensor(target)).backward()
    loss(ours(x), target)
    ours.backward(loss.backward())
    for mine, reference in zip(seen["ours"], seen["torch"]):
        numpy.testing.assert_allclose(mine, reference, rtol=1e-10, atol=1e-14)
