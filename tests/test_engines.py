"""The engine switch, and the fast engine against the reference on many geometries.

Every layer runs forward and backward once per engine on the same input, weights and upstream gradient;
in float64 the output, the input gradient and every parameter gradient agree to 1e-12 relative
(max |fast - reference| / max |reference|), on the CPU and, marked ``gpu``, on CuPy.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
from helpers import gpu_or_skip, relative_difference, tie_free

import minidl
import minidl.fast.conv
from minidl import backend, nn

REFERENCE_DIRECTORY = Path(minidl.__file__).parent / "functional"

CONV_CASES = [  # (in, out, kernel, stride, padding, dilation, input shape): which fast form runs
    (3, 4, 3, 1, 1, 1, (2, 3, 9, 11)),                    # direct
    (6, 3, 3, 1, 1, 1, (2, 6, 8, 9)),                     # the transposed twin
    (3, 3, 3, 1, 2, 2, (2, 3, 9, 8)),                     # equal channels: the twin's backward
    (64, 64, 3, 1, 1, 1, (1, 64, 10, 12)),                # Winograd F(2x2, 3x3)
    (64, 64, 3, 1, 1, 1, (1, 64, 18, 20)),                # Winograd F(4x4, 3x3)
    (4, 5, (3, 5), (2, 1), (1, 2), (2, 1), (2, 4, 13, 12)),  # strided, dilated
    (6, 2, 1, 1, 0, 1, (3, 6, 5, 7)),                     # pointwise
    (2, 3, 4, 3, 0, 1, (1, 2, 11, 10)),                   # windows that skip rows
]
TRANSPOSED_CASES = [  # (in, out, kernel, stride, padding, output_padding, dilation, input shape)
    (3, 4, 3, 2, 1, 1, 1, (2, 3, 5, 6)),
    (4, 2, 1, 1, 0, 0, 1, (2, 4, 5, 3)),
    (2, 3, (3, 2), (2, 3), (1, 0), (1, 2), 1, (1, 2, 4, 5)),
    (2, 3, 3, 1, 0, 1, 2, (2, 2, 5, 4)),                  # output_padding >= stride: one more window row
    (5, 3, 3, 1, 1, 0, 1, (1, 5, 7, 6)),
]
POOL_CASES = [  # (kernel, stride, padding, dilation, ceil_mode, input shape)
    (2, 2, 0, 1, False, (2, 3, 8, 6)),
    (3, 2, 1, 1, False, (1, 2, 7, 9)),
    (3, 2, 1, 1, True, (1, 2, 8, 6)),
    (2, 1, 1, 2, False, (1, 2, 6, 5)),
    ((2, 3), (1, 2), (1, 0), 1, True, (2, 1, 5, 8)),
    (3, 3, 0, 1, True, (1, 2, 8, 7)),
]
UPSAMPLE_CASES = [  # keyword arguments of Upsample, input shape
    (dict(scale_factor=2, mode="bilinear", align_corners=True), (2, 3, 5, 7)),
    (dict(scale_factor=2, mode="bilinear"), (1, 2, 6, 4)),
    (dict(size=(7, 13), mode="bilinear"), (1, 2, 5, 6)),
    (dict(scale_factor=(1.7, 3), mode="bilinear"), (1, 2, 4, 5)),
    (dict(size=(3, 4), mode="bilinear", align_corners=True), (1, 2, 7, 9)),
    (dict(scale_factor=2), (2, 2, 5, 3)),
    (dict(scale_factor=1.7), (1, 2, 6, 5)),
    (dict(size=(4, 3)), (1, 2, 9, 7)),
]
BATCHNORM_CASES = [(True, True), (True, False), (False, True), (False, False)]  # (training, affine)


def run_on(engine_name, module, inputs, dy):
    """Output, input gradient and parameter gradients of one forward and backward on ``engine_name``."""
    with minidl.engine(engine_name):
        module.zero_grad()
        y = module(*inputs)
        dx = module.backward(dy)
    return [y, dx] + [parameter.grad.copy() for parameter in module.parameters()]


def assert_engines_agree(module, inputs, device="cpu"):
    """Fast and reference give the same output and gradients (float64, 1e-12 relative)."""
    module.double().to(device)
    inputs = [backend.to_device(x, device) for x in inputs]
    with minidl.no_grad():
        shape = module(*inputs).shape
    dy = backend.to_device(numpy.random.default_rng(7).standard_normal(shape), device)
    reference, fast = run_on("reference", module, inputs, dy), run_on("fast", module, inputs, dy)
    assert [got.dtype for got in fast] == [expected.dtype for expected in reference]
    errors = [relative_difference(got, expected) for got, expected in zip(fast, reference)]
    assert max(errors) <= 1e-12, errors


def engine_cases(device):
    """(module, inputs) of every case above, inputs on the host; eval batch norm has moved statistics."""
    rng = numpy.random.default_rng(3)
    for cin, cout, kernel, stride, padding, dilation, shape in CONV_CASES:
        yield nn.Conv2d(cin, cout, kernel, stride, padding, dilation), [rng.standard_normal(shape)]
    for cin, cout, kernel, stride, padding, dilation, shape in CONV_CASES[:3]:  # no bias: direct, twin, twin's backward
        yield nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=False), [rng.standard_normal(shape)]
    for cin, cout, kernel, stride, padding, output_padding, dilation, shape in TRANSPOSED_CASES:
        module = nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding, dilation)
        yield module, [rng.standard_normal(shape)]
    cin, cout, kernel, stride, padding, output_padding, dilation, shape = TRANSPOSED_CASES[0]
    yield (nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding, dilation=dilation, bias=False),
           [rng.standard_normal(shape)])
    for kernel, stride, padding, dilation, ceil_mode, shape in POOL_CASES:
        yield nn.MaxPool2d(kernel, stride, padding, dilation=dilation, ceil_mode=ceil_mode), [tie_free(shape, rng)]
        ties = rng.integers(0, 3, size=shape).astype(numpy.float64)
        yield nn.MaxPool2d(kernel, stride, padding, dilation=dilation, ceil_mode=ceil_mode), [ties]
    for arguments, shape in UPSAMPLE_CASES:
        yield nn.Upsample(**arguments), [rng.standard_normal(shape)]
    for training, affine in BATCHNORM_CASES:
        module = nn.BatchNorm2d(3, affine=affine).train(training)
        module.running_mean[...], module.running_var[...] = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
        yield module, [rng.standard_normal((4, 3, 5, 6))]


CASE_COUNT = len(list(engine_cases("cpu")))


@pytest.mark.parametrize("case", range(CASE_COUNT))
def test_fast_equals_reference_on_the_cpu(case):
    module, inputs = list(engine_cases("cpu"))[case]
    assert_engines_agree(module, inputs)


@pytest.mark.gpu
@pytest.mark.parametrize("case", range(CASE_COUNT))
def test_fast_equals_reference_on_the_gpu(case):
    gpu_or_skip()
    module, inputs = list(engine_cases("gpu"))[case]
    assert_engines_agree(module, inputs, "gpu")


def unpool_case(rng):
    x = tie_free((2, 3, 8, 7), rng)
    _, indices = nn.MaxPool2d(2, 2, return_indices=True)(x)
    return nn.MaxUnpool2d(2, 2), [rng.standard_normal(indices.shape), indices, (8, 7)]


def test_fast_unpooling_equals_reference_on_the_cpu(rng):
    module, (x, indices, size) = unpool_case(rng)
    dy = rng.standard_normal((2, 3, 8, 7))
    reference, fast = (run_on(name, module, [x, indices, size], dy) for name in ("reference", "fast"))
    for got, expected in zip(fast, reference):
        numpy.testing.assert_array_equal(got, expected)


def test_nan_and_minus_inf_windows_agree_on_both_engines():
    x = numpy.arange(36, dtype=numpy.float64).reshape(1, 1, 6, 6)
    x[0, 0, :2, :3] = -numpy.inf
    x[0, 0, 3, 3] = x[0, 0, 4, 4] = numpy.nan
    results = {}
    for name in minidl.engines.ENGINES:
        with minidl.engine(name):
            results[name] = nn.MaxPool2d(3, 2, 1, return_indices=True)(x)
    numpy.testing.assert_array_equal(results["fast"][0], results["reference"][0])
    numpy.testing.assert_array_equal(results["fast"][1], results["reference"][1])
    assert results["reference"][1][0, 0, 0, 0] == 0 and results["reference"][1][0, 0, 2, 2] == 28


def test_the_switch_sets_reads_and_restores_the_engine():
    with minidl.engine("reference"):
        assert minidl.get_engine() == "reference"
        with minidl.engine("fast"):
            assert minidl.get_engine() == "fast"
        assert minidl.get_engine() == "reference"
    previous = minidl.get_engine()
    minidl.set_engine("reference")
    assert minidl.get_engine() == "reference"
    minidl.set_engine(previous)


def test_an_unknown_engine_is_a_value_error_that_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown engine 'gpu': choose one of \('reference', 'fast'\)"):
        minidl.set_engine("gpu")
    with pytest.raises(ValueError, match="unknown engine"):
        with minidl.engine("Fast"):
            pass


@pytest.mark.parametrize("value, expected", [("reference", "reference"), ("fast", "fast"), ("", "fast")])
def test_the_environment_variable_chooses_the_engine_at_import(value, expected):
    code = "import minidl; print(minidl.get_engine())"
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={"MINIDL_ENGINE": value, "PATH": ""})
    assert finished.stdout.strip() == expected, finished.stderr


def test_a_bad_environment_variable_is_reported_when_an_engine_is_first_needed():
    code = "import minidl\nprint('imported')\nminidl.get_engine()"
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={"MINIDL_ENGINE": "slow", "PATH": ""})
    assert finished.stdout.strip() == "imported" and finished.returncode != 0
    assert "MINIDL_ENGINE='slow' is not an engine: choose one of ('reference', 'fast')" in finished.stderr


def test_train_lung_reports_a_bad_environment_variable_in_one_line(tmp_path):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train_lung.py")
    finished = subprocess.run([sys.executable, script, "--epochs", "1", "--out", str(tmp_path / "run")],
                              capture_output=True, text=True, env=dict(os.environ, MINIDL_ENGINE="slow"))
    assert finished.returncode == 2 and finished.stderr.count("\n") == 1, finished.stderr
    assert "MINIDL_ENGINE='slow' is not an engine" in finished.stderr and not os.path.exists(tmp_path / "run")


def test_a_backward_runs_on_its_forwards_engine(monkeypatch, rng):
    def refuse(*arguments):
        raise AssertionError("the fast backward ran for a reference forward")
    monkeypatch.setattr(minidl.fast.conv, "conv2d_backward", refuse)
    module = nn.Conv2d(3, 4, 3, padding=1).double()
    x, dy = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 4, 6, 5))
    with minidl.engine("reference"):
        module(x)
    assert module.cache[0][0] == "reference"
    with minidl.engine("fast"):
        dx = module.backward(dy)
    with minidl.engine("reference"):
        module(x)
        expected = module.backward(dy)
    numpy.testing.assert_array_equal(dx, expected)


def test_every_reference_function_fits_a_screen_and_uses_no_fast_machinery():
    for path in sorted(REFERENCE_DIRECTORY.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno + 1 <= 40, f"{path.name}::{node.name} is over 40 lines"
            if isinstance(node, ast.ImportFrom):
                imported = {alias.name for alias in node.names}
                # get_array_module, and the losses' check that an upstream gradient sits on the logits' device
                allowed = {"get_array_module", "check_same_device"}
                assert node.module != "backend" or imported <= allowed, f"{path.name}: {imported}"
                assert not (node.module or "").startswith(("fast", "workspace")), f"{path.name}: {node.module}"


def test_reference_im2col_returns_a_fresh_array_each_call(rng):
    from minidl.functional.im2col import im2col
    first_x, second_x = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((2, 3, 5, 6))
    first = im2col(first_x, (3, 3), (1, 1), (1, 1), (1, 1))
    kept = first.copy()
    second = im2col(second_x, (3, 3), (1, 1), (1, 1), (1, 1))
    numpy.testing.assert_array_equal(first, kept)
    assert not numpy.shares_memory(first, second) and first[:, :, 1, 1].tolist() == first_x.tolist()
