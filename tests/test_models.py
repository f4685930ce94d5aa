"""The model families: parameter counts, whole-model finite differences (float64) and PyTorch parity."""
import numpy
import pytest
from models.torch_equivalents import torch_models
from helpers import assert_close

import minidl
import models
from minidl.gradcheck import STEP, TOLERANCE, numerical_gradient, relative_error
from minidl.gradcheck_all import signal_preserving_init  # He-normal weights: tiny models keep O(1) gradients
from models.fcn_skip import bilinear_kernel
from models.vgg import ConvBlock

SEGNET_WIDTHS = (3, 4, 4, 5, 5)
FCN_WIDTHS = (4, 4, 6, 6, 8)
SKIP_WIDTHS = (3, 4, 4, 5, 5)

# name: (tiny minidl model, its PyTorch equivalent from the torch_models namespace, gradcheck input, parity input)
TINY_MODELS = {
    "SegNetSmall-bilinear": (lambda: models.SegNetSmall(2, 3, init_features=2, upsample="bilinear"),
                             lambda t: t.SegNetSmall(2, 3, 2, "bilinear"), (2, 2, 16, 32), (2, 2, 32, 48)),
    "SegNetSmall-unpool": (lambda: models.SegNetSmall(2, 3, init_features=2, upsample="unpool"),
                           lambda t: t.SegNetSmall(2, 3, 2, "unpool"), (2, 2, 17, 19), (2, 2, 37, 45)),
    "SegNet": (lambda: models.SegNet(2, 3, widths=SEGNET_WIDTHS),
               lambda t: t.SegNet(2, 3, SEGNET_WIDTHS, (2, 2, 3, 3, 3)), (2, 2, 33, 35), (2, 2, 37, 45)),
    "SegNetBasic": (lambda: models.SegNetBasic(2, 3, width=3),
                    lambda t: t.SegNetBasic(2, 3, 3), (2, 2, 17, 19), (2, 2, 37, 45)),
    "FCN": (lambda: models.FCN(2, 3, widths=FCN_WIDTHS),
            lambda t: t.FCN(2, 3, FCN_WIDTHS), (2, 2, 64, 64), (2, 2, 32, 64)),
    "FCN32s": (lambda: models.FCN32s(2, 3, fc_channels=6, widths=SKIP_WIDTHS),
               lambda t: t.FCNSkip(32, 2, 3, 6, SKIP_WIDTHS), (2, 2, 32, 32), (2, 2, 64, 32)),
    "FCN16s": (lambda: models.FCN16s(2, 3, fc_channels=6, widths=SKIP_WIDTHS),
               lambda t: t.FCNSkip(16, 2, 3, 6, SKIP_WIDTHS), (2, 2, 32, 32), (2, 2, 64, 32)),
    "FCN8s": (lambda: models.FCN8s(2, 3, fc_channels=6, widths=SKIP_WIDTHS),
              lambda t: t.FCNSkip(8, 2, 3, 6, SKIP_WIDTHS), (2, 2, 32, 32), (2, 2, 64, 32)),
}


def count(model):
    return sum(p.size for p in model.parameters())


# ---------------------------------------------------------------- parameter counts
def test_segnet_small_has_784385_parameters_in_both_modes():
    assert count(models.SegNetSmall()) == 784_385
    assert count(models.SegNetSmall(upsample="unpool")) == 784_385


def test_fcn_has_13334050_parameters():
    assert count(models.FCN()) == 13_334_050


@pytest.mark.parametrize("name, build, build_torch", [
    ("SegNet", lambda: models.SegNet(), lambda t: t.SegNet(1, 1, (64, 128, 256, 512, 512), (2, 2, 3, 3, 3))),
    ("SegNetBasic", lambda: models.SegNetBasic(), lambda t: t.SegNetBasic(1, 1, 64)),
    ("FCN32s", lambda: models.FCN32s(), lambda t: t.FCNSkip(32, 3, 21, 4096, (64, 128, 256, 512, 512))),
    ("FCN16s", lambda: models.FCN16s(), lambda t: t.FCNSkip(16, 3, 21, 4096, (64, 128, 256, 512, 512))),
    ("FCN8s", lambda: models.FCN8s(), lambda t: t.FCNSkip(8, 3, 21, 4096, (64, 128, 256, 512, 512))),
])
def test_full_size_parameter_counts_match_pytorch(torch, name, build, build_torch):
    with torch.device("meta"):
        reference = build_torch(torch_models(torch))
    expected = {key: tuple(p.shape) for key, p in reference.named_parameters()}
    model = build()
    assert {key: tuple(p.shape) for key, p in model.named_parameters()} == expected
    assert count(model) == sum(p.numel() for p in reference.parameters())


# ---------------------------------------------------------------- shapes and errors
@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_logits_have_the_input_size_and_dtype(name):
    build, _, _, shape = TINY_MODELS[name]
    x = numpy.random.default_rng(0).standard_normal(shape).astype(numpy.float32)
    model = build()
    logits = model(x)
    assert logits.shape == (shape[0], 3) + shape[2:]
    assert logits.dtype == numpy.float32
    dx = model.backward(numpy.ones_like(logits))
    assert dx.shape == shape and dx.dtype == numpy.float32


