"""BatchNorm2d: finite differences, PyTorch parity (running statistics too), state_dict, bad input."""
import numpy
import pytest
from helpers import assert_close, copy_weights

import minidl
from minidl.engines import op
from minidl.gradcheck import TOLERANCE, check_module

OPTIONS = [(affine, track) for affine in (True, False) for track in (True, False)]


def engine_pair():
    """The engine's batch-norm forward and backward."""
    return op("batchnorm", "batch_norm2d_forward"), op("batchnorm", "batch_norm2d_backward")


def _randomised(layer, rng):
    """Non-trivial weight, bias and running statistics, so eval-mode checks mean something."""
    if layer.affine:
        layer.weight.data[...] = rng.uniform(0.5, 1.5, layer.num_features)
        layer.bias.data[...] = rng.uniform(-1, 1, layer.num_features)
    if layer.track_running_stats:
        layer.running_mean[...] = rng.uniform(-1, 1, layer.num_features)
        layer.running_var[...] = rng.uniform(0.5, 2, layer.num_features)
    return layer


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine, track", OPTIONS)
def test_gradcheck(training, affine, track, rng):
    layer = minidl.nn.BatchNorm2d(3, affine=affine, track_running_stats=track).double()
    _randomised(layer, rng).train(training)
    errors = check_module(layer, rng.standard_normal((2, 3, 3, 4)) * 2 + 1)
    assert set(errors) == ({"input", "weight", "bias"} if affine else {"input"})
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("dtype, rtol", [(numpy.float64, 1e-10), (numpy.float32, 2e-5)])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine, track", OPTIONS)
def test_matches_torch_over_training_steps_then_eval(torch, affine, track, momentum, dtype, rtol, rng):
    torch_layer = torch.nn.BatchNorm2d(4, affine=affine, track_running_stats=track, momentum=momentum)
    torch_layer = torch_layer.to(torch.float64 if dtype == numpy.float64 else torch.float32)
    if affine:
        with torch.no_grad():
            torch_layer.weight.uniform_(0.5, 1.5)
            torch_layer.bias.uniform_(-1, 1)
    layer = minidl.nn.BatchNorm2d(4, affine=affine, track_running_stats=track, momentum=momentum).to(dtype=dtype)
    copy_weights(torch_layer, layer)
    for step in range(4):
        if step == 3:
            torch_layer.eval()
            layer.eval()
        x = (rng.standard_normal((3, 4, 5, 6)) * rng.uniform(0.5, 3, (1, 4, 1, 1)) + 2).astype(dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        x_torch = torch.tensor(x, requires_grad=True)
        y_torch = torch_layer(x_torch)
        y_torch.backward(torch.tensor(dy))
        layer.zero_grad()
        y = layer(x)
        dx = layer.backward(dy)
        assert y.dtype == dtype and dx.dtype == dtype
        assert_close(y, y_torch.detach().numpy(), rtol=rtol, atol=rtol, name=f"y, step {step}")
        assert_close(dx, x_torch.grad.numpy(), rtol=rtol, atol=rtol, name=f"dx, step {step}")
        if affine:
            for name, parameter in layer.named_parameters():
                torch_parameter = getattr(torch_layer, name)
                assert_close(parameter.grad, torch_parameter.grad.numpy(), rtol=rtol, atol=rtol, name=f"d{name}")
                torch_parameter.grad = None
        state, torch_state = layer.state_dict(), torch_layer.state_dict()
        assert list(state) == list(torch_state)
        for key, value in torch_state.items():
            assert state[key].dtype == value.numpy().dtype
            assert_close(state[key], value.numpy(), rtol=rtol, atol=rtol, name=f"{key}, step {step}")


def test_state_dict_keys_and_buffers_match_torch(torch):
    for affine, track in OPTIONS:
        torch_layer = torch.nn.BatchNorm2d(5, affine=affine, track_running_stats=track)
        layer = minidl.nn.BatchNorm2d(5, affine=affine, track_running_stats=track)
        assert list(layer.state_dict()) == list(torch_layer.state_dict())
        assert [name for name, _ in layer.named_parameters()] == [n for n, _ in torch_layer.named_parameters()]
    layer = minidl.nn.BatchNorm2d(5).double()
    assert layer.num_batches_tracked.dtype == numpy.int64 and layer.num_batches_tracked.shape == ()
    assert layer.running_var.dtype == numpy.float64


def test_running_statistics_update_inside_no_grad_and_nothing_is_kept(rng):
    layer = minidl.nn.BatchNorm2d(2).double()
    x = rng.standard_normal((4, 2, 3, 3)) + 5
    with minidl.no_grad():
        layer(x)
    expected_mean = 0.1 * x.mean(axis=(0, 2, 3))
    expected_var = 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1)
    numpy.testing.assert_allclose(layer.running_mean, expected_mean, rtol=1e-12)
    numpy.testing.assert_allclose(layer.running_var, expected_var, rtol=1e-12)
    assert int(layer.num_batches_tracked) == 1
    with pytest.raises(RuntimeError, match="no forward pass"):
        layer.backward(numpy.ones_like(x))


