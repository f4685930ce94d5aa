"""tools/make_assignment.py: a student copy holds no answers, runs without the fast engine, and its public
tests fail exactly for the tasks that are blanked or wrong.

Answer text, the rule: a line of a blanked function's solution region (stripped) counts as answer text when
it is at least ANSWER_LENGTH characters long and does not occur anywhere in the instructor's copied Python
files outside every solution region. Shorter lines (``else:``, ``return cols``) teach nothing, and a line the
student gets anyway (``return xp.matmul(xp.matmul(rows.T, dy), columns)`` is also nearest upsampling's
backward) cannot be kept out of the copy. No file of an ``--all`` copy may hold any answer line.
"""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import numpy
import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))  # the tools package lives at the repository root
from tools.coursework import student_copy  # noqa: E402
from tools.coursework.notebooks import blank_notebook  # noqa: E402
from tools.coursework.regions import regions, solution_lines  # noqa: E402
from tools.coursework.student_docs import LINK, QUOTATION, blanked_functions  # noqa: E402
from tools.coursework.tasks import BEGIN, END, TASKS, TASKS_BY_NAME  # noqa: E402

TOOL = REPOSITORY / "tools" / "make_assignment.py"
ANSWER_LENGTH = 12
ALL_TASKS = [task.name for task in TASKS]
PLANTED_TASK = "sigmoid"  # its backward feeds no other task (relu's would also break segnet_backward)
CHECKER_MISSING = "your gradient checker (task gradcheck) is not written yet"
PUBLIC_TEST_FILES = {"tests/conftest.py", "tests/test_assignment.py", "tests/assignment_data.npz"}


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_assignment", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


