"""The assignment's public tests. ``python -m pytest -m conv2d`` runs one task's (markers: tests/conftest.py).

Every case runs part of minidl on small fixed inputs and compares each tensor it produces (the output, every
gradient, an optimizer's parameters after each step) with what the instructor's solution produced from the
same inputs; ``tests/assignment_data.npz`` holds both. A failure names the task and the tensor:

    conv2d: input gradient, weight gradient, bias gradient missing (NotImplementedError: conv2d: implement ...)
    relu: input gradient wrong (relative error 0.5)

The relative error here is max|yours - expected| / max|expected| over the tensor. The finite-difference tests
check the same backward passes once more with your own gradient checker (``minidl.gradcheck``, task
gradcheck); until that is written they are skipped and the value tests alone decide.

Each case reads its inputs through ``given(name, draw)``: here from the data file; ``draw(rng)`` is how the
instructor's ``tools/make_assignment.py`` drew them when it made this copy.
"""
import functools
import zlib
from collections import namedtuple
from pathlib import Path

import numpy
import pytest

from minidl import Parameter, gradcheck, losses, nn, optim
from minidl.functional.im2col import col2im, im2col
from minidl.gradcheck_all import signal_preserving_init
from models import SegNetSmall

DATA = Path(__file__).with_name("assignment_data.npz")
TOLERANCE = 1e-6  # of the value comparison
CHECKER_MISSING = "your gradient checker (task gradcheck) is not written yet"
SHOWN_NAMES = 4  # a failure lists at most this many tensor names

Case = namedtuple("Case", ["task", "name", "run", "finite_differences"])
Case.__doc__ = """``run(given, produced)`` puts each tensor it computes into ``produced`` as soon as it has it;
``finite_differences(given)`` (or None) returns {tensor: relative error} from your ``minidl.gradcheck``."""


def case_id(case):
    return f"{case.task}-{case.name}"


def seed_of(case):
    """The seed the instructor's inputs of ``case`` were drawn from."""
    return zlib.crc32(case_id(case).encode())


def normal(shape, scale=1.0, shift=0.0):
    return lambda rng: shift + scale * rng.standard_normal(shape)


def gradient_name(name):
    """check_module's tensor name -> the name this file uses: "input" -> "input gradient"."""
    return f"{name} gradient"


# ------------------------------------------------------------------------------------------ layers
def module_case(task, name, make, arguments, constants=(), after_forward=None, sample=None):
    """A layer on recorded arguments (``(name, draw)`` pairs, the first one differentiated) and ``constants``:
    its output(s), the tensors of ``after_forward`` ({name: function(module, inputs)}, read after the forward),
    and, for a recorded upstream gradient, the input gradient and each parameter's gradient. The finite
    differences check every entry, or ``sample`` entries of each tensor."""
    def build(given):
        module = make().double()
        module.load_state_dict({key: given(f"state {key}", lambda rng, value=value: value)
                                for key, value in module.state_dict().items()})
        return module, [given(argument, draw) for argument, draw in arguments] + list(constants)

    def run(given, produced):
        module, inputs = build(given)
        result = module(*inputs)
        outputs = result if isinstance(result, tuple) else (result,)
        for label, value in zip(("output", "indices"), outputs):
            produced[label] = value
        for label, read in (after_forward or {}).items():
            produced[label] = numpy.array(read(module, inputs))
        upstream = given("upstream gradient", lambda rng: rng.standard_normal(outputs[0].shape))
        produced["input gradient"] = module.backward(upstream)
        for parameter_name, parameter in module.named_parameters():
            produced[gradient_name(parameter_name)] = parameter.grad

    def finite_differences(given):
        module, inputs = build(given)
        errors = gradcheck.check_module(module, tuple(inputs), max_elements=sample)
        return {gradient_name(tensor): error for tensor, error in errors.items()}

    return Case(task, name, run, finite_differences)


RUNNING_STATISTICS = {"running mean": lambda module, inputs: module.running_mean,
                      "running variance": lambda module, inputs: module.running_var}
OVERWRITTEN_INPUT = {"input after the in-place forward": lambda module, inputs: inputs[0]}


def pooled_indices(shape, kernel):
    """Draws the int64 indices of MaxPool2d(kernel) on a tie-free input of ``shape``."""
    return lambda rng: nn.MaxPool2d(kernel, return_indices=True)(gradcheck.tie_free(shape, rng))[1]


