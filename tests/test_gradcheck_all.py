"""python -m minidl.gradcheck --all: the three-way table and an exit status that a planted wrong gradient changes."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import models
from minidl import backend
from minidl.gradcheck_cli import main
from minidl.nn import ReLU


def run(argv, capsys):
    status = main(argv)
    return status, capsys.readouterr().out


def cells(line):
    """The cells of a markdown table row (a cell's own '|' is escaped as '\\|')."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def row_of(output, layer):
    """The cells of the layer's first row."""
    return cells(next(line for line in output.splitlines() if line.startswith(f"| {layer} ")))


def test_a_correct_layer_passes_every_available_column(capsys, torch):
    status, output = run(["--all", "--only", "relu"], capsys)
    assert status == 0, output
    layer, config, engine, finite, parity, gpu, result = row_of(output, "ReLU")
    assert engine == "reference" and float(finite) < 1e-6 and float(parity) < 1e-9 and result == "pass"
    assert gpu == "n/a" if not backend.gpu_available() else float(gpu) < 1e-9
    assert "all 2 rows pass" in output  # a row per engine


def test_the_engine_option_checks_one_engine_or_both(capsys, monkeypatch, torch):
    from minidl.fast import conv as fast_conv
    correct = fast_conv.conv2d_backward
    monkeypatch.setattr(fast_conv, "conv2d_backward", lambda dy, cache: tuple(
        None if g is None else 1.01 * g for g in correct(dy, cache)))   # a wrong fast engine only
    status, output = run(["--all", "--only", "Conv2d", "--engine", "reference"], capsys)
    assert status == 0 and " fast " not in output, output
    status, output = run(["--all", "--only", "Conv2d", "--engine", "fast"], capsys)
    assert status == 1 and "(fast engine)" in output and "(reference engine)" not in output
    status, output = run(["--all", "--only", "Conv2d"], capsys)
    rows = [cells(line) for line in output.splitlines() if line.startswith("| Conv2d ")]
    assert status == 1 and {row[2] for row in rows} == {"reference", "fast"}
    assert all(row[-1] == ("FAIL" if row[2] == "fast" else "pass") for row in rows), output


def test_a_planted_wrong_layer_gradient_fails_naming_the_cells(capsys, monkeypatch, torch):
    correct = ReLU.backward
    monkeypatch.setattr(ReLU, "backward", lambda self, dy: 1.01 * correct(self, dy))
    status, output = run(["--all", "--only", "ReLU"], capsys)
    assert status == 1
    assert row_of(output, "ReLU")[-1] == "FAIL"
    assert "ReLU [(2,3,5,4), |x| >= 0.1] finite differences: " in output
    assert "ReLU [(2,3,5,4), |x| >= 0.1] PyTorch: " in output


def test_a_planted_wrong_model_gradient_fails_its_row(capsys, monkeypatch):
    correct = models.segnet_small.ConvUnpoolBlock.backward
    monkeypatch.setattr(models.segnet_small.ConvUnpoolBlock, "backward", lambda self, dy: -correct(self, dy))
    status, output = run(["--all", "--only", "SegNetSmall"], capsys)
    assert status == 1
    assert "SegNetSmall [unpool, F=2, 17x19] finite differences: " in output
    assert "SegNetSmall [bilinear" not in output.split("FAILED")[1]  # the bilinear decoder is untouched


def test_a_raising_check_fails_its_cell_and_the_table_goes_on(capsys, monkeypatch):
    def broken(self, dy):
        raise RuntimeError("broken backward")

    monkeypatch.setattr(ReLU, "backward", broken)
    status, output = run(["--all", "--only", "Sigmoid"], capsys)
    assert status == 0  # ReLU is not in this table
    status, output = run(["--all", "--only", "ReLU"], capsys)
    assert status == 1 and "finite differences: error: RuntimeError: broken backward" in output


@pytest.mark.parametrize("argv, message", [(["--only", "ReLU"], "--only and --engine go with --all"),
                                           (["--all", "--module", "x:Y"], "--all checks the built-in cases"),
                                           (["--engine", "fast"], "--only and --engine go with --all")])
def test_misused_options_are_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_a_name_that_matches_nothing_exits_2(capsys):
    status, output = run(["--all", "--only", "NoSuchLayer"], capsys)
    assert status == 2 and "no built-in layer, loss or model matches 'NoSuchLayer'" in output


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compile the CUDA C for the CPU")
def test_the_gpu_column_runs_against_an_emulated_gpu(tmp_path, torch):
    """With tests/emulated_cupy as CuPy (the CUDA kernels compiled for the CPU, device arrays kept apart from host
    arrays) the CPU-vs-GPU cell is computed, not n/a: the plumbing of that column (moving the layer, its inputs
    and the upstream gradient, fetching the results) works. A real GPU's figures come from a run on one."""
    tests = Path(__file__).resolve().parent
    environment = dict(os.environ, FAKE_CUPY_BUILD=str(tmp_path / "build"),
                       PYTHONPATH=os.pathsep.join([str(tests / "emulated_cupy"), str(tests.parent)]))
    finished = subprocess.run([sys.executable, "-m", "minidl.gradcheck", "--all", "--only", "MaxPool2d"], cwd=tmp_path,
                              env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = [line for line in finished.stdout.splitlines() if line.startswith("| MaxPool2d")]
    assert len(rows) == 6  # three cases, on each engine
    for line in rows:
        row = cells(line)
        assert float(row[5]) < 1e-9 and row[6] == "pass", line
