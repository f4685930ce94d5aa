"""Grading one task inside its worker process.

The copy goes first on sys.path and is imported under the import guard; every task function is then set
to the instructor's, and each held-out case runs once with them and once with the graded task's functions
swapped back to the student's (``cases.grade_case``). Once the student's code has run, the guard is lifted
and PyTorch, where it is installed, checks the cases that have a PyTorch equivalent. The result goes to a JSON file for
the runner.
"""
import importlib
import json
import os
import sys
from pathlib import Path

from ..tasks import TASKS_BY_NAME
from .cases import check_equivalent, describe
from .guard import ImportGuard
from .versions import Versions, task_modules


def main(argv):
    """``STUDENT_DIR TASK RESULT_FILE``: grade, write the result; exit status 0."""
    student_dir, task_name, result_path = argv
    result = grade_task(Path(student_dir).resolve(), task_name)
    temporary = f"{result_path}.partial"
    with open(temporary, "w") as stream:
        json.dump(result, stream)
    os.replace(temporary, result_path)
    return 0


def import_copy(student_dir, guard):
    """Import the copy's minidl and the modules of every task under ``guard``; None, or why it failed."""
    sys.path.insert(0, str(student_dir))
    guard.install()
    try:
        for name in ["minidl", *task_modules()]:
            importlib.import_module(name)
        sys.modules["minidl"].set_engine("reference")
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # a syntax error, a failing import...: every task fails alike
        return f"crashed: the copy does not import: {describe(error, student_dir)}"
    finally:
        guard.copy_imported()
    return None


def grade_task(student_dir, task_name):
    """{"task", "cases": [case summaries], "forbidden": [module roots], "failure": None or a reason}."""
    task = TASKS_BY_NAME[task_name]
    guard = ImportGuard(student_dir)
    failure = import_copy(student_dir, guard)
    files = {function.split("::")[0] for function in task.functions}
    forbidden = guard.roots_imported_by(files)
    if failure is not None:
        return {"task": task_name, "cases": [], "forbidden": forbidden, "failure": failure}
    from .checks import cases_of
    versions = Versions()
    cases = cases_of(task_name)
    results = [case.grade(versions, task_name, student_dir, seed) for seed, case in enumerate(cases)]
    forbidden += guard.attempts
    guard.lift()
    compared = any(case.equivalent and result.actual is not None for case, result in zip(cases, results))
    torch = importable_torch() if compared else None
    for case, result in zip(cases, results):
        check_equivalent(result, case, torch)
    return {"task": task_name, "cases": [result.summary() for result in results],
            "forbidden": list(dict.fromkeys(forbidden)), "failure": None}


def importable_torch():
    """PyTorch, single-threaded, or None when it cannot be imported."""
    try:
        import torch
    except Exception:  # ImportError, or a broken installation
        return None
    torch.set_num_threads(1)
    return torch