@pytest.mark.parametrize("build, shape, message", [
    (lambda: models.FCN(), (1, 3, 48, 64), "FCN: input height and width must be multiples of 32"),
    (lambda: models.FCN8s(fc_channels=8), (1, 3, 64, 40), "FCN8s: input height and width must be multiples of 32"),
    (lambda: models.FCN32s(fc_channels=8), (1, 3, 96, 33), "FCN32s: input height and width must be multiples of 32"),
    (lambda: models.SegNetSmall(), (1, 1, 40, 64), "SegNetSmall: input height and width must be multiples of 16"),
    (lambda: models.SegNetSmall(upsample="unpool"), (1, 1, 15, 64), "must be at least 16"),
    (lambda: models.SegNet(widths=SEGNET_WIDTHS), (1, 1, 31, 64), "SegNet: input height and width must be at least"),
    (lambda: models.SegNetSmall(), (1, 3, 32, 32), "SegNetSmall: expected 1 input channels"),
    (lambda: models.SegNetBasic(width=4), (1, 1, 32), "SegNetBasic: expected a 4-D input"),
])
def test_bad_input_raises_naming_the_model_and_shape(build, shape, message):
    x = numpy.zeros(shape, dtype=numpy.float32)
    with pytest.raises(ValueError, match=message) as error:
        build()(x)
    assert str(tuple(shape)) in str(error.value)


def test_segnet_small_rejects_an_unknown_upsample_mode():
    with pytest.raises(ValueError, match="SegNetSmall: upsample must be one of"):
        models.SegNetSmall(upsample="nearest")


# ---------------------------------------------------------------- finite differences
# Batch norm after every conv keeps the SegNets' signal at PyTorch's default init, but train-mode batch
# norm over few values per channel makes them steep (gradients ~1e3): a 1e-6 step can cross a ReLU kink.
SEGNETS_WITH_BATCH_NORM = {"SegNet", "SegNetBasic"}
# Random entries checked per tensor (every entry of a smaller one), plus its largest entry, one random direction
# through all entries and, for the input, the corners of two planes. Each costs two forward passes, and the
# models have 20 to 100 parameter tensors, so parameters get fewer single entries than the input.
INPUT_SAMPLES = 12
PARAMETER_SAMPLES = 3


def corner_indices(shape):
    """Flat indices of the four corner pixels of the first and of the last (n, c) plane of (N, C, H, W).

    Borders are where padding, cropping and window-edge bugs live, and random draws rarely land there.
    """
    n, c, h, w = shape
    return [numpy.ravel_multi_index((i, j, row, column), shape)
            for i, j in {(0, 0), (n - 1, c - 1)} for row in (0, h - 1) for column in (0, w - 1)]


def directional_error(scalar, array, analytic, rng, step):
    """One central difference along a random unit direction v through every entry of ``array``, against
    <analytic, v>: it sees a wrong entry the per-entry sample missed, at the cost of one sampled entry.

    The error is relative to sum |analytic * v|, the scale of the terms of <analytic, v>.
    """
    direction = rng.standard_normal(array.shape)
    direction /= numpy.linalg.norm(direction)
    original = array.copy()
    array += step * direction
    plus = scalar()
    array[...] = original - step * direction
    minus = scalar()
    array[...] = original
    numeric = (plus - minus) / (2 * step)
    expected = float(numpy.sum(analytic * direction))
    scale = float(numpy.sum(numpy.abs(analytic * direction))) + abs(numeric)
    return abs(expected - numeric) / max(1e-8, scale)


def gradient_errors(model, x, step=STEP, seed=0):
    """Relative errors of the input and every parameter gradient against float64 central differences.

    The check of ``minidl.gradcheck.check_module`` (vector-Jacobian form, its step and error measure),
    except that each tensor's sample always holds its largest analytic entry, so the error is relative
    to the tensor's gradient scale, not to whichever small entries a random sample happens to draw,
    and the input's sample also holds the four corners of its first and last (n, c) planes. Each tensor
    whose sample is not all of it also gets one directional difference through all of its entries
    (``directional_error``).
    Returns ({name: error}, {name: analytic gradient}).
    """
    rng = numpy.random.default_rng(seed)
    model.double()
    x = numpy.array(x, dtype=numpy.float64)
    upstream = rng.standard_normal(model(x).shape)
    model.zero_grad()
    tensors = [("input", x, model.backward(upstream))]
    tensors += [(name, p.data, p.grad) for name, p in model.named_parameters()]

    def scalar():
        with minidl.no_grad():
            return float(numpy.sum(model(x) * upstream))

    errors = {}
    for name, array, analytic in tensors:
        flat = analytic.reshape(-1)
        samples = INPUT_SAMPLES if name == "input" else PARAMETER_SAMPLES
        drawn = rng.choice(flat.size, min(samples, flat.size), replace=False)
        indices = numpy.unique(numpy.append(drawn, numpy.argmax(numpy.abs(flat))))
        if name == "input":
            indices = numpy.union1d(indices, corner_indices(array.shape))
        entrywise = relative_error(flat[indices], numerical_gradient(scalar, array, indices, step))
        covered = len(indices) == flat.size  # a small tensor's every entry is already checked
        errors[name] = entrywise if covered else max(entrywise, directional_error(scalar, array, analytic, rng, step))
    return errors, {name: analytic for name, _, analytic in tensors}


