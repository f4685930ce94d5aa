"""minidl.gradcheck: the checker itself, and the ``python -m minidl.gradcheck`` command line."""
import os
import re
import subprocess
import sys
import textwrap

import numpy
import pytest

from minidl import Parameter
from minidl.gradcheck import TOLERANCE, check_loss, check_module, numerical_gradient, relative_error
from minidl.gradcheck_cli import main as gradcheck_main, parse_arguments, parse_shape
from minidl.nn import Module

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER_LAYER = '''
"""A student's layer: y = tanh(x * gain[c]) + shift[c], per channel."""
import numpy
from minidl import Parameter
from minidl.nn import Module


class GainTanh(Module):
    def __init__(self, channels, gain=1.0, mistake=None):
        super().__init__()
        self.gain = Parameter(numpy.full((channels,), gain, dtype=numpy.float32))
        self.shift = Parameter(numpy.linspace(-1, 1, channels).astype(numpy.float32))
        self.mistake = mistake

    def forward(self, x):
        scaled = x * self.gain.data.reshape(1, -1, 1, 1)
        y = numpy.tanh(scaled)
        self.keep((x, y), y)
        return y + self.shift.data.reshape(1, -1, 1, 1)

    def backward(self, dy):
        x, y = self.take_cache(dy)
        dscaled = dy * (1 - y * y)
        if self.mistake == "gain":
            dscaled = dy * (1 - y)
        self.gain.grad += (dscaled * x).sum(axis=(0, 2, 3))
        self.shift.grad += dy.sum(axis=(0, 2, 3))
        return dscaled * self.gain.data.reshape(1, -1, 1, 1)
'''


class Affine(Module):
    """y = x * weight + bias (elementwise over the last axis); ``wrong`` breaks the weight gradient."""

    def __init__(self, size, wrong=False):
        super().__init__()
        self.weight = Parameter(numpy.linspace(0.5, 1.5, size))
        self.bias = Parameter(numpy.zeros(size))
        self.wrong = wrong

    def forward(self, x):
        self.keep(x, x)
        return x * self.weight.data + self.bias.data

    def backward(self, dy):
        x = self.take_cache(dy)
        self.weight.grad += (dy * x).sum(axis=0) * (2.0 if self.wrong else 1.0)
        self.bias.grad += dy.sum(axis=0)
        return dy * self.weight.data


class Product(Module):
    """y = a * b: two inputs, backward returns (da, db); ``swap`` returns them in the wrong order."""

    def __init__(self, swap=False):
        super().__init__()
        self.swap = swap

    def forward(self, a, b):
        self.keep((a, b), a)
        return a * b

    def backward(self, dy):
        a, b = self.take_cache(dy)
        return (dy * a, dy * b) if self.swap else (dy * b, dy * a)


