"""tools/grade.py and tools/coursework/grading/: the held-out grading of student copies.

Copies are built once per module (the repository's files, tasks blanked or answers changed, the instructor's
parts removed as in a student copy) and each is graded once. Grading a full copy takes about 30 s here.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy
import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))
from tools.coursework.copying import blank_tasks, copy_files, repository_files  # noqa: E402
from tools.coursework.grading import zoo  # noqa: E402
from tools.coursework.grading.cases import describe  # noqa: E402
from tools.coursework.grading.guard import ForbiddenImport, ImportGuard, PoisonedModule  # noqa: E402
from tools.coursework.grading.runner import grade  # noqa: E402
from tools.coursework.regions import regions  # noqa: E402
from tools.coursework.tasks import TASKS, total_points  # noqa: E402

CLI = REPOSITORY / "tools" / "grade.py"
INSTRUCTOR_PARTS = ("minidl/fast", "minidl/kernels.py", "tools/coursework", "tools/grade.py", "tests/test_grade.py")

# wrong answers that fail every case of their task; each must cost that task's points and nothing else
PLANTED = {
    "relu": ("minidl/functional/activation.py", "return dy * mask", "return dy * (mask == 0)"),
    "im2col": ("minidl/functional/im2col.py", "\n    return cols\n", "\n    return cols.transpose(0, 1, 4, 5, 2, 3)\n"),
    "batch_norm": ("minidl/functional/batchnorm.py", "inv_std = 1 / xp.sqrt(var + eps)",
                   "inv_std = 1 / (xp.sqrt(var) + eps)"),
    "adam": ("minidl/optim/adam.py", "param -= (lr / bias_correction1) * (exp_avg / denominator)",
             "param -= lr * (exp_avg / denominator)"),
    "segnet_backward": ("models/segnet_small.py", "d_d2 = self.dec1.backward(d_d1)",
                        "d_d2 = self.dec2.backward(d_d1)"),
}

# answers that raise, hang, import what they must not, end the process, or rename a class a task names
FAULTS = {
    "sigmoid": ("minidl/functional/activation.py", "return dy * y * (1 - y)",
                'raise RuntimeError("sigmoid went wrong")'),
    "dice": ("minidl/functional/dice.py", "    plane_scale = upstream / denominator",
             "    __import__('time').sleep(600)\n    plane_scale = upstream / denominator"),
    "cross_entropy": ("minidl/functional/cross_entropy.py", "    shifted = logits - logits.max(axis=1, keepdims=True)",
                      "    import torch\n    shifted = logits - logits.max(axis=1, keepdims=True)"),
    "adam": ("minidl/optim/adam.py", "import math\n", "import math\n\nimport torch.nn.functional as F\n"),
    "max_pool2d": ("minidl/functional/pooling.py", "    windows = pooling_windows(",
                   "    from minidl.fast import pooling\n    windows = pooling_windows("),
    "max_unpool2d": ("minidl/functional/pooling.py", "    return dy.reshape(n * c, math.prod(dy.shape[2:]))",
                     "    __import__('os')._exit(3)\n    return dy.reshape(n * c, math.prod(dy.shape[2:]))"),
    "segnet_backward": ("models/segnet_small.py", "class ConvUnpoolBlock(Module):", "class UnpoolBlock(Module):"),
}
FAULT_TIMEOUT = 15

FORWARD_DIFFERENCES = """
flat = array.reshape(-1)
base = scalar_function()
gradient = numpy.empty(len(indices))
for k, index in enumerate(indices):
    original = flat[index]
    flat[index] = original + 1e-2
    gradient[k] = (scalar_function() - base) / 1e-2
    flat[index] = original