def with_running_statistics(momentum=0.1, affine=True):
    """A BatchNorm2d(3) with running statistics and affine parameters away from their defaults."""
    def make():
        layer = nn.BatchNorm2d(3, momentum=momentum, affine=affine)
        layer.running_mean[...] = [0.5, -1.0, 0.2]
        layer.running_var[...] = [2.0, 0.5, 1.5]
        if affine:
            layer.weight.data[...] = [1.5, 0.7, -0.4]
            layer.bias.data[...] = [0.1, -0.3, 0.8]
        return layer
    return make


def tiny_segnet(upsample):
    """SegNetSmall with init_features=2, its weights scaled to keep gradients of order 1 (finite differences
    would drown gradients of 1e-20 in rounding)."""
    return lambda: signal_preserving_init(SegNetSmall(init_features=2, upsample=upsample),
                                          numpy.random.default_rng(0))


def away_from_zero(shape):
    """Draws entries with |x| in [0.1, 2]: no finite difference straddles ReLU's kink."""
    return lambda rng: gradcheck.away_from_zero(shape, rng)


def tie_free(shape):
    """Draws distinct entries: max-pooling has no ties to break."""
    return lambda rng: gradcheck.tie_free(shape, rng)


def huge_and_small(rng):
    """Entries for which exp(x) or exp(-x) overflows, and a few ordinary ones."""
    return rng.permutation(numpy.array([-1000.0, -700.0, -40.0, -1.0, 0.5, 40.0, 700.0, 1000.0]))


def _layer_cases():
    return [
        module_case("relu", "any-shape", nn.ReLU, [("input", away_from_zero((2, 3, 5)))]),
        module_case("relu", "inplace", lambda: nn.ReLU(inplace=True), [("input", away_from_zero((2, 3, 4, 4)))],
                    after_forward=OVERWRITTEN_INPUT),
        module_case("sigmoid", "normal", nn.Sigmoid, [("input", normal((2, 3, 4, 5), 3.0))]),
        module_case("sigmoid", "large-magnitudes", nn.Sigmoid, [("input", huge_and_small)]),
        module_case("conv2d", "k3-p1", lambda: nn.Conv2d(3, 4, 3, padding=1), [("input", normal((2, 3, 6, 5)))]),
        module_case("conv2d", "k3x2-stride2-padding1x0-dilation2-nobias",
                    lambda: nn.Conv2d(2, 3, (3, 2), stride=2, padding=(1, 0), dilation=2, bias=False),
                    [("input", normal((2, 2, 9, 8)))]),
        module_case("conv_transpose2d", "k3-stride2-padding1-output_padding1",
                    lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1),
                    [("input", normal((2, 3, 4, 3)))]),
        module_case("conv_transpose2d", "k2x3-stride1x2-nobias",
                    lambda: nn.ConvTranspose2d(2, 3, (2, 3), stride=(1, 2), bias=False),
                    [("input", normal((1, 2, 3, 4)))]),
        module_case("max_pool2d", "k2", lambda: nn.MaxPool2d(2, return_indices=True),
                    [("input", tie_free((2, 3, 6, 6)))]),
        module_case("max_pool2d", "k3-stride2-padding1", lambda: nn.MaxPool2d(3, 2, 1, return_indices=True),
                    [("input", tie_free((2, 2, 7, 5)))]),
        module_case("max_unpool2d", "k2", lambda: nn.MaxUnpool2d(2),
                    [("input", normal((2, 3, 3, 3))), ("indices", pooled_indices((2, 3, 6, 6), 2))]),
        module_case("max_unpool2d", "k2-output_size7", lambda: nn.MaxUnpool2d(2),
                    [("input", normal((1, 2, 3, 3))), ("indices", pooled_indices((1, 2, 7, 7), 2))],
                    constants=((7, 7),)),
        module_case("upsample_bilinear", "x2", lambda: nn.Upsample(scale_factor=2, mode="bilinear",
                                                                    align_corners=False),
                    [("input", normal((2, 2, 3, 4)))]),
        module_case("upsample_bilinear", "size5x7-align_corners",
                    lambda: nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True),
                    [("input", normal((1, 2, 3, 4)))]),
        module_case("upsample_bilinear", "size7x5", lambda: nn.Upsample(size=(7, 5), mode="bilinear"),
                    [("input", normal((1, 2, 3, 4)))]),
        module_case("upsample_bilinear", "nearest-size7x9", lambda: nn.Upsample(size=(7, 9), mode="nearest"),
                    [("input", normal((1, 2, 3, 4)))]),
        module_case("batch_norm", "train", with_running_statistics(),
                    [("input", normal((4, 3, 3, 3), 2.0, 1.0))], after_forward=RUNNING_STATISTICS),
        module_case("batch_norm", "train-momentum_none-no_affine", with_running_statistics(None, affine=False),
                    [("input", normal((3, 3, 2, 4), 1.5, -0.5))], after_forward=RUNNING_STATISTICS),
        module_case("batch_norm", "eval", lambda: with_running_statistics()().eval(),
                    [("input", normal((4, 3, 3, 3), 2.0, 1.0))]),
        module_case("segnet_backward", "bilinear", tiny_segnet("bilinear"), [("input", normal((1, 1, 16, 16)))],
                    sample=4),
        module_case("segnet_backward", "unpool", tiny_segnet("unpool"), [("input", normal((1, 1, 16, 16)))],
                    sample=4),
    ]


