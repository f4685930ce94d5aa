"""tools/make_assignment.py: the student copy fails exactly for the blanked backward functions."""
import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
TOOL = REPOSITORY / "tools" / "make_assignment.py"
BLANKED = ("conv2d", "max_pool2d")
WRONGLY_WRITTEN = "relu"


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_assignment", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def _student_env(copy):
    """The environment a student runs the copy in: its own default engine (no MINIDL_ENGINE)."""
    environment = {key: value for key, value in os.environ.items() if key != "MINIDL_ENGINE"}
    return dict(environment, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")


def run_assignment_tests(copy):
    """Run the copy's tests/test_assignment.py alone; {short name: failure message, or None when it passed}.

    A skipped case is not a pass: it gets a message starting with "skipped", so no caller counts it as passed.
    """
    report = copy / "assignment-report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "tests/test_assignment.py", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}"], cwd=copy, env=_student_env(copy), capture_output=True, timeout=120)
    results = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = case.get("name").split("[", 1)[1].rstrip("]")
        failure, error, skipped = case.find("failure"), case.find("error"), case.find("skipped")
        problem = failure if failure is not None else error
        if problem is not None:
            results[name] = problem.get("message", "").removeprefix("Failed: ")
        elif skipped is not None:
            results[name] = "skipped: " + skipped.get("message", "")
        else:
            results[name] = None
    report.unlink()
    return results


def _write_wrong_backward(copy, name):
    """Replace the placeholder of ``name`` with a student's wrong answer: return the upstream gradient unchanged."""
    path, function, _ = tool.BLANKABLE[name]
    file = copy / path
    source = file.read_text()
    node = tool.find_function(ast.parse(source), function)
    upstream = node.args.args[0].arg
    lines = source.splitlines(keepends=True)
    placeholder = node.body[-1]
    assert isinstance(placeholder, ast.Raise), f"{function} was not blanked"
    lines[placeholder.lineno - 1] = " " * placeholder.col_offset + f"return {upstream}\n"
    file.write_text("".join(lines))


@pytest.fixture(scope="module")
def student_copy(tmp_path_factory):
    copy = tmp_path_factory.mktemp("assignment") / "student"
    tool.make_assignment(list(BLANKED) + [WRONGLY_WRITTEN], copy)
    _write_wrong_backward(copy, WRONGLY_WRITTEN)
    return copy


def test_every_blankable_name_points_at_an_existing_page_and_is_documented():
    coursework = (REPOSITORY / "docs" / "coursework.md").read_text()
    for name, (path, function, page) in tool.BLANKABLE.items():
        assert (REPOSITORY / page).is_file(), f"{name}: {page} does not exist"
        assert f"| {name} | `{path}::{function}` |" in coursework, f"{name} is missing from docs/coursework.md"
    assert set(BLANKED + (WRONGLY_WRITTEN,)) <= set(tool.available()), tool.available()


def test_the_copy_runs_the_reference_engine_whose_backward_is_blanked(student_copy):
    code = ("import numpy, minidl; print(minidl.get_engine()); conv = minidl.nn.Conv2d(1, 1, 3).double(); "
            "conv.backward(conv(numpy.ones((1, 1, 4, 4))))")
    finished = subprocess.run([sys.executable, "-c", code], cwd=student_copy, env=_student_env(student_copy),
                              capture_output=True, text=True, timeout=60)
    assert finished.stdout.strip() == "reference"
    assert "NotImplementedError: conv2d_backward: implement the backward pass" in finished.stderr
    assert 'DEFAULT_ENGINE = "fast"' in (REPOSITORY / "minidl" / "engines.py").read_text()


def test_unknown_name_is_an_error_listing_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid names: conv2d, conv_transpose2d") as caught:
        tool.parse_names("conv2d,convolution")
    assert "['convolution']" in str(caught.value)
    finished = subprocess.run([sys.executable, str(TOOL), "--blank", "pool", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2 and "valid names:" in finished.stderr and "max_pool2d" in finished.stderr
    assert not (tmp_path / "out").exists()


def test_blank_function_keeps_signature_docstring_and_neighbours():
    source = ('import numpy\n\n\ndef scale_backward(dy,\n                   cache):\n    """dy (N,) -> dx (N,)."""\n'
              '    # dx = dy * s\n    s = cache\n    return dy * s\n\n\ndef untouched(x):\n    # kept\n'
              '    return x\n\n\ndef bare(x):\n    # a comment that goes\n    return x\n')
    blanked = tool.blank_function(source, "scale_backward", "scale_backward: implement it")
    blanked = tool.blank_function(blanked, "bare", "bare: implement it")
    namespace = {}
    exec(compile(blanked, "blanked", "exec"), namespace)
    assert namespace["scale_backward"].__doc__ == "dy (N,) -> dx (N,)."
    assert "dx = dy * s" not in blanked and "a comment that goes" not in blanked
    assert "def untouched(x):\n    # kept\n    return x\n" in blanked
    for function, argument in (("scale_backward", (1.0, 2.0)), ("bare", (1.0,))):
        with pytest.raises(NotImplementedError, match=f"{function}: implement it"):
            namespace[function](*argument)


def test_student_copy_holds_the_repository_without_instructor_files(student_copy):
    assert (student_copy / "minidl" / "functional" / "conv.py").is_file()
    assert (student_copy / "docs" / "convolution.md").is_file()
    assert not (student_copy / ".git").exists()
    assert not (student_copy / "tests" / "test_make_assignment.py").exists()
    imported = subprocess.run([sys.executable, "-c", "import minidl; print(minidl.__file__)"], cwd=student_copy,
                              env=_student_env(student_copy), capture_output=True, text=True, timeout=60)
    assert Path(imported.stdout.strip()).is_relative_to(student_copy), imported.stdout + imported.stderr


def test_student_copy_fails_exactly_for_the_blanked_and_wrong_functions(student_copy):
    results = run_assignment_tests(student_copy)
    assert set(results) == set(tool.available())
    assert results["conv2d"].startswith("conv2d: gradient of input, weight, bias missing (NotImplementedError: "
                                        "conv2d_backward: implement the backward pass, see docs/convolution.md)")
    assert results["max_pool2d"].startswith("max_pool2d: gradient of input missing (NotImplementedError")
    assert results["relu"].startswith("relu: gradient of input wrong (relative error ")
    passed = {name for name, message in results.items() if message is None}
    assert passed == set(results) - set(BLANKED) - {WRONGLY_WRITTEN}, results


def test_restoring_the_original_bodies_passes_again(student_copy, tmp_path):
    restored = tmp_path / "restored"
    shutil.copytree(student_copy, restored)
    for name in BLANKED + (WRONGLY_WRITTEN,):
        path = tool.BLANKABLE[name][0]
        shutil.copy2(REPOSITORY / path, restored / path)
    results = run_assignment_tests(restored)
    assert set(results) == set(tool.available())
    assert all(message is None for message in results.values()), results


def test_blanked_files_are_written_atomically(tmp_path, monkeypatch):
    root, out = tmp_path / "repository", tmp_path / "student"
    path = tool.BLANKABLE["relu"][0]
    (root / path).parent.mkdir(parents=True)
    shutil.copy2(REPOSITORY / path, root / path)
    original_write = Path.write_text

    def disk_full(self, text, *args, **kwargs):
        original_write(self, text[:10], *args, **kwargs)
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        tool.make_assignment(["relu"], out, root)
    assert (out / path).read_text() == (REPOSITORY / path).read_text()
    assert os.listdir((out / path).parent) == [Path(path).name]
