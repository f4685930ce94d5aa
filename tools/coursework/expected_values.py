"""The data of a copy's public tests: every case of the template run once on the instructor's solution.

The cases live in ``templates/assignment_tests.py``, the file a copy gets as ``tests/test_assignment.py``.
Here each case draws its inputs (``given(name, draw)`` calls ``draw(rng)``) and runs on the minidl this
process imports, which must be the instructor's solved tree, on the reference engine. The inputs and what
the case produced from them become ``tests/assignment_data.npz`` in the copy, where the same case reads the
inputs back and compares what the student's code produces with the values recorded here.
"""
import importlib.util
import warnings
from pathlib import Path

import numpy
import pytest

import minidl
from minidl.backend import to_numpy

TEMPLATES = Path(__file__).resolve().parent / "templates"
PUBLIC_TESTS = TEMPLATES / "assignment_tests.py"


def public_tests():
    """The template of the public tests, imported as a module (its task markers are registered in a copy's
    conftest, not here: a pytest session that makes a copy need not warn about them)."""
    spec = importlib.util.spec_from_file_location("coursework_public_tests", PUBLIC_TESTS)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        spec.loader.exec_module(module)
    return module


def drawing(rng, inputs):
    """``given`` for recording: draws input ``name`` with ``rng`` the first time it is asked for and keeps it
    in ``inputs``; every call returns a fresh copy (a layer may write over its input)."""
    def given(name, draw):
        if name not in inputs:
            inputs[name] = numpy.array(to_numpy(draw(rng)))
        return inputs[name].copy()
    return given


def record_expected_values():
    """{"<case>/input/<name>" or "<case>/expected/<tensor>": array} of every public case, in the cases' order.

    RuntimeError if the instructor's solution itself fails a case.
    """
    tests = public_tests()
    arrays = {}
    with minidl.engine("reference"):
        for case in tests.CASES:
            inputs = {}
            minidl.manual_seed(0)
            produced, stopped = tests.run_case(case, drawing(numpy.random.default_rng(tests.seed_of(case)), inputs))
            if stopped:
                raise RuntimeError(f"the instructor's solution fails public case {tests.case_id(case)}: {stopped}")
            prefix = tests.case_id(case)
            arrays.update((f"{prefix}/input/{name}", value) for name, value in inputs.items())
            arrays.update((f"{prefix}/expected/{name}", numpy.array(to_numpy(value)))
                          for name, value in produced.items())
    return arrays