# ------------------------------------------------------------------------------------------ helpers
def student_env(copy):
    """The environment a student runs the copy in: its own minidl, its own default engine."""
    environment = {key: value for key, value in os.environ.items() if key != "MINIDL_ENGINE"}
    return dict(environment, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")


def run_in(copy, *arguments, timeout=120, **environment):
    return subprocess.run([sys.executable, *arguments], cwd=copy, env=dict(student_env(copy), **environment),
                          capture_output=True, text=True, timeout=timeout)


def public_results(copy):
    """Run the copy's public tests; {test id: None (passed), "skipped: reason" or the failure message}."""
    report = copy.parent / f"{copy.name}-report.xml"
    run_in(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}")
    results = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            results[case.get("name")] = failure.get("message", "").removeprefix("Failed: ")
        elif skipped is not None:
            results[case.get("name")] = "skipped: " + skipped.get("message", "")
        else:
            results[case.get("name")] = None
    return results


def task_of(test_id):
    """"test_values[conv2d-k3-p1]" -> "conv2d"; the checker's verdict test belongs to gradcheck."""
    return test_id.split("[", 1)[1].split("-", 1)[0] if "[" in test_id else "gradcheck"


def outside_solution_regions(root):
    """The text of the Python files a copy holds, as the instructor has them, without their solution regions."""
    kept, inside = [], False
    for path in student_copy.student_files(root):
        if path.endswith(".py"):
            for line in (root / path).read_text().splitlines():
                if line.strip() in (BEGIN, END):
                    inside = line.strip() == BEGIN
                elif not inside:
                    kept.append(line)
    return "\n".join(kept)


def answer_lines(names):
    """{line: task} of the answer text (see the module docstring) of the tasks ``names``."""
    given = outside_solution_regions(REPOSITORY)
    answers = {}
    for name in names:
        for function in TASKS_BY_NAME[name].functions:
            file, qualname = function.split("::")
            for line in solution_lines((REPOSITORY / file).read_text(), qualname):
                if len(line) >= ANSWER_LENGTH and line not in given:
                    answers[line] = name
    return answers


def readable_text(path):
    """A file's text as a reader sees it (a notebook's cell sources), or None for a binary file."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return None
    if path.suffix == ".ipynb":
        return "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
    return text


def blanked_tasks(copy):
    """The tasks whose every function in ``copy`` has lost its solution regions and raises NotImplementedError."""
    blanked = set()
    for task in TASKS:
        states = []
        for function in task.functions:
            file, qualname = function.split("::")
            source = (copy / file).read_text()
            states.append(not regions(source, qualname) and f"raise NotImplementedError('{task.name}: " in source)
        assert all(states) or not any(states), f"{task.name} is blanked in part: {states}"
        if all(states):
            blanked.add(task.name)
    return blanked


def plant_wrong_sigmoid_backward(copy):
    """A student's wrong answer: sigmoid's backward returns the upstream gradient unchanged."""
    path = copy / "minidl" / "functional" / "activation.py"
    source = path.read_text()
    assert source.count("    return dy * y * (1 - y)\n") == 1
    path.write_text(source.replace("    return dy * y * (1 - y)\n", "    return dy\n"))


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    return tmp_path_factory.mktemp("copies")


@pytest.fixture(scope="module")
def all_copy(copies):
    student_copy.make_student_copy(copies / "all", ALL_TASKS)
    return copies / "all"


@pytest.fixture(scope="module")
def solved_copy(copies):
    student_copy.make_student_copy(copies / "solved", [])
    return copies / "solved"


@pytest.fixture(scope="module")
def planted_copy(solved_copy, copies):
    shutil.copytree(solved_copy, copies / "planted")
    plant_wrong_sigmoid_backward(copies / "planted")
    return copies / "planted"


# ------------------------------------------------------------------------------------------ what a copy holds
def test_the_all_copy_holds_no_answer_text(all_copy):
    answers = answer_lines(ALL_TASKS)
    assert len(answers) > 150, "the rule leaves too few lines to look for"
    found = [(str(path.relative_to(all_copy)), task, line) for path in sorted(all_copy.rglob("*")) if path.is_file()
             for text in [readable_text(path)] if text is not None for line, task in answers.items() if line in text]
    assert not found, found
    assert blanked_tasks(all_copy) == set(ALL_TASKS)


def test_the_copy_leaves_out_the_instructors_files(all_copy):
    held = {path.relative_to(all_copy).as_posix() for path in all_copy.rglob("*") if path.is_file()}
    assert held == set(student_copy.student_files()) | PUBLIC_TEST_FILES
    for left_out in ("minidl/fast", "minidl/kernels.py", ".git", "bench", "tools/coursework", ".ci",
                     "tools/make_assignment.py", "tools/grade.py", "tools/gpu_check.sh", "tools/make_figures.py",
                     "docs/fast_engines.md", "docs/benchmarks.md", "tests/test_make_assignment.py", "tests/helpers.py"):
        assert not (all_copy / left_out).exists(), left_out
    assert {path for path in held if path.startswith("tests/")} == PUBLIC_TEST_FILES


def quoted_functions(root):
    """Every "file.py::name" that a page under ``root`` quotes."""
    return [f"{file}::{name}" for page in sorted(root.rglob("*.md"))
            for file, name, _ in QUOTATION.findall(page.read_text())]


def test_pages_quote_no_blanked_code_and_link_no_left_out_page(all_copy):
    blanked = blanked_functions(ALL_TASKS)
    assert len([function for function in quoted_functions(REPOSITORY / "docs") if function in blanked]) >= 10
    assert not [function for function in quoted_functions(all_copy) if function in blanked]
    for page in sorted(all_copy.rglob("*.md")):
        text = page.read_text()
        relative = page.relative_to(all_copy).as_posix()
        for _, target in LINK.findall(text):
            path = os.path.normpath(os.path.join(os.path.dirname(relative), target.split("#")[0]))
            assert not student_copy.omitted(path), f"{relative} links to {target}"
    convolution = (all_copy / "docs" / "convolution.md").read_text()
    assert ("*The code of `conv2d_backward` (`minidl/functional/conv.py`) is yours to write: task conv2d, "
            "checked by `python -m pytest -m conv2d`.*") in convolution
    readme = (all_copy / "README.md").read_text()
    assert readme.startswith("# Assignment\n") and "python -m pytest -m conv2d" in readme
    assert "| segnet_backward | 4 | 10 |" in readme and "Every task is blanked." in readme


# ------------------------------------------------------------------------------------------ public tests
def test_every_task_of_the_all_copy_fails_as_missing(all_copy):
    results = public_results(all_copy)
    failed = {test: message for test, message in results.items() if message and not message.startswith("skipped")}
    assert {task_of(test) for test in failed} == set(ALL_TASKS)
    for test, message in failed.items():
        assert message.startswith(f"{task_of(test)}: ") and " missing (NotImplementedError: " in message, message
    skipped = {test: message for test, message in results.items() if message and message.startswith("skipped")}
    assert skipped and all(test.startswith("test_finite_differences[") for test in skipped)
    assert set(skipped.values()) == {f"skipped: {CHECKER_MISSING}"}
    assert set(results) == set(failed) | set(skipped)


def test_the_solved_copy_passes_every_public_test(solved_copy):
    results = public_results(solved_copy)
    assert {task_of(test) for test in results} == set(ALL_TASKS)
    assert sum(test.startswith("test_finite_differences[") for test in results) >= 20
    assert all(message is None for message in results.values()), {t: m for t, m in results.items() if m}


def test_a_planted_wrong_answer_fails_exactly_its_task(planted_copy):
    results = public_results(planted_copy)
    failed = {test: message for test, message in results.items() if message is not None}
    assert failed and {task_of(test) for test in failed} == {PLANTED_TASK}
    assert {test for test in results if task_of(test) == PLANTED_TASK} == set(failed)
    for message in failed.values():
        assert message.startswith("sigmoid: input gradient wrong (relative error "), message


def test_a_case_without_recorded_values_fails(solved_copy, copies):
    shutil.copytree(solved_copy, copies / "no-data")
    data = copies / "no-data" / "tests" / "assignment_data.npz"
    with numpy.load(data) as archive:
        kept = {key: archive[key] for key in archive.files if not key.startswith("relu-any-shape/")}
    numpy.savez(data, **kept)
    message = public_results(copies / "no-data")["test_values[relu-any-shape]"]
    assert message and message.startswith("relu: tests/assignment_data.npz holds no values"), message


def test_a_marker_runs_one_task(solved_copy):
    collected = run_in(solved_copy, "-m", "pytest", "-m", "conv2d", "--collect-only", "-q", "-p", "no:cacheprovider")
    tests = [line for line in collected.stdout.splitlines() if "::" in line]
    assert tests and all("[conv2d-" in test for test in tests), collected.stdout
    markers = run_in(solved_copy, "-m", "pytest", "--markers", "-p", "no:cacheprovider").stdout
    assert all(f"@pytest.mark.{name}: " in markers for name in ALL_TASKS)


# ------------------------------------------------------------------------------------------ the copy runs
def test_the_copy_has_only_the_reference_engine(all_copy):
    code = ("import sys, types, minidl\n"
            "from minidl import backend, engines\n"
            "print(engines.ENGINES, minidl.get_engine())\n"
            "sys.modules['cupy'] = types.SimpleNamespace(ndarray=list)  # a stand-in GPU array type\n"
            "print(backend.device_kernels([1.0]))\n"
            "minidl.set_engine('fast')\n")
    finished = run_in(all_copy, "-c", code)
    assert finished.stdout.split("\n")[:2] == ["('reference',) reference", "None"], finished.stdout + finished.stderr
    assert finished.stderr.strip().endswith("ValueError: engine 'fast': this copy of minidl has only the reference "
                                            "engine")
    for arguments, environment in ((["--engine", "fast"], {}), ([], {"MINIDL_ENGINE": "fast"})):
        refused = run_in(all_copy, "train_lung.py", *arguments, "--out", str(all_copy.parent / "refused"),
                         **environment)
        assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
        assert "this copy of minidl has only the reference engine" in refused.stderr
    assert run_in(all_copy, "train_lung.py", "--help").returncode == 0


def test_the_solved_copy_trains_the_capstone_and_checks_its_gradients(solved_copy):
    run = solved_copy.parent / "capstone-run"
    trained = run_in(solved_copy, "train_lung.py", "--epochs", "1", "--size", "32", "--synthetic-count", "8",
                     "--batch-size", "4", "--init-features", "2", "--quiet", "--no-cache", "--out", str(run))
    assert trained.returncode == 0, trained.stderr
    assert "reference engine" in trained.stdout and (run / "best.npz").is_file()
    checked = run_in(solved_copy, "-m", "minidl.gradcheck")
    assert checked.returncode == 0 and "tensors pass" in checked.stdout, checked.stdout[-2000:]


# ------------------------------------------------------------------------------------------ the command line
def test_assignment_3_blanks_its_tasks_and_the_later_ones_and_solves_the_earlier(tmp_path, capsys):
    assert tool.main(["--assignment", "3", str(tmp_path / "copy")]) == 0
    later = {task.name for task in TASKS if task.assignment >= 3}
    assert "max_pool2d, max_unpool2d, upsample_bilinear, batch_norm, dice" in capsys.readouterr().out
    assert blanked_tasks(tmp_path / "copy") == later
    readme = (tmp_path / "copy" / "README.md").read_text()
    assert "| batch_norm | 3 | 15 |" in readme and "| adam | 4 | 10 |" in readme and "| conv2d |" not in readme
    assert "Solved already: gradcheck," in readme


@pytest.mark.parametrize("arguments, message", [
    (["--blank", "conv2,relu", "DEST"], "unknown task 'conv2'; the tasks are gradcheck, relu, sigmoid,"),
    (["--blank", ",", "DEST"], "no task named; the tasks are gradcheck,"),
    (["--assignment", "5", "DEST"], "no assignment '5'; the assignments are 1, 2, 3, 4"),
    (["--assignment", "two", "DEST"], "no assignment 'two'; the assignments are 1, 2, 3, 4"),
    (["--all"], "give DEST, the folder to write the copy into"),
    (["--all", "--solved", "DEST"], "argument --solved: not allowed with argument --all"),
    (["DEST"], "one of the arguments --all --assignment --blank --solved --list is required"),
    (["--list", "DEST"], "--list takes no DEST"),
    (["--solved", "FULL"], "is not empty; give a new folder"),
    (["--solved", "FILE"], "file.txt is a file; give a new folder"),
    (["--solved", "UNDER_FILE"], "cannot be made: "),
    (["--solved", "INSIDE"], "is inside the repository"),
])
def test_bad_input_is_one_line_and_exit_status_2(arguments, message, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "kept.txt").write_text("kept")
    (tmp_path / "file.txt").write_text("kept")
    replaced = {"DEST": str(tmp_path / "new"), "FULL": str(tmp_path / "full"), "FILE": str(tmp_path / "file.txt"),
                "UNDER_FILE": str(tmp_path / "file.txt" / "copy"), "INSIDE": str(REPOSITORY / "copy")}
    with pytest.raises(SystemExit) as stopped:
        tool.main([replaced.get(argument, argument) for argument in arguments])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and len(error.splitlines()) == 1 and message in error, error
    assert error.startswith("make_assignment.py: error: ")
    assert not (tmp_path / "new").exists() and os.listdir(tmp_path / "full") == ["kept.txt"]
    assert (tmp_path / "file.txt").read_text() == "kept" and not (REPOSITORY / "copy").exists()


def test_the_command_line_reports_bad_input_in_one_line(tmp_path):
    finished = subprocess.run([sys.executable, str(TOOL), "--blank", "pool", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2 and finished.stderr.count("\n") == 1 and "max_pool2d" in finished.stderr
    assert not (tmp_path / "out").exists()


def test_a_reader_that_stops_reading_gets_no_traceback():
    reading, writing = os.pipe()
    os.close(reading)  # as ``| head`` does once it has its lines
    try:
        finished = subprocess.run([sys.executable, str(TOOL), "--list"], stdout=writing, stderr=subprocess.PIPE,
                                  text=True, timeout=60)
    finally:
        os.close(writing)
    assert finished.returncode == 0 and finished.stderr == "", finished.stderr


def test_list_names_every_task_with_its_points_and_functions(capsys):
    assert tool.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "assignment 2 (35 points): Convolution" in listing
    assert all(task.name in listing and all(function in listing for function in task.functions) for task in TASKS)


# ------------------------------------------------------------------------------------------ building a copy
def fake_repository(root):
    """A folder (not a git checkout) with a README and a notebook: what ``fill`` rewrites besides the code."""
    (root / "notebooks").mkdir(parents=True)
    (root / "README.md").write_text("# minidl\n")
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["Write im2col."]},
             {"cell_type": "code", "metadata": {"tags": ["solution", "task:im2col"]}, "execution_count": 3,
              "source": ["cols = im2col(x)\n", "cols.shape"], "outputs": [{"output_type": "execute_result"}]},
             {"cell_type": "code", "metadata": {"tags": ["solution"]}, "execution_count": 4, "source": "y = 2",
              "outputs": []},
             {"cell_type": "markdown", "metadata": {"tags": ["solution"]}, "source": ["Because it is linear."]},
             {"cell_type": "code", "metadata": {}, "execution_count": 5, "source": ["print(1)"],
              "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}]}]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (root / "notebooks" / "im2col.ipynb").write_text(json.dumps(notebook))
    return root


def test_notebook_answers_are_emptied_and_outputs_cleared(tmp_path):
    root = fake_repository(tmp_path / "repository")
    student_copy.make_student_copy(tmp_path / "copy", [], root)
    cells = json.loads((tmp_path / "copy" / "notebooks" / "im2col.ipynb").read_text())["cells"]
    assert [cell["source"] for cell in cells] == [["Write im2col."], "# Your code here (task im2col)",
                                                  "# Your code here", "*Your answer here.*", ["print(1)"]]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    assert blank_notebook(json.dumps({"cells": []})) == '{\n "cells": []\n}\n'


def test_a_failed_copy_leaves_nothing_behind(tmp_path, monkeypatch):
    def disk_full(stage, *arguments):
        (stage / "half.txt").write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(student_copy, "fill", disk_full)
    with pytest.raises(OSError, match="No space left"):
        student_copy.make_student_copy(tmp_path / "copy", [])
    assert os.listdir(tmp_path) == []


def test_sigterm_while_copying_is_one_line_and_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    def terminated(stage, *arguments):
        (stage / "half-written").write_text("a file of the copy")
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(student_copy, "fill", terminated)
    with pytest.raises(SystemExit) as stopped:
        tool.main(["--solved", str(tmp_path / "copy")])
    assert stopped.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "make_assignment.py: stopped by SIGTERM\n"
    assert list(tmp_path.iterdir()) == [] and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
