"""Grading a copy: one worker process per task, each with a time limit; the report.

A worker (``worker.py``) runs in a fresh temporary folder with the copy first on sys.path, MINIDL_ENGINE set
to "reference" and one BLAS thread; its output goes to a file, so a student's prints cannot fill a pipe. A
worker past its time limit is killed with its whole process group.
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ..tasks import TASKS
from .scoring import RULE, task_row, total

WORKER = Path(__file__).resolve().with_name("worker.py")
DEFAULT_TIMEOUT = 60.0


def worker_environment():
    """This process's environment for a worker: the reference engine, one thread, no PYTHONPATH."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(MINIDL_ENGINE="reference", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                       MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return environment


def run_worker(student_dir, task, timeout):
    """The worker's result for ``task``, or a row-ready failure ({"cases": [], "forbidden": [], "failure"})."""
    with tempfile.TemporaryDirectory(prefix="minidl-grade-") as scratch:
        scratch = Path(scratch)
        result_path, log_path = scratch / "result.json", scratch / "output.log"
        (scratch / "cwd").mkdir()
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, "-B", str(WORKER), str(student_dir), task.name,
                                        str(result_path)], cwd=scratch / "cwd", env=worker_environment(),
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return failed(f"timed out after {timeout:g} s")
            finally:
                stop(process)
        if not result_path.exists():
            return failed(f"crashed: the grading process ended with status {process.returncode} "
                          f"({last_line(log_path)})")
        return json.loads(result_path.read_text())


def failed(reason):
    return {"cases": [], "forbidden": [], "failure": reason}


def stop(process):
    """Kill the worker's process group (the worker and anything the student's code started), if alive."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def last_line(path):
    """The last non-empty line of a worker's output, shortened (or "no output")."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    text = lines[-1] if lines else "no output"
    return text if len(text) <= 200 else text[:197] + "..."


def grade(student_dir, task_names=None, timeout=DEFAULT_TIMEOUT):
    """The report of grading ``student_dir`` (every task, or ``task_names``, in the registry's order):
    {"student_dir", "rule", "torch_parity", "tasks": [rows], "total"}."""
    student_dir = Path(student_dir).resolve()
    rows = [task_row(task, run_worker(student_dir, task, timeout))
            for task in TASKS if task_names is None or task.name in task_names]
    return {"student_dir": str(student_dir), "rule": RULE, "torch_parity": torch_installed(), "tasks": rows,
            "total": total(rows)}


def torch_installed():
    """Whether the workers can compare with PyTorch (it is installed for this interpreter)."""
    return importlib.util.find_spec("torch") is not None
