"""A held-out case, and how one case of a task is graded.

A ``Case`` draws its inputs from a seed (``draw``) and computes named tensors (outputs, gradients, state)
with whatever functions are installed (``run``). It may check the analytic gradients of the student's run
against the grader's central differences (``gradients``) and name PyTorch's values of some tensors
(``equivalent``). Grading a case runs it twice: with every task function the instructor's (the expected tensors),
then with the graded task's functions the student's (the actual tensors), so the case tests that task alone.
"""
import copy
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy

from . import measures
from .versions import MissingFunction


@dataclass(frozen=True)
class Case:
    name: str
    draw: Callable                          # rng -> inputs (a dict of arrays and settings)
    run: Callable                           # inputs -> {tensor: array}
    dtype: type = numpy.float64             # the precision, which sets the tolerance
    gradients: Optional[Callable] = None    # (inputs, actual tensors) -> {tensor: central-difference error}
    equivalent: Optional[Callable] = None   # (torch, inputs) -> {tensor: PyTorch's array}

    def grade(self, versions, task_name, student_dir, seed):
        return grade_case(self, versions, task_name, student_dir, seed)


@dataclass
class CaseResult:
    name: str
    passed: bool
    reason: str                            # "ok", "missing (NotImplementedError)", "wrong: ...", "crashed: ..."
    errors: dict = field(default_factory=dict)
    torch: str = "no equivalent"           # "ok", "wrong: ...", "skipped (...)" or "no equivalent"
    inputs: dict = field(default=None, repr=False)
    actual: dict = field(default=None, repr=False)

    def summary(self):
        """The JSON-ready part: name, passed, reason, errors, torch."""
        return {"name": self.name, "passed": self.passed, "reason": self.reason,
                "errors": {tensor: _number(error) for tensor, error in self.errors.items()}, "torch": self.torch}


def _number(value):
    return value if numpy.isfinite(value) else str(value)


def describe(error, student_dir):
    """One line: the exception's type and first message line, and the copy's innermost line it passed (for a
    SyntaxError, the line that does not parse)."""
    message = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
    places = [(frame.filename, frame.lineno) for frame in traceback.extract_tb(error.__traceback__)]
    if isinstance(error, SyntaxError) and error.filename:
        places.append((error.filename, error.lineno))
    in_copy = [place for place in (copy_place(filename, line, student_dir) for filename, line in places) if place]
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{text} ({in_copy[-1]})" if in_copy else text


def copy_place(filename, line, student_dir):
    """"file:line" relative to the copy when ``filename`` lies inside it, else None."""
    try:
        return f"{Path(filename).resolve().relative_to(Path(student_dir).resolve()).as_posix()}:{line}"
    except ValueError:
        return None


def failure(name, error, student_dir):
    """The CaseResult of a student's run that raised ``error``."""
    if isinstance(error, NotImplementedError):
        return CaseResult(name, False, "missing (NotImplementedError)")
    if isinstance(error, MissingFunction):
        return CaseResult(name, False, f"missing ({error})")
    return CaseResult(name, False, f"crashed: {describe(error, student_dir)} in case '{name}'")


def grade_case(case, versions, task_name, student_dir, seed):
    """Run ``case`` with the instructor's functions, then with the student's for ``task_name``; compare."""
    versions.use_instructor_everywhere()
    try:
        inputs = case.draw(numpy.random.default_rng(seed))  # builds the copy's layers for their shapes
        expected = case.run(copy.deepcopy(inputs))
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # the copy's code outside the task's functions broke the reference run
        return CaseResult(case.name, False, f"crashed outside the task's functions: "
                                            f"{describe(error, student_dir)} in case '{case.name}'")
    try:
        versions.use(task_name, "student")
        actual = case.run(copy.deepcopy(inputs))
        numeric = case.gradients(copy.deepcopy(inputs), actual) if case.gradients else {}
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        return failure(case.name, error, student_dir)
    finally:
        versions.use(task_name, "instructor")
    return judged(case, inputs, expected, actual, numeric)


def judged(case, inputs, expected, actual, numeric):
    """The CaseResult of comparing ``actual`` with ``expected`` and the central-difference errors."""
    tolerance = measures.TOLERANCE[numpy.dtype(case.dtype)]
    errors, problems = {}, []
    for tensor, value in expected.items():
        errors[tensor], problem = measures.compare(actual.get(tensor), value, tolerance)
        if problem:
            problems.append(f"{tensor} {problem}")
    for tensor, error in numeric.items():
        errors[f"{tensor} vs central differences"] = error
        if not error <= measures.NUMERIC_TOLERANCE:
            problems.append(f"{tensor} disagrees with central differences (relative error {error:.1e})")
    reason = f"wrong: {problems[0]} in case '{case.name}'" if problems else "ok"
    return CaseResult(case.name, not problems, reason, errors, inputs=inputs, actual=actual)


def check_equivalent(result, case, torch):
    """Compare the student's tensors of a case that ran with PyTorch's (``torch`` None: skipped), in
    ``result.torch``; a mismatch fails the case."""
    if case.equivalent is None or result.actual is None:
        return
    if torch is None:
        result.torch = "skipped (PyTorch is not installed)"
        return
    try:
        reference = case.equivalent(torch, copy.deepcopy(result.inputs))
    except Exception as error:  # the equivalent is the grader's code: say so rather than blame the student
        result.torch = f"skipped (the PyTorch equivalent failed: {type(error).__name__}: {error})"
        return
    tolerance = measures.TOLERANCE[numpy.dtype(case.dtype)]
    for tensor, value in reference.items():
        error, problem = measures.compare(result.actual.get(tensor), value, tolerance)
        result.errors[f"{tensor} vs PyTorch"] = error
        if problem:
            result.torch = f"wrong: {tensor} {problem} against PyTorch"
            if result.passed:
                result.passed = False
                result.reason = f"wrong: {tensor} {problem} against PyTorch in case '{case.name}'"
            return
    result.torch = "ok"