class SquaredError:
    """value = sum((logits - target)^2) / 2, a minimal loss object; ``scale`` breaks its gradient."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def __call__(self, logits, target):
        self.cache = logits - target
        return float(0.5 * numpy.sum(self.cache ** 2))

    def backward(self):
        return self.scale * self.cache


def test_relative_error_definition():
    assert relative_error(numpy.array([1.0, 2.0]), numpy.array([1.0, 2.0])) == 0.0
    assert relative_error(numpy.array([1.0, -2.0]), numpy.array([1.0, 2.0])) == pytest.approx(4 / 4)
    assert relative_error(numpy.array([3.0, 0.0]), numpy.array([1.0, 0.0])) == pytest.approx(2 / 4)
    assert relative_error(numpy.zeros(3), numpy.full(3, 1e-12)) == pytest.approx(1e-4)


def test_numerical_gradient_of_a_cubic_and_the_array_is_restored():
    x = numpy.array([0.5, -1.0, 2.0])
    original = x.copy()
    gradient = numerical_gradient(lambda: float(numpy.sum(x ** 3)), x, numpy.arange(3))
    numpy.testing.assert_allclose(gradient, 3 * original ** 2, rtol=1e-8)
    numpy.testing.assert_array_equal(x, original)


def test_a_correct_module_passes_for_input_and_every_parameter(rng):
    module = Affine(4)
    errors = check_module(module, rng.standard_normal((3, 4)).astype(numpy.float32))
    assert list(errors) == ["input", "weight", "bias"]
    assert max(errors.values()) < TOLERANCE
    assert module.weight.data.dtype == numpy.float64


def test_a_wrong_backward_fails_and_names_the_tensor(rng):
    errors = check_module(Affine(4, wrong=True), rng.standard_normal((3, 4)))
    assert errors["input"] < TOLERANCE and errors["bias"] < TOLERANCE
    assert errors["weight"] > 0.1


def test_several_inputs_are_named_by_position(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    errors = check_module(Product(), (a, b), wrt=(0, 1))
    assert set(errors) == {"input0", "input1"} and max(errors.values()) < TOLERANCE
    swapped = check_module(Product(swap=True), (a, b), wrt=(0, 1))
    assert min(swapped.values()) > 0.1


def test_sampling_checks_only_max_elements_entries(rng):
    calls = []

    class Counting(Affine):
        def forward(self, x):
            calls.append(1)
            return super().forward(x)

    errors = check_module(Counting(50), rng.standard_normal((4, 50)), max_elements=5)
    assert max(errors.values()) < TOLERANCE
    assert len(calls) == 1 + 2 * 5 * 3  # one analytic pass, then two evaluations per sampled entry of 3 tensors


def test_a_gradient_of_the_wrong_shape_is_reported(rng):
    class Flattening(Affine):
        def backward(self, dy):
            return super().backward(dy).reshape(-1)

    with pytest.raises(ValueError, match=r"gradient of 'input' has shape \(12,\), the tensor has shape \(3, 4\)"):
        check_module(Flattening(4), rng.standard_normal((3, 4)))


def test_check_loss_passes_a_correct_loss_and_fails_a_wrong_one(rng):
    logits, target = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    assert check_loss(SquaredError(), logits, target) < TOLERANCE
    assert check_loss(SquaredError(scale=0.5), logits, target) > 0.1


@pytest.mark.parametrize("text, expected", [("", ((), {})), ("3, 4, kernel_size=3", ((3, 4), {"kernel_size": 3})),
                                            ("(2, 3), mode='bilinear', bias=False, eps=1e-5",
                                             (((2, 3),), {"mode": "bilinear", "bias": False, "eps": 1e-5}))])
def test_cli_argument_parsing(text, expected):
    assert parse_arguments(text) == expected


@pytest.mark.parametrize("text", ["3, size=open('x')", "3,,", "**options"])
def test_cli_refuses_non_literal_arguments(text):
    with pytest.raises(ValueError, match="--args"):
        parse_arguments(text)


def test_cli_shape_parsing():
    assert parse_shape("2,3,8,8") == (2, 3, 8, 8)
    assert parse_shape(" 2, 3 ") == parse_shape("2x3") == (2, 3)
    with pytest.raises(ValueError, match="--input-shape '2,a' must be positive integers"):
        parse_shape("2,a")


@pytest.mark.parametrize("text", ["2,x", "2,,3", "2,3,", ",", "", "2,0", "2,-3", "2,3_0", "2,1.5"])
def test_cli_shape_parsing_refuses_every_part_that_is_not_a_positive_integer(text):
    with pytest.raises(ValueError, match=f"--input-shape {re.escape(repr(text))} must be positive integers"):
        parse_shape(text)


@pytest.mark.parametrize("arguments, message", [
    (["--module", "m:C", "--input-shape", "2,x"], "--input-shape '2,x' must be positive integers"),
    (["--input-shape", "2,x"], "--input-shape '2,x' must be positive integers"),
    (["--input-shape", "2,3"], "--input-shape needs --module"),
    (["--max-elements", "5"], "--max-elements needs --module"),
    (["--args", "3"], "--args needs --module")])
def test_cli_refuses_a_bad_or_misplaced_option_before_running(arguments, message, capsys):
    with pytest.raises(SystemExit) as stop:
        gradcheck_main(arguments)
    captured = capsys.readouterr()
    assert stop.value.code == 2 and message in captured.err and captured.out == ""


def run_cli(*arguments, cwd=REPOSITORY):
    environment = dict(os.environ, PYTHONPATH=REPOSITORY + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "minidl.gradcheck", *arguments], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_cli_passes_a_correct_user_layer(tmp_path):
    (tmp_path / "student_layers.py").write_text(textwrap.dedent(USER_LAYER))
    result = run_cli("--module", "student_layers:GainTanh", "--args", "3, gain=0.7", "--input-shape", "2,3,4,5",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| GainTanh")]
    assert [row.split("|")[3].strip() for row in rows] == ["input", "gain", "shift"]
    assert all(row.split("|")[5].strip() == "pass" for row in rows)
    assert all(float(row.split("|")[4]) < TOLERANCE for row in rows)


def test_cli_fails_a_wrong_backward_and_names_the_tensor(tmp_path):
    (tmp_path / "student_layers.py").write_text(textwrap.dedent(USER_LAYER))
    result = run_cli("--module", "student_layers:GainTanh", "--args", "3, mistake='gain'", "--input-shape",
                     "2,3,4,5", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    failing = [line for line in result.stdout.splitlines() if "FAIL" in line and line.startswith("|")]
    assert [line.split("|")[3].strip() for line in failing] == ["input", "gain"]
    assert "FAILED" in result.stdout and "GainTanh" in result.stdout and "gain" in result.stdout.split("FAILED")[1]


def test_cli_accepts_a_file_path(tmp_path):
    (tmp_path / "layer_file.py").write_text(textwrap.dedent(USER_LAYER))
    result = run_cli("--module", f"{tmp_path / 'layer_file.py'}:GainTanh", "--args", "2", "--input-shape", "1,2,3,3")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("spec, message", [("no_such_package.layers:Thing", "cannot import 'no_such_package.layers'"),
                                           ("student_layers:Missing", "has no attribute 'Missing'"),
                                           ("student_layers", "must look like package.module:ClassName")])
def test_cli_import_errors_are_clear(spec, message, tmp_path):
    (tmp_path / "student_layers.py").write_text(textwrap.dedent(USER_LAYER))
    result = run_cli("--module", spec, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_cli_builtin_table_covers_every_builtin_layer_and_passes():
    result = run_cli()
    assert result.returncode == 0, result.stdout + result.stderr
    layers = {line.split("|")[1].strip() for line in result.stdout.splitlines()[2:] if line.startswith("|")}
    expected = {"Conv2d", "ConvTranspose2d", "ReLU", "Sigmoid", "MaxPool2d", "MaxUnpool2d", "Upsample",
                "BatchNorm2d", "BCEWithLogitsLoss", "DiceLoss", "CrossEntropyLoss", "BCEDiceLoss"}
    assert layers == expected, f"missing {expected - layers}, unexpected {layers - expected}"
    assert "FAIL" not in result.stdout and "all " in result.stdout and result.stderr == ""