def test_eval_mode_leaves_running_statistics_alone(rng):
    layer = _randomised(minidl.nn.BatchNorm2d(3), rng).eval()
    before = layer.state_dict()
    layer(rng.standard_normal((2, 3, 4, 4)).astype(numpy.float32))
    for key, value in layer.state_dict().items():
        numpy.testing.assert_array_equal(value, before[key])


def test_float32_statistics_survive_a_large_mean(rng):
    # a one-pass E[x^2] - E[x]^2 loses the variance (0.01) in float32 rounding of E[x^2] (~1e6 * 6e-8)
    x = (rng.standard_normal((2, 3, 16, 16)) * 0.1 + 1000.0).astype(numpy.float32)
    layer = _randomised(minidl.nn.BatchNorm2d(3, track_running_stats=False), rng)
    y = layer(x)
    # the reference is written out in float64 numpy, not minidl's own layer: biased variance over N, H, W
    x64 = x.astype(numpy.float64)
    mean = x64.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    weight = layer.weight.data.astype(numpy.float64).reshape(1, 3, 1, 1)
    bias = layer.bias.data.astype(numpy.float64).reshape(1, 3, 1, 1)
    reference = (x64 - mean) / numpy.sqrt(var + layer.eps) * weight + bias
    assert layer.eps == 1e-5 and y.dtype == numpy.float32
    assert_close(y, reference, rtol=5e-3, atol=5e-3, name="y")


@pytest.mark.parametrize("layer, x, error, message", [
    (minidl.nn.BatchNorm2d(3), numpy.zeros((2, 3, 4), numpy.float32), ValueError, r"4-D.*\(2, 3, 4\)"),
    (minidl.nn.BatchNorm2d(3), numpy.zeros((2, 4, 4, 4), numpy.float32), ValueError,
     r"expected 3 channels, got input of shape \(2, 4, 4, 4\)"),
    (minidl.nn.BatchNorm2d(3), numpy.zeros((2, 3, 4, 4), numpy.int64), TypeError, "floating"),
    (minidl.nn.BatchNorm2d(3), numpy.zeros((2, 3, 4, 4), numpy.float64), TypeError, "float64.*float32"),
    (minidl.nn.BatchNorm2d(3), numpy.zeros((1, 3, 1, 1), numpy.float32), ValueError, "more than 1 value"),
])
def test_rejects_bad_input(layer, x, error, message):
    with pytest.raises(error, match=message):
        layer(x)