# ------------------------------------------------------------------------------------------ im2col
def im2col_case(name, shape, kernel, stride, padding, dilation):
    """im2col of a recorded input, and col2im of recorded columns, for one geometry."""
    def run(given, produced):
        x = given("input", normal(shape))
        produced["columns"] = im2col(x, kernel, stride, padding, dilation)
        columns = given("columns to add back", lambda rng: rng.standard_normal(produced["columns"].shape))
        produced["col2im output"] = col2im(columns, shape, stride, padding, dilation)

    return Case("im2col", name, run, None)


# ------------------------------------------------------------------------------------------ losses
def loss_case(task, name, make, draw_logits, draw_target):
    """A loss's value and d value / d logits."""
    def run(given, produced):
        loss = make()
        produced["value"] = numpy.asarray(loss(given("logits", draw_logits), given("target", draw_target)))
        produced["logits gradient"] = loss.backward()

    def finite_differences(given):
        return {"logits gradient": gradcheck.check_loss(make(), given("logits", draw_logits),
                                                        given("target", draw_target))}

    return Case(task, name, run, finite_differences)


def huge(shape):
    """Draws logits of magnitude 30 to 800, both signs: exp(|x|) overflows."""
    return lambda rng: rng.choice([-1.0, 1.0], shape) * rng.uniform(30.0, 800.0, shape)


def binary(shape):
    return lambda rng: (rng.random(shape) > 0.5).astype(numpy.float64)


def classes(shape, count, ignored=0.0):
    """Integer targets in [0, count), a share ``ignored`` of them -100 (CrossEntropyLoss's ignore_index)."""
    def draw(rng):
        target = rng.integers(0, count, shape)
        return numpy.where(rng.random(shape) < ignored, -100, target)
    return draw


def _loss_cases():
    shape = (2, 3, 4, 4)
    pos_weight = numpy.array([1.0, 2.5, 0.5]).reshape(3, 1, 1)
    class_weight = numpy.array([0.2, 1.0, 3.0])
    return [
        loss_case("bce", "mean", losses.BCEWithLogitsLoss, normal(shape, 2.0), binary(shape)),
        loss_case("bce", "sum-pos_weight-soft_targets", lambda: losses.BCEWithLogitsLoss("sum", pos_weight),
                  normal(shape, 2.0), lambda rng: rng.random(shape)),
        loss_case("bce", "large-logits", losses.BCEWithLogitsLoss, huge(shape), binary(shape)),
        loss_case("dice", "from_logits-mean", losses.DiceLoss, normal(shape, 2.0), binary(shape)),
        loss_case("dice", "probabilities-sum-smooth0.5", lambda: losses.DiceLoss(0.5, False, "sum"),
                  lambda rng: rng.uniform(0.05, 0.95, shape), lambda rng: rng.random(shape)),
        loss_case("cross_entropy", "mean", losses.CrossEntropyLoss, normal(shape, 2.0), classes((2, 4, 4), 3)),
        loss_case("cross_entropy", "weight-ignore_index", lambda: losses.CrossEntropyLoss(weight=class_weight),
                  normal(shape, 2.0), classes((2, 4, 4), 3, ignored=0.3)),
        loss_case("cross_entropy", "sum-ignore_index", lambda: losses.CrossEntropyLoss(reduction="sum"),
                  normal(shape, 2.0), classes((2, 4, 4), 3, ignored=0.3)),
    ]


# ------------------------------------------------------------------------------------------ optimizers
def optimizer_case(task, name, make, gradient_scales=(1.0, 1.0, 1.0)):
    """An optimizer's steps on two parameters with recorded gradients: each parameter after each step."""
    def run(given, produced):
        weight = Parameter(given("weight", normal((3, 4))))
        bias = Parameter(given("bias", normal((5,))))
        optimizer = make([weight, bias])
        for step, scale in enumerate(gradient_scales, start=1):
            weight.grad[...] = given(f"weight gradient {step}", normal((3, 4), scale))
            bias.grad[...] = given(f"bias gradient {step}", normal((5,), scale))
            optimizer.step()
            produced[f"weight after step {step}"] = weight.data.copy()
            produced[f"bias after step {step}"] = bias.data.copy()

    return Case(task, name, run, None)


