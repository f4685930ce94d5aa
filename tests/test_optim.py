"""Optimizers: 5 steps against torch.optim with the same gradients, exact resume through save/load, bad input."""
import numpy
import pytest
from helpers import assert_close, gpu_or_skip

import minidl
from minidl import optim

SHAPES = [(3, 4), (5,)]
CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.05}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "amsgrad": True}),
]
RTOL = {numpy.float64: 1e-12, numpy.float32: 1e-6}


def gradient_sequence(rng, steps, dtype):
    return [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(steps)]


def make_parameters(rng, dtype):
    return [minidl.Parameter(rng.standard_normal(shape).astype(dtype)) for shape in SHAPES]


def run(optimizer, parameters, gradients):
    for step_gradients in gradients:
        optimizer.zero_grad()
        for parameter, gradient in zip(parameters, step_gradients):
            parameter.grad += gradient
        optimizer.step()


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("name, settings", CONFIGS)
def test_five_steps_match_torch(torch, rng, dtype, name, settings):
    parameters = make_parameters(rng, dtype)
    tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in parameters]
    optimizer = getattr(optim, name)(parameters, **settings)
    torch_optimizer = getattr(torch.optim, name)(tensors, **settings)
    for step, step_gradients in enumerate(gradient_sequence(rng, 5, dtype)):
        run(optimizer, parameters, [step_gradients])
        for tensor, gradient in zip(tensors, step_gradients):
            tensor.grad = torch.tensor(gradient)
        torch_optimizer.step()
        for parameter, tensor in zip(parameters, tensors):
            expected = tensor.detach().numpy()
            assert parameter.data.dtype == dtype
            assert_close(parameter.data, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * numpy.abs(expected).max(),
                         name=f"{name} step {step + 1}")


# which of the two parameters gets a gradient at each step: the second is a branch frozen at steps 2 and 3
RECEIVES_GRADIENT = [(True, True), (True, False), (True, False), (True, True), (False, True)]


def step_with_a_frozen_branch(optimizer, parameters, step_gradients, receives):
    """A step in which only the parameters flagged in ``receives`` get a backward since ``zero_grad()``."""
    optimizer.zero_grad()
    for parameter, gradient, received in zip(parameters, step_gradients, receives):
        if received:
            parameter.grad += gradient
    optimizer.step()


@pytest.mark.parametrize("name, settings", [("Adam", {"lr": 0.01, "weight_decay": 0.1}),
                                            ("Adam", {"lr": 0.02, "amsgrad": True}),
                                            ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05}),
                                            ("SGD", {"lr": 0.1, "weight_decay": 0.05})])
def test_a_parameter_without_a_gradient_is_skipped_as_torch_skips_grad_none(torch, rng, name, settings):
    parameters = make_parameters(rng, numpy.float64)
    tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in parameters]
    optimizer = getattr(optim, name)(parameters, **settings)
    torch_optimizer = getattr(torch.optim, name)(tensors, **settings)
    for step, (step_gradients, receives) in enumerate(zip(gradient_sequence(rng, 5, numpy.float64),
                                                          RECEIVES_GRADIENT)):
        step_with_a_frozen_branch(optimizer, parameters, step_gradients, receives)
        torch_optimizer.zero_grad()  # set_to_none: a tensor that gets no gradient keeps grad None
        for tensor, gradient, received in zip(tensors, step_gradients, receives):
            if received:
                tensor.grad = torch.tensor(gradient)
        torch_optimizer.step()
        for parameter, tensor in zip(parameters, tensors):
            assert_close(parameter.data, tensor.detach().numpy(), rtol=1e-12, atol=1e-12,
                         name=f"{name} step {step + 1}")


def test_a_frozen_parameter_stays_exactly_put_and_its_adam_step_count_does_not_advance(rng):
    parameters = make_parameters(rng, numpy.float64)
    frozen = parameters[1].data.copy()
    optimizer = optim.Adam(parameters, lr=0.01, weight_decay=0.1)
    for step_gradients, receives in zip(gradient_sequence(rng, 3, numpy.float64), RECEIVES_GRADIENT):
        step_with_a_frozen_branch(optimizer, parameters, step_gradients, receives)
        if receives == (True, True):
            frozen = parameters[1].data.copy()
        numpy.testing.assert_array_equal(parameters[1].data, frozen)
    assert optimizer.state[0]["step"] == 3 and optimizer.state[1]["step"] == 1


def test_has_grad_follows_backward_assignment_in_place_writes_and_zero_grad():
    parameter = minidl.Parameter(numpy.zeros(3))
    assert not parameter.has_grad
    parameter.grad += numpy.zeros(3)  # a backward that adds a zero gradient still delivers one, as in PyTorch
    assert parameter.has_grad
    parameter.zero_grad()
    assert not parameter.has_grad
    parameter.grad[...] = 1.0
    assert parameter.has_grad