def test_functional_backward_returns_the_bias_gradient_without_a_weight():
    batch_norm2d_forward, batch_norm2d_backward = engine_pair()
    rng = numpy.random.default_rng(5)
    x, bias = rng.standard_normal((3, 2, 4, 4)), rng.standard_normal(2)
    _, cache = batch_norm2d_forward(x, None, None, None, bias, True, 0.1, 1e-5)
    dy = rng.standard_normal(x.shape)
    _, dweight, dbias = batch_norm2d_backward(dy, cache)
    assert dweight is None
    numpy.testing.assert_allclose(dbias, dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_empty_batch_in_eval_mode_passes_through_and_training_refuses_it():
    layer = minidl.nn.BatchNorm2d(2).eval()
    y = layer(numpy.zeros((0, 2, 6, 6), numpy.float32))
    assert y.shape == (0, 2, 6, 6)
    assert layer.backward(y).shape == (0, 2, 6, 6)
    numpy.testing.assert_array_equal(layer.weight.grad, [0, 0])
    with pytest.raises(ValueError, match=r"BatchNorm2d: an empty batch has no batch statistics \(training mode\), "
                                         r"got input of shape \(0, 2, 6, 6\)"):
        minidl.nn.BatchNorm2d(2)(numpy.zeros((0, 2, 6, 6), numpy.float32))


@pytest.mark.engines("fast")
@pytest.mark.parametrize("training", [True, False])
def test_channel_blocks_give_the_same_result_as_one_block(training, rng, monkeypatch):
    from minidl.fast import batchnorm
    from minidl.fast.workspace import workspace
    layer = _randomised(minidl.nn.BatchNorm2d(5).double(), rng).train(training)
    x = (rng.standard_normal((7, 6, 5, 3)) * 3 + 2).transpose(3, 2, 1, 0)     # (3, 5, 6, 7), not contiguous
    dy = rng.standard_normal((3, 5, 7, 6)).transpose(0, 1, 3, 2)
    state = {name: value.copy() for name, value in layer.state_dict().items()}
    whole = (layer(x), layer.backward(dy), layer.weight.grad.copy(), layer.bias.grad.copy(), layer.running_var.copy())
    assert batchnorm.channel_blocks(x) == [slice(0, 5)]
    monkeypatch.setattr(batchnorm, "BLOCK_BYTES", 2 * 6 * 7 * 8 * 3)   # two channels of all three samples
    assert batchnorm.channel_blocks(x) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    layer.load_state_dict(state)
    layer.zero_grad()
    y = layer(x)
    blocked = (y, layer.backward(dy), layer.weight.grad, layer.bias.grad, layer.running_var)
    for name, a, b in zip(("y", "dx", "dweight", "dbias", "running_var"), whole, blocked):
        assert_close(b, a, rtol=1e-13, atol=1e-13, name=name)
    buffer = workspace.take("batchnorm.centered", (x.size,), x.dtype, x)   # the whole buffer, as one block used it
    assert not numpy.shares_memory(y, buffer) and not numpy.shares_memory(blocked[1], buffer)


@pytest.mark.engines("fast")

def test_gradcheck_and_torch_parity_one_channel_a_block(torch, rng, monkeypatch):
    from minidl.fast import batchnorm
    monkeypatch.setattr(batchnorm, "BLOCK_BYTES", 1)
    x = rng.standard_normal((2, 3, 3, 4)) * 2 + 1
    assert len(batchnorm.channel_blocks(x)) == 3
    errors = check_module(_randomised(minidl.nn.BatchNorm2d(3).double(), rng), x)
    assert max(errors.values()) < TOLERANCE, errors
    torch_layer = torch.nn.BatchNorm2d(3).double()
    with torch.no_grad():
        torch_layer.weight.uniform_(0.5, 1.5)
        torch_layer.bias.uniform_(-1, 1)
    layer = minidl.nn.BatchNorm2d(3).double()
    copy_weights(torch_layer, layer)
    dy = rng.standard_normal(x.shape)
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = torch_layer(x_torch)
    y_torch.backward(torch.tensor(dy))
    assert_close(layer(x), y_torch.detach().numpy(), rtol=1e-10, atol=1e-12, name="y")
    assert_close(layer.backward(dy), x_torch.grad.numpy(), rtol=1e-10, atol=1e-12, name="dx")
    assert_close(layer.weight.grad, torch_layer.weight.grad.numpy(), rtol=1e-10, atol=1e-12, name="dweight")
    assert_close(layer.bias.grad, torch_layer.bias.grad.numpy(), rtol=1e-10, atol=1e-12, name="dbias")
    assert_close(layer.running_var, torch_layer.running_var.numpy(), rtol=1e-12, name="running_var")


def test_eval_backward_uses_the_running_mean_of_its_forward(rng):
    batch_norm2d_forward, batch_norm2d_backward = engine_pair()
    x, dy = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    running_mean, running_var, weight = rng.standard_normal(3), rng.uniform(0.5, 2, 3), rng.uniform(0.5, 1.5, 3)
    _, cache = batch_norm2d_forward(x, running_mean, running_var, weight, None, False, 0.1, 1e-5)
    expected = ((dy * (x - running_mean.reshape(1, 3, 1, 1))).sum(axis=(0, 2, 3))
                / numpy.sqrt(running_var + 1e-5))
    running_mean += 5.0    # a later training step moves the running statistics before this backward
    _, dweight, _ = batch_norm2d_backward(dy, cache)
    assert_close(dweight, expected, rtol=1e-12, atol=1e-12, name="dweight")
