"""minidl's GPU path run on the CPU, against an emulated CuPy.

CI has no GPU, so every ``gpu`` test skips there. These tests run it once more in
subprocesses where ``import cupy`` finds ``tests/emulated_cupy`` instead: the CUDA
C of minidl/kernels.py is compiled with g++ and every thread runs one after
another, and device arrays refuse what CuPy's refuse (implicit conversion, host
arrays in device arithmetic, NumPy functions CuPy lacks, kernel arguments of the
wrong C type). They check the kernels' index arithmetic and the library's
host/device discipline in the GPU tests (``-m gpu``, as README runs them on a
GPU), a ``train_lung.py --device gpu`` run and ``bench/gpu.py --quick``; they
are not a GPU run (``python -m pytest -m gpu`` on a real GPU is).
"""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import minidl

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compile the CUDA C for the CPU")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    """One folder of compiled kernels for the module's subprocesses, so each (dtype, index) pair compiles once."""
    return tmp_path_factory.mktemp("emulated-cupy-build")


def run_emulated(arguments, cwd, build_dir):
    """Run ``python arguments...`` with the emulated CuPy first on the path; the CompletedProcess.

    The "device" GEMMs are NumPy's: one BLAS thread each keeps these runs from oversubscribing shared cores
    (3 s instead of 10 s for the benchmark on two busy cores); they time nothing that matters.
    """
    environment = dict(os.environ, MINIDL_REQUIRE_GPU="1", FAKE_CUPY_BUILD=str(build_dir), MPLBACKEND="Agg",
                       OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                       PYTHONPATH=os.pathsep.join([str(TESTS / "emulated_cupy"), str(ROOT)]))
    return subprocess.run([sys.executable, *arguments], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=600)


def passing_summary(finished):
    """The last line of a pytest run that must have passed (its output's tail if it did not)."""
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-2000:]
    return finished.stdout.strip().splitlines()[-1]


def test_every_gpu_test_passes_with_the_kernels_run_on_the_cpu(tmp_path, build_dir):
    finished = run_emulated(["-m", "pytest", str(TESTS), "-m", "gpu", "-q", "-p", "no:cacheprovider", "-x"],
                            tmp_path, build_dir)
    summary = passing_summary(finished)
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 100 and "skipped" not in summary and "failed" not in summary, summary


def test_the_emulation_refuses_what_cupy_refuses(tmp_path, build_dir):
    finished = run_emulated(["-m", "pytest", str(TESTS / "emulated_cupy" / "emulation_checks.py"), "-q", "-p",
                             "no:cacheprovider"], tmp_path, build_dir)
    summary = passing_summary(finished)
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary


def test_train_lung_on_the_gpu_writes_a_checkpoint_that_resumes_on_the_cpu(tmp_path, build_dir):
    run_dir = tmp_path / "run"
    trained = run_emulated([str(ROOT / "train_lung.py"), "--device", "gpu", "--epochs", "1", "--size", "32",
                            "--synthetic-count", "8", "--init-features", "4", "--batch-size", "4", "--quiet",
                            "--no-cache", "--out", str(run_dir)], tmp_path, build_dir)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    assert "batch 4, gpu, " in trained.stdout
    checkpoint = minidl.load(str(run_dir / "last.npz"))
    weights = [value for key, value in checkpoint.items() if key.startswith("model.")]
    assert weights and all(isinstance(value, numpy.ndarray) and numpy.isfinite(value).all() for value in weights)
    resumed = run_emulated([str(ROOT / "train_lung.py"), "--resume", str(run_dir / "last.npz"), "--epochs", "2",
                            "--device", "cpu", "--quiet"], tmp_path, build_dir)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    with open(run_dir / "history.csv") as stream:
        history = list(csv.DictReader(stream))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert all(0.0 <= float(row["val_dice"]) <= 1.0 for row in history)


def test_gpu_benchmark_quick_run_times_both_models(tmp_path, build_dir):
    finished = run_emulated([str(ROOT / "bench" / "gpu.py"), "--quick", "--repeats", "1"], tmp_path, build_dir)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    assert finished.stdout.startswith("GPU: emulated CuPy (CPU)")
    for model in ("SegNetSmall", "FCN"):
        step = [line for line in finished.stdout.splitlines() if line.startswith(f"| {model} | training step |")]
        assert len(step) == 1 and float(step[0].split("|")[4]) > 0.0, finished.stdout
    rows = [line for line in finished.stdout.splitlines() if line.startswith("| ") and "Conv" in line]
    assert len(rows) == 10 + 16, finished.stdout  # SegNetSmall's ten convs; FCN's ten, five transposed, one 1x1