def biases_cancelled_by_batch_norm(model):
    """Names of conv biases followed directly by a batch norm: their exact gradient is 0 in training mode."""
    return {f"{name}.conv.bias" for name, module in model.named_modules()
            if isinstance(module, ConvBlock) and module.bn is not None}


@pytest.mark.engines("reference")  # the fast engine is checked against it in test_engines.py
@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_whole_model_gradients_match_finite_differences(name):
    build, _, shape, _ = TINY_MODELS[name]
    rng = numpy.random.default_rng(1)
    model = build().train()
    if name not in SEGNETS_WITH_BATCH_NORM:
        signal_preserving_init(model, rng)
    step = 1e-7 if name in SEGNETS_WITH_BATCH_NORM else STEP
    errors, analytic = gradient_errors(model, rng.standard_normal(shape), step=step)
    assert set(errors) == {"input"} | {key for key, _ in model.named_parameters()}
    for key in biases_cancelled_by_batch_norm(model):
        weight_scale = numpy.max(numpy.abs(analytic[key.replace(".bias", ".weight")]))
        assert numpy.max(numpy.abs(analytic[key])) < 1e-9 * weight_scale, key
        del errors[key]
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOLERANCE, f"{name}: {worst} has relative error {errors[worst]:.2e}"


# ---------------------------------------------------------------- PyTorch parity
def _assert_matches(actual, expected, name, scale):
    assert_close(actual, expected.detach().numpy(), rtol=1e-7, atol=1e-10 * scale, name=name)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_pytorch_parity_of_logits_and_every_gradient(torch, name):
    build, build_torch, _, shape = TINY_MODELS[name]
    rng = numpy.random.default_rng(2)
    model = signal_preserving_init(build(), rng).double().train()
    reference = build_torch(torch_models(torch)).double().train()
    reference.load_state_dict({key: torch.from_numpy(value) for key, value in model.state_dict().items()})
    x = rng.standard_normal(shape)
    logits = model(x)
    upstream = rng.standard_normal(logits.shape)
    dx = model.backward(upstream)

    x_torch = torch.tensor(x, requires_grad=True)
    logits_torch = reference(x_torch)
    logits_torch.backward(torch.tensor(upstream))
    _assert_matches(logits, logits_torch, f"{name} logits", numpy.max(numpy.abs(logits)))
    _assert_matches(dx, x_torch.grad, f"{name} input gradient", numpy.max(numpy.abs(dx)))
    assert numpy.max(numpy.abs(dx)) > 1e-6, "the input gradient vanished: the comparison would be empty"
    torch_parameters = dict(reference.named_parameters())
    assert set(torch_parameters) == {key for key, _ in model.named_parameters()}
    grad_scale = max(numpy.max(numpy.abs(p.grad)) for p in model.parameters())
    for key, parameter in model.named_parameters():
        _assert_matches(parameter.grad, torch_parameters[key].grad, f"{name} {key}.grad", grad_scale)


def test_backward_adds_into_parameter_gradients():
    model = models.SegNetSmall(1, 1, init_features=2, upsample="unpool").double()
    x = numpy.random.default_rng(3).standard_normal((1, 1, 16, 16))
    upstream = numpy.random.default_rng(4).standard_normal((1, 1, 16, 16))
    model(x)
    model.backward(upstream)
    once = model.enc1.conv.weight.grad.copy()
    model(x)
    model.backward(upstream)
    numpy.testing.assert_allclose(model.enc1.conv.weight.grad, 2 * once, rtol=1e-12)


# ---------------------------------------------------------------- bilinear upscore init
def test_upscore_starts_as_bilinear_interpolation():
    """A linear ramp upsampled by the initial upscore8 is the ramp sampled at the new pixel centres."""
    model = models.FCN8s(1, 2, fc_channels=4, widths=SKIP_WIDTHS)
    numpy.testing.assert_array_equal(model.upscore8.weight.data, bilinear_kernel(2, 16))
    ramp = numpy.tile(numpy.arange(4, dtype=numpy.float32), (1, 2, 4, 1))      # x[..., i, j] = j
    up = model.upscore8(ramp)
    expected = (numpy.arange(32) + 0.5) / 8 - 0.5                             # source coordinate of output j
    interior = slice(8, 24)
    numpy.testing.assert_allclose(up[0, 0, interior, interior], numpy.tile(expected[interior], (16, 1)), atol=1e-6)
    assert numpy.all(model.upscore8.weight.data[0, 1] == 0)
