"""The inspector's numbers equal the ones computed directly from the arrays of the same step."""
import numpy
import pytest

import models
from minidl import no_grad, optim
from minidl.inspect import Inspector, layer_table, mean_over_steps
from minidl.nn import Conv2d, ReLU, Sequential


def l2(array):
    return numpy.sqrt(numpy.sum(numpy.asarray(array, numpy.float64) ** 2))


def capture(model):
    """Hooks that keep copies of each layer's output and grad_input, by module."""
    seen = {}
    for module in model.modules():
        module.register_forward_hook(lambda m, i, o: seen.__setitem__(("out", id(m)), o.copy()))
        module.register_full_backward_hook(lambda m, gi, go: seen.__setitem__(("dx", id(m)), gi[0].copy()))
    return seen


def test_step_statistics_equal_direct_computations(rng):
    model = Sequential(Conv2d(2, 4, 3, padding=1), ReLU(inplace=True), Conv2d(4, 1, 3, padding=1))
    inspector = Inspector(model)
    seen = capture(model)  # registered after the inspector's: sees the ReLU's output, not the conv's overwritten one
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = rng.standard_normal((3, 2, 6, 6)).astype(numpy.float32)
    conv_output = {}
    model[0].register_forward_hook(lambda m, i, o: conv_output.update(value=o.copy()))
    y = model(x)
    model.backward(numpy.ones_like(y))
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    optimizer.step()
    stats = inspector.end_step()

    conv, relu, last = model[0], model[1], model[2]
    assert stats["0", "activation_mean"] == pytest.approx(conv_output["value"].mean(), rel=1e-5)
    assert stats["0", "activation_std"] == pytest.approx(conv_output["value"].std(), rel=1e-4)
    relu_out = seen["out", id(relu)]
    assert stats["1", "zero_fraction"] == pytest.approx(numpy.mean(relu_out == 0), abs=1e-12)
    assert 0.2 < stats["1", "zero_fraction"] < 0.8
    assert ("0", "zero_fraction") not in stats
    for name, module in (("0", conv), ("1", relu), ("2", last)):
        assert stats[name, "grad_input_norm"] == pytest.approx(l2(seen["dx", id(module)]), rel=1e-5)
    for layer in ("0", "2"):
        for parameter in ("weight", "bias"):
            key = f"{layer}.{parameter}"
            now = dict(model.named_parameters())[key].data
            assert stats[layer, f"{parameter}_norm"] == pytest.approx(l2(before[key]), rel=1e-5)
            assert stats[layer, f"{parameter}_grad_norm"] == pytest.approx(l2(grads[key]), rel=1e-5)
            ratio = l2(now - before[key]) / l2(before[key])
            assert stats[layer, f"{parameter}_update_ratio"] == pytest.approx(ratio, rel=1e-4)
            assert stats[layer, f"{parameter}_update_ratio"] > 0
    assert inspector.forward_order == ["0", "1", "2"]


def test_steps_average_per_layer_and_no_grad_forwards_are_not_recorded(rng):
    model = models.SegNetSmall(1, 1, init_features=2)
    inspector = Inspector(model)
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    steps = []
    for _ in range(2):
        optimizer.zero_grad()
        y = model(rng.standard_normal((2, 1, 16, 16)).astype(numpy.float32))
        model.backward(y - 1)
        optimizer.step()
        steps.append(inspector.end_step())
    with no_grad():
        model(rng.standard_normal((2, 1, 16, 16)).astype(numpy.float32))
    assert inspector.end_step() == {}
    mean = mean_over_steps(steps)
    key = ("enc3.conv", "weight_grad_norm")
    assert mean[key] == pytest.approx((steps[0][key] + steps[1][key]) / 2)
    table = layer_table(mean, inspector.forward_order)
    assert list(table)[:4] == ["enc1.conv", "enc1.relu", "pool1", "enc2.conv"]
    assert list(table)[-1] == "out"
    assert table["enc1.relu"].keys() >= {"activation_mean", "activation_std", "zero_fraction", "grad_input_norm"}
    # Adam's first steps move every weight by about lr: the ratio is lr * sqrt(size) / ||w||
    weight = model.enc3.conv.weight.data
    assert 0.2 * 1e-2 * numpy.sqrt(weight.size) / l2(weight) < steps[0]["enc3.conv", "weight_update_ratio"]


def test_paused_and_closed_inspectors_record_nothing(rng):
    model = Sequential(Conv2d(1, 2, 3), ReLU())
    inspector = Inspector(model)
    with inspector.paused():
        model.backward(numpy.ones_like(model(rng.standard_normal((1, 1, 5, 5)).astype(numpy.float32))))
    assert inspector.end_step() == {}
    inspector.close()
    assert all("forward" not in vars(module) and "backward" not in vars(module) for module in model.modules())


def test_input_gradient_matches_finite_differences_and_leaves_grads_and_mode(rng):
    from minidl import losses
    from minidl.gradcheck import numerical_gradient, relative_error
    from minidl.inspect import input_gradient
    from minidl.nn import BatchNorm2d
    model = Sequential(Conv2d(1, 3, 3, padding=1), BatchNorm2d(3), ReLU(), Conv2d(3, 1, 3, padding=1)).double()
    model[1].running_mean[...] = [0.5, -0.2, 0.1]  # eval mode's statistics, away from the defaults
    model[1].running_var[...] = [2.0, 0.5, 1.5]
    model[3].weight.grad[...] = 7.0
    x = rng.standard_normal((2, 1, 8, 8))
    target = (rng.random((2, 1, 8, 8)) > 0.5).astype(numpy.float64)
    loss = losses.BCEDiceLoss()
    gradient = input_gradient(model, loss, x, target)
    assert model.training and (model[3].weight.grad == 7.0).all()
    model.eval()

    def scalar():
        with no_grad():
            return loss(model(x), target)

    indices = rng.choice(x.size, 12, replace=False)
    numeric = numerical_gradient(scalar, x, indices)
    assert relative_error(gradient.reshape(-1)[indices], numeric) < 1e-6


def test_the_update_ratio_of_an_all_zero_parameter_is_nan(rng):
    conv = Conv2d(1, 2, 3)
    conv.bias.data[...] = 0
    inspector = Inspector(conv)
    optimizer = optim.SGD(conv.parameters(), lr=0.1)
    conv.backward(numpy.ones_like(conv(rng.standard_normal((1, 1, 5, 5)).astype(numpy.float32))))
    optimizer.step()
    with numpy.errstate(all="raise"):
        stats = inspector.end_step()
    assert numpy.isnan(stats["", "bias_update_ratio"]) and stats["", "weight_update_ratio"] > 0