return gradient
"""
NO_ABS = """
scale = float(numpy.max(analytic + numeric, initial=0.0))
return float(numpy.max(analytic - numeric, initial=0.0)) / max(1e-8, scale)
"""


def student_copy(root, blanked=(), edits=(), regions_replaced=()):
    """A student copy at ``root``: the repository's files without the instructor's parts, ``blanked`` tasks,
    ``edits`` (file, old text, new text) and ``regions_replaced`` ("file::qualname", code) applied."""
    copy_files(root, repository_files(REPOSITORY), REPOSITORY)
    for part in INSTRUCTOR_PARTS:
        path = root / part
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    blank_tasks(root, blanked)
    for file, old, new in edits:
        source = (root / file).read_text()
        assert source.count(old) == 1, f"{old!r} is not unique in {file}"
        (root / file).write_text(source.replace(old, new))
    for function, code in regions_replaced:
        replace_region(root, function, code)
    return root


def replace_region(root, function, code):
    """Put ``code`` (at the region's indentation) in place of the one solution region of ``function``."""
    file, qualname = function.split("::")
    source = (root / file).read_text()
    (begin, end), = regions(source, qualname)
    lines = source.splitlines(keepends=True)
    indent = lines[begin][:len(lines[begin]) - len(lines[begin].lstrip())]
    lines[begin:end + 1] = [indent + line + "\n" for line in textwrap.dedent(code).strip().splitlines()]
    (root / file).write_text("".join(lines))


def points(report):
    return {entry["name"]: entry["points"] for entry in report["tasks"]}


def row_of(report, name):
    return next(entry for entry in report["tasks"] if entry["name"] == name)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("copies")
    return {
        "blank": student_copy(root / "blank", blanked=[task.name for task in TASKS]),
        "planted": student_copy(root / "planted", edits=PLANTED.values()),
        "faulty": student_copy(root / "faulty", edits=FAULTS.values()),
        "forward differences": student_copy(root / "forward", regions_replaced=[
            ("minidl/gradcheck.py::numerical_gradient", FORWARD_DIFFERENCES)]),
        "no abs": student_copy(root / "no-abs", regions_replaced=[("minidl/gradcheck.py::relative_error", NO_ABS)]),
    }


def test_the_instructors_tree_earns_full_marks():
    report = grade(REPOSITORY)
    assert [entry["reason"] for entry in report["tasks"]] == ["ok"] * len(TASKS), report["tasks"]
    assert report["total"] == {"points": total_points(), "max_points": total_points()}
    assert report["torch_parity"] or os.environ.get("MINIDL_REQUIRE_TORCH") != "1"
    if report["torch_parity"]:
        compared = [case["torch"] for entry in report["tasks"] for case in entry["cases"]
                    if case["torch"] != "no equivalent"]
        assert compared and set(compared) == {"ok"}


def test_a_blank_copy_earns_nothing(copies):
    report = grade(copies["blank"])
    assert report["total"]["points"] == 0
    assert {entry["reason"] for entry in report["tasks"]} == {"missing (NotImplementedError)"}


def test_each_wrong_answer_costs_its_own_task_only(copies):
    report = grade(copies["planted"])
    for task in TASKS:
        expected = 0 if task.name in PLANTED else task.points
        assert points(report)[task.name] == expected, row_of(report, task.name)
    assert row_of(report, "relu")["reason"].startswith("wrong: input gradient relative error")
    assert row_of(report, "segnet_backward")["status"] == "crashed"


def test_faults_cost_their_task_and_the_grader_finishes(copies, tmp_path):
    names = ["relu", "sgd", *FAULTS]
    report_path = tmp_path / "report.json"
    finished = subprocess.run([sys.executable, str(CLI), str(copies["faulty"]), "--tasks", ",".join(names),
                               "--timeout", str(FAULT_TIMEOUT), "--json", str(report_path)],
                              capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines()[-1] == "score: 10 / 70"
    report = json.loads(report_path.read_text())
    assert [entry["name"] for entry in report["tasks"]] == [task.name for task in TASKS if task.name in names]
    assert points(report) == {name: (5 if name in ("relu", "sgd") else 0) for name in names}
    reasons = {entry["name"]: entry["reason"] for entry in report["tasks"]}
    assert reasons["sigmoid"].startswith("crashed: RuntimeError: sigmoid went wrong (minidl/functional/activation.py:")
    assert reasons["dice"] == f"timed out after {FAULT_TIMEOUT} s"
    assert reasons["cross_entropy"] == "imported torch (not allowed)"
    assert reasons["adam"] == "imported torch (not allowed)"
    assert reasons["max_pool2d"] == "imported minidl.fast (not allowed)"
    assert reasons["max_unpool2d"].startswith("crashed: the grading process ended with status 3")
    assert reasons["segnet_backward"].startswith("missing (the copy does not define ConvUnpoolBlock.backward")


def test_the_json_report_has_every_case(copies, tmp_path):
    report_path = tmp_path / "report.json"
    finished = subprocess.run([sys.executable, str(CLI), str(copies["planted"]), "--tasks", "relu,sgd",
                               "--json", str(report_path)], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(report_path.read_text())
    assert report["total"] == {"points": 5, "max_points": 10}
    relu, sgd = report["tasks"]
    assert (relu["name"], relu["assignment"], relu["points"], relu["max_points"], relu["status"]) == \
        ("relu", 1, 0, 5, "wrong")
    assert relu["cases"] and not any(case["passed"] for case in relu["cases"])
    assert set(relu["cases"][0]) == {"name", "passed", "reason", "errors", "torch"}
    assert "input gradient" in relu["cases"][0]["errors"]
    assert sgd["status"] == "ok" and all(case["passed"] for case in sgd["cases"])
    assert f"{relu['name']}" in finished.stdout and "0 / 5" in finished.stdout


def test_the_zoo_with_the_reference_checker():
    """minidl.gradcheck flags every broken member by far and passes the correct ones by far."""
    rng = numpy.random.default_rng(0)
    for member in zoo.MEMBERS:
        largest = max(member.errors(rng).values())
        assert (largest > 1e-3) if member.bug else (largest < 1e-7), (member.name, largest)
        assert zoo.verdict(member, member.errors(rng)).passed
    assert sum(1 for member in zoo.MEMBERS if member.bug) >= 8
    assert sum(1 for member in zoo.MEMBERS if not member.bug) >= 2


def test_the_zoo_judges_a_checker_that_returns_no_dict_of_numbers_wrong_without_crashing():
    broken = zoo.MEMBERS[0]
    for returned in (0.5, None, {}, {"input": "small"}, {"input": numpy.ones(2)}, {"input": float("nan")}):
        result = zoo.verdict(broken, returned)
        assert not result.passed and "not a dict of finite relative errors" in result.reason, result.reason
    assert zoo.verdict(broken, {"input": numpy.array(0.5)}).passed  # a 0-d array is a number


def test_calling_a_name_imported_from_a_forbidden_module_is_recorded(tmp_path):
    guard = ImportGuard(tmp_path)
    expit = PoisonedModule("scipy.special.expit", guard)  # what "from scipy.special import expit" binds
    with pytest.raises(ForbiddenImport):
        expit(1.0)
    assert guard.attempts == []  # while the copy imports, the import itself is what counts
    guard.copy_imported()
    with pytest.raises(ForbiddenImport, match="imported scipy"):
        expit(1.0)
    assert guard.attempts == ["scipy"]


def test_a_syntax_error_is_placed_at_the_line_that_does_not_parse(tmp_path):
    (tmp_path / "broken.py").write_text("x = 1\ndef f(:\n")
    with pytest.raises(SyntaxError) as raised:
        compile((tmp_path / "broken.py").read_text(), str(tmp_path / "broken.py"), "exec")
    assert describe(raised.value, tmp_path).endswith("(broken.py:2)")


@pytest.mark.parametrize("checker", ["forward differences", "no abs"])
def test_a_sloppy_gradient_checker_loses_points(copies, checker):
    entry = row_of(grade(copies[checker], ["gradcheck"]), "gradcheck")
    assert 0 < entry["points"] < entry["max_points"], entry["reason"]
    assert entry["status"] == "wrong"


@pytest.mark.parametrize("arguments, message", [
    ([], "the following arguments are required: STUDENT_DIR"),
    (["/no/such/folder"], "/no/such/folder is not a directory"),
    (["{empty}"], "is not a copy of minidl (it has no minidl/__init__.py)"),
    ([str(REPOSITORY), "--tasks", "relu,convolution"], "unknown task 'convolution': choose from gradcheck, relu"),
    ([str(REPOSITORY), "--tasks", " , "], "--tasks names no task"),
    ([str(REPOSITORY), "--timeout", "0"], "--timeout must be a positive number of seconds, got 0"),
    ([str(REPOSITORY), "--timeout", "soon"], "argument --timeout: invalid float value: 'soon'"),
    ([str(REPOSITORY), "--json", "{empty}"], "is a directory"),
    ([str(REPOSITORY), "--json", "{empty}/file.txt/report.json"], "cannot be written: "),
])
def test_bad_arguments_get_one_line_and_status_2(tmp_path, arguments, message):
    (tmp_path / "file.txt").write_text("kept")
    arguments = [argument.replace("{empty}", str(tmp_path)) for argument in arguments]
    finished = subprocess.run([sys.executable, str(CLI), *arguments], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert finished.stdout == ""
    assert len(finished.stderr.splitlines()) == 1 and message in finished.stderr, finished.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_grader_in_one_line_and_kills_the_task_it_was_grading(tmp_path, stop):
    pid_file = tmp_path / "worker.pid"
    hang = ("minidl/functional/dice.py", "    plane_scale = upstream / denominator",
            "    __import__('pathlib').Path(__import__('os').environ['GRADED_PID']).write_text(str(__import__('os')"
            ".getpid()))\n    __import__('time').sleep(600)\n    plane_scale = upstream / denominator")
    copy = student_copy(tmp_path / "hanging", edits=[hang])
    grader = subprocess.Popen([sys.executable, str(CLI), str(copy), "--tasks", "dice", "--timeout", "300"],
                              env=dict(os.environ, GRADED_PID=str(pid_file)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not pid_file.exists() and grader.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the pid is written whole
    graded = int(pid_file.read_text())
    grader.send_signal(stop)
    _, err = grader.communicate(timeout=60)
    assert grader.returncode == 128 + stop and err.count("\n") == 1 and "Traceback" not in err, err
    assert err == f"grade.py: stopped by {signal.Signals(stop).name}\n"
    with pytest.raises(ProcessLookupError):
        os.kill(graded, 0)