def test_parameter_groups_and_learning_rate_changes_match_torch(torch, rng):
    parameters = make_parameters(rng, numpy.float64)
    tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in parameters]
    optimizer = optim.SGD([{"params": parameters[:1]}, {"params": parameters[1:], "lr": 0.3}], lr=0.1, momentum=0.9)
    torch_optimizer = torch.optim.SGD([{"params": tensors[:1]}, {"params": tensors[1:], "lr": 0.3}], lr=0.1,
                                      momentum=0.9)
    for step, step_gradients in enumerate(gradient_sequence(rng, 4, numpy.float64)):
        if step == 2:
            optimizer.lr = 0.05
            for group in torch_optimizer.param_groups:
                group["lr"] = 0.05
        run(optimizer, parameters, [step_gradients])
        for tensor, gradient in zip(tensors, step_gradients):
            tensor.grad = torch.tensor(gradient)
        torch_optimizer.step()
    assert optimizer.lr == 0.05 and [g["lr"] for g in optimizer.param_groups] == [0.05, 0.05]
    for parameter, tensor in zip(parameters, tensors):
        assert_close(parameter.data, tensor.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, settings", [CONFIGS[4], CONFIGS[7]])
def test_resume_through_save_and_load_is_bit_identical(rng, tmp_path, name, settings):
    gradients = gradient_sequence(rng, 5, numpy.float32)
    initial = make_parameters(rng, numpy.float32)

    uninterrupted = [minidl.Parameter(p.data.copy()) for p in initial]
    run(getattr(optim, name)(uninterrupted, **settings), uninterrupted, gradients)

    first = [minidl.Parameter(p.data.copy()) for p in initial]
    optimizer = getattr(optim, name)(first, **settings)
    run(optimizer, first, gradients[:3])
    state = optimizer.state_dict()
    assert all(isinstance(v, (int, float, bool, numpy.ndarray)) for v in state.values())
    minidl.save(tmp_path / "checkpoint.npz", {**{f"param.{i}": p.data for i, p in enumerate(first)},
                                              **{f"optim.{key}": value for key, value in state.items()}})

    loaded = minidl.load(tmp_path / "checkpoint.npz")
    resumed = [minidl.Parameter(loaded[f"param.{i}"]) for i in range(len(SHAPES))]
    fresh = getattr(optim, name)(resumed, lr=123.0)
    fresh.load_state_dict({key[len("optim."):]: value for key, value in loaded.items() if key.startswith("optim.")})
    assert fresh.param_groups[0]["lr"] == settings["lr"]
    run(fresh, resumed, gradients[3:])
    for expected, actual in zip(uninterrupted, resumed):
        numpy.testing.assert_array_equal(actual.data, expected.data)


def test_state_dict_is_flat_and_documented(rng):
    parameters = make_parameters(rng, numpy.float32)
    optimizer = optim.Adam(parameters, lr=0.01)
    run(optimizer, parameters, gradient_sequence(rng, 2, numpy.float32))
    state = optimizer.state_dict()
    assert state["group.0.lr"] == 0.01 and state["state.1.step"] == 2
    numpy.testing.assert_array_equal(state["group.0.betas"], [0.9, 0.999])
    assert state["state.0.exp_avg"].shape == SHAPES[0] and state["state.1.exp_avg_sq"].dtype == numpy.float32
    state["state.0.exp_avg"][...] = 7
    assert not numpy.any(optimizer.state[0]["exp_avg"] == 7), "state_dict must hold copies"


def test_load_state_dict_rejects_bad_keys_and_shapes_before_changing_anything(rng):
    parameters = make_parameters(rng, numpy.float64)
    optimizer = optim.SGD(parameters, lr=0.1, momentum=0.9)
    run(optimizer, parameters, gradient_sequence(rng, 1, numpy.float64))
    good = optimizer.state_dict()
    target = optim.SGD(make_parameters(rng, numpy.float64), lr=0.5, momentum=0.9)
    missing = {k: v for k, v in good.items() if k != "group.0.momentum"}
    with pytest.raises(KeyError, match="SGD.load_state_dict: missing key 'group.0.momentum'"):
        target.load_state_dict(missing)
    with pytest.raises(KeyError, match="SGD.load_state_dict: unexpected key 'state.2.momentum_buffer'"):
        target.load_state_dict({**good, "state.2.momentum_buffer": numpy.zeros(5)})
    with pytest.raises(ValueError, match=r"'state.0.momentum_buffer' has shape \(4, 3\), the parameter has shape"):
        target.load_state_dict({**good, "state.0.momentum_buffer": numpy.zeros((4, 3))})
    with pytest.raises(KeyError, match=r"parameter 0 has state \['exp_avg'\]"):
        target.load_state_dict({**{k: v for k, v in good.items() if "momentum_buffer" not in k},
                                "state.0.exp_avg": numpy.zeros((3, 4))})
    with pytest.raises(TypeError, match=r"'state.1.momentum_buffer' has dtype complex128; expected real numbers"):
        target.load_state_dict({**good, "state.1.momentum_buffer": good["state.1.momentum_buffer"] * 1j})
    assert target.lr == 0.5 and target.state == {}


def test_updates_are_in_place_and_zero_grad_clears(rng):
    parameters = make_parameters(rng, numpy.float32)
    arrays = [p.data for p in parameters]
    optimizer = optim.Adam(parameters)
    run(optimizer, parameters, gradient_sequence(rng, 1, numpy.float32))
    assert all(p.data is array and p.data.dtype == numpy.float32 for p, array in zip(parameters, arrays))
    optimizer.zero_grad()
    assert all(not numpy.any(p.grad) for p in parameters)


def test_plain_update_functions(rng):
    param, grad = rng.standard_normal(4), rng.standard_normal(4)
    expected = param - 0.1 * (grad + 0.01 * param)
    assert optim.sgd_update(param, grad, None, lr=0.1, weight_decay=0.01) is None
    numpy.testing.assert_allclose(param, expected, rtol=1e-15)
    param, exp_avg, exp_avg_sq = rng.standard_normal(4), numpy.zeros(4), numpy.zeros(4)
    start = param.copy()
    optim.adam_update(param, grad, exp_avg, exp_avg_sq, 1, lr=0.1, beta1=0.9, beta2=0.999, eps=0.0)
    numpy.testing.assert_allclose(param, start - 0.1 * numpy.sign(grad), rtol=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD(p, lr=-0.1), "SGD: invalid lr -0.1"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "SGD: invalid momentum -0.5"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "SGD: invalid weight_decay -1"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "SGD: Nesterov momentum requires momentum > 0"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "and dampening = 0"),
    (lambda p: optim.Adam(p, lr=-1), "Adam: invalid lr -1"),
    (lambda p: optim.Adam(p, eps=-1e-8), "Adam: invalid eps"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), r"Adam: invalid betas \(0.9, 1.0\)"),
    (lambda p: optim.Adam(p, weight_decay=-0.1), "Adam: invalid weight_decay"),
    (lambda p: optim.Adam([]), "Adam: got an empty parameter list"),
    (lambda p: optim.Adam(p + p[:1]), "a parameter appears more than once"),
    (lambda p: optim.SGD([{"params": p, "momentun": 0.9}], lr=0.1), r"unknown hyperparameters \['momentun'\]"),
])
def test_bad_settings_are_rejected(rng, make, message):
    with pytest.raises(ValueError, match=message):
        make(make_parameters(rng, numpy.float64))


