"""The CUDA kernels, executed on the CPU: tests/test_gpu.py run against an emulated CuPy.

CI has no GPU, so tests/test_gpu.py skips there. This test runs it once more in a
subprocess where ``import cupy`` finds ``tests/emulated_cupy`` instead: the CUDA C
of minidl/kernels.py is compiled with g++ and every thread runs one after
another, and device arrays refuse to mix with host arrays as CuPy's do. It checks
the kernels' index arithmetic and the library's host/device discipline; it is not
a GPU run (``python -m pytest -m gpu`` on a real GPU is).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compile the CUDA C for the CPU")
def test_every_gpu_test_passes_with_the_kernels_run_on_the_cpu(tmp_path):
    environment = dict(os.environ, MINIDL_REQUIRE_GPU="1", FAKE_CUPY_BUILD=str(tmp_path / "build"),
                       PYTHONPATH=os.pathsep.join([str(TESTS / "emulated_cupy"), str(TESTS.parent)]))
    finished = subprocess.run([sys.executable, "-m", "pytest", str(TESTS / "test_gpu.py"), "-q", "-p",
                               "no:cacheprovider", "-x"], cwd=tmp_path, env=environment, capture_output=True,
                              text=True, timeout=600)
    summary = finished.stdout.strip().splitlines()[-1] if finished.stdout.strip() else finished.stderr[-2000:]
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