def _optimizer_cases():
    shrinking = (3.0, 0.1, 1.0)  # the second moment falls after step 1: AMSGrad's maximum matters
    return [
        optimizer_case("sgd", "plain", lambda params: optim.SGD(params, lr=0.1)),
        optimizer_case("sgd", "momentum-dampening-weight_decay",
                       lambda params: optim.SGD(params, lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
        optimizer_case("sgd", "nesterov-weight_decay",
                       lambda params: optim.SGD(params, lr=0.05, momentum=0.8, weight_decay=0.1, nesterov=True)),
        optimizer_case("adam", "defaults", lambda params: optim.Adam(params, lr=0.01)),
        optimizer_case("adam", "weight_decay-eps0.01",
                       lambda params: optim.Adam(params, lr=0.02, eps=0.01, weight_decay=0.1), shrinking),
        optimizer_case("adam", "amsgrad", lambda params: optim.Adam(params, lr=0.02, betas=(0.8, 0.9),
                                                                     amsgrad=True), shrinking),
    ]


# ------------------------------------------------------------------------------------------ the checker
def _checker_cases():
    def relative_errors(given, produced):
        pairs = [(given("a", normal((3, 4))), given("a nearby", normal((3, 4), 1e-3))),
                 (given("b", normal((5,))), given("b scaled", normal((5,), 3.0))),
                 (numpy.zeros(4), numpy.zeros(4))]
        produced["relative_error values"] = numpy.array([
            gradcheck.relative_error(pairs[0][0], pairs[0][0] + pairs[0][1]),
            gradcheck.relative_error(pairs[1][0], pairs[1][1]),
            gradcheck.relative_error(pairs[1][0], -pairs[1][0]),
            gradcheck.relative_error(*pairs[2])])

    def numerical_gradients(given, produced):
        x = given("x", normal((3, 4)))
        weights = given("weights", normal((3, 4)))
        indices = numpy.array([0, 5, 7, 11])

        def scalar():
            return float(numpy.sum(numpy.sin(x) * weights))
        produced["numerical_gradient, default step"] = gradcheck.numerical_gradient(scalar, x, indices)
        produced["numerical_gradient, step 0.1"] = gradcheck.numerical_gradient(scalar, x, indices, step=0.1)
        produced["array after numerical_gradient (restored)"] = x

    return [Case("gradcheck", "relative_error", relative_errors, None),
            Case("gradcheck", "numerical_gradient", numerical_gradients, None)]


CASES = _checker_cases() + _layer_cases() + [
    im2col_case("k3-padding1", (2, 3, 5, 4), (3, 3), (1, 1), (1, 1), (1, 1)),
    im2col_case("k2x3-stride2x1-padding0x1-dilation1x2", (1, 2, 6, 7), (2, 3), (2, 1), (0, 1), (1, 2)),
] + _loss_cases() + _optimizer_cases()


def run_case(case, given):
    """({tensor: array} that ``case`` produced, None or why it stopped early), with overflow, invalid values
    and division by zero raised as errors (an overflow-free sigmoid never meets one)."""
    produced = {}
    try:
        with numpy.errstate(over="raise", invalid="raise", divide="raise"):
            case.run(given, produced)
    except NotImplementedError as error:
        return produced, f"missing (NotImplementedError: {error})"
    except Exception as error:  # a student's bug of any kind: reported against the tensors it stopped
        return produced, f"failed ({type(error).__name__}: {error})"
    return produced, None


# ------------------------------------------------------------------------------------------ the tests
@functools.lru_cache(maxsize=None)
def data():
    with numpy.load(DATA, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def recorded(case):
    """``given`` for ``case``: its inputs as the instructor recorded them (a fresh copy each time)."""
    prefix = f"{case_id(case)}/input/"
    return lambda name, draw: data()[prefix + name].copy()


def expected(case):
    """{tensor: value} the instructor's solution produced for ``case``, in the order it produced them."""
    prefix = f"{case_id(case)}/expected/"
    return {key[len(prefix):]: value for key, value in data().items() if key.startswith(prefix)}


def names_text(names):
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown if len(names) <= SHOWN_NAMES else f"{shown} and {len(names) - SHOWN_NAMES} more"


def difference(yours, wanted):
    """Why ``yours`` is not ``wanted``, or None when it matches within TOLERANCE."""
    yours = numpy.asarray(yours)
    if yours.shape != wanted.shape:
        return f"wrong (shape {yours.shape}, expected {wanted.shape})"
    yours, wanted = yours.astype(numpy.float64), wanted.astype(numpy.float64)
    scale = max(float(numpy.max(numpy.abs(wanted), initial=0.0)), 1e-8)
    error = float(numpy.max(numpy.abs(yours - wanted), initial=0.0)) / scale
    return None if error < TOLERANCE else f"wrong (relative error {error:.3g})"


def marked(cases):
    return [pytest.param(case, marks=getattr(pytest.mark, case.task), id=case_id(case)) for case in cases]


@pytest.mark.parametrize("case", marked(CASES))
def test_values(case):
    wanted = expected(case)
    if not wanted:
        pytest.fail(f"{case.task}: tests/assignment_data.npz holds no values for case {case_id(case)}; "
                    "it does not belong to this file", pytrace=False)
    produced, stopped = run_case(case, recorded(case))
    problems = [f"{case.task}: {name} {problem}" for name, value in produced.items() if name in wanted
                for problem in [difference(value, wanted[name])] if problem]
    not_reached = [name for name in wanted if name not in produced]
    if not_reached:
        problems.append(f"{case.task}: {names_text(not_reached)} {stopped or 'missing (never computed)'}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


class GainTanh(nn.Module):
    """y = tanh(x * gain[c]), per channel; ``broken`` drops tanh's derivative from the input gradient."""

    def __init__(self, broken=False):
        super().__init__()
        self.gain = Parameter(numpy.array([0.5, -1.2, 2.0]))
        self.broken = broken

    def forward(self, x):
        y = numpy.tanh(x * self.gain.data.reshape(1, -1, 1, 1))
        self.keep((x, y), y)
        return y

    def backward(self, dy):
        x, y = self.take_cache(dy)
        dscaled = dy * (1 - y * y)
        self.gain.grad += (dscaled * x).sum(axis=(0, 2, 3))
        return (dy if self.broken else dscaled) * self.gain.data.reshape(1, -1, 1, 1)


def checker_inputs():
    return numpy.random.default_rng(5).standard_normal((2, 3, 3, 3))


def attempt(function, *args):
    """(result, None), or (None, the exception ``function(*args)`` raised)."""
    try:
        return function(*args), None
    except Exception as error:  # reported by the caller, against the task and the tensors it concerns
        return None, error


@functools.lru_cache(maxsize=None)
def checker_missing():
    """Whether the gradient checker still raises NotImplementedError (task gradcheck not written yet)."""
    _, error = attempt(gradcheck.check_module, GainTanh(), checker_inputs())
    return isinstance(error, NotImplementedError)


@pytest.mark.gradcheck
def test_check_module_passes_a_correct_layer_and_flags_a_broken_one():
    verdicts, error = attempt(lambda: [gradcheck.check_module(GainTanh(broken), checker_inputs())
                                       for broken in (False, True)])
    if error is not None:
        how = "missing" if isinstance(error, NotImplementedError) else "failed"
        pytest.fail(f"gradcheck: check_module verdict {how} ({type(error).__name__}: {error})", pytrace=False)
    correct, broken = verdicts
    problems = [f"gradcheck: check_module verdict wrong (a correct layer's {tensor} gradient gets relative "
                f"error {value:.3g})" for tensor, value in correct.items() if not value < gradcheck.TOLERANCE]
    if not broken.get("input", 0.0) > 1e-2:
        problems.append(f"gradcheck: check_module verdict wrong (a broken input gradient passes with relative "
                        f"error {broken.get('input')})")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.mark.parametrize("case", marked(case for case in CASES if case.finite_differences))
def test_finite_differences(case):
    if checker_missing():
        pytest.skip(CHECKER_MISSING)
    gradients = [name for name in expected(case) if name.endswith("gradient")]
    errors, error = attempt(case.finite_differences, recorded(case))
    if error is not None:
        how = "missing" if isinstance(error, NotImplementedError) else "failed against finite differences"
        pytest.fail(f"{case.task}: {names_text(gradients)} {how} ({type(error).__name__}: {error})", pytrace=False)
    wrong = [f"{case.task}: {tensor} wrong (relative error {value:.3g} against finite differences, by your "
             f"minidl.gradcheck)" for tensor, value in errors.items() if not value < gradcheck.TOLERANCE]
    if wrong:
        pytest.fail("; ".join(wrong), pytrace=False)