def test_non_parameters_and_negative_scheduled_rates_are_rejected(rng):
    with pytest.raises(TypeError, match="SGD: expected minidl.Parameter objects, got ndarray"):
        optim.SGD([numpy.zeros(3)], lr=0.1)
    optimizer = optim.SGD(make_parameters(rng, numpy.float64), lr=0.1)
    with pytest.raises(ValueError, match="SGD: invalid lr -1"):
        optimizer.lr = -1
    assert optimizer.lr == 0.1


@pytest.mark.gpu
def test_adam_on_gpu_matches_cpu(rng):
    cupy = gpu_or_skip()
    gradients = gradient_sequence(rng, 3, numpy.float32)
    cpu = make_parameters(rng, numpy.float32)
    gpu = [minidl.Parameter(cupy.asarray(p.data)) for p in cpu]
    run(optim.Adam(cpu, lr=0.01, weight_decay=0.1), cpu, gradients)
    gpu_optimizer = optim.Adam(gpu, lr=0.01, weight_decay=0.1)
    run(gpu_optimizer, gpu, [[cupy.asarray(g) for g in step] for step in gradients])
    assert isinstance(gpu_optimizer.state[0]["exp_avg"], cupy.ndarray)
    for on_cpu, on_gpu in zip(cpu, gpu):
        numpy.testing.assert_allclose(on_gpu.data.get(), on_cpu.data, rtol=1e-6, atol=1e-7)


def test_amsgrad_after_loading_a_state_saved_without_it_creates_its_maximum():
    parameter = minidl.Parameter(numpy.ones(3))
    plain = minidl.optim.Adam([parameter], lr=0.1)
    parameter.grad[...] = 1.0
    plain.step()
    amsgrad = minidl.optim.Adam([parameter], lr=0.1, amsgrad=True)
    state = plain.state_dict()
    state.update({key: value for key, value in amsgrad.state_dict().items() if key.startswith("group.")})
    amsgrad.load_state_dict(state)
    amsgrad.step()
    saved = amsgrad.state_dict()
    numpy.testing.assert_array_equal(saved["state.0.max_exp_avg_sq"], saved["state.0.exp_avg_sq"])
