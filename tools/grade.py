"""Grade a student's copy of minidl with the instructor's held-out checks.

    python tools/grade.py STUDENT_DIR [--json FILE] [--tasks relu,conv2d] [--timeout SECONDS]

Each task is graded in its own process, on the copy's code, with every other task's functions replaced by
the instructor's (so one wrong answer costs that task's points only), whatever the copy's own tests say.
Prints one row per task (points earned / possible and the reason) and ends with ``score: X / Y``; ``--json``
writes the same with every case's details. A task's points: see tools/coursework/grading/scoring.py (printed
above the table). Exit status 0 when the grading ran, whatever the score; 2 for bad input or a report
that could not be written; 128 + the signal after Ctrl-C (130), SIGTERM (143) or SIGHUP (129), the task
being graded stopped with its whole process group.
"""
import json
import os
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))
from minidl.serialization import atomic_output  # noqa: E402
from tools.coursework.command_line import OneLineParser, show, stopped_in_one_line  # noqa: E402
from tools.coursework.grading.runner import DEFAULT_TIMEOUT, grade  # noqa: E402
from tools.coursework.grading.scoring import table  # noqa: E402
from tools.coursework.tasks import TASKS_BY_NAME  # noqa: E402


def parse(argv):
    """The arguments; bad ones end the program with a one-line error (exit status 2) before any grading."""
    parser = OneLineParser(prog="grade.py", description="Grade a student's copy of minidl with the held-out checks.")
    parser.add_argument("student_dir", metavar="STUDENT_DIR", help="the student's copy of the repository")
    parser.add_argument("--json", metavar="FILE", help="also write the report, with every case, as JSON")
    parser.add_argument("--tasks", metavar="NAMES", help="grade only these tasks (comma-separated)")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=DEFAULT_TIMEOUT,
                        help=f"time limit of each task (default {DEFAULT_TIMEOUT:g})")
    arguments = parser.parse_args(argv)
    problem = input_problem(arguments)
    if problem:
        parser.error(problem)
    return arguments


def input_problem(arguments):
    """Why the arguments cannot be graded, or None."""
    student_dir = Path(arguments.student_dir)
    if not student_dir.is_dir():
        return f"{student_dir} is not a directory"
    if not (student_dir / "minidl" / "__init__.py").is_file():
        return f"{student_dir} is not a copy of minidl (it has no minidl/__init__.py)"
    if not arguments.timeout > 0:
        return f"--timeout must be a positive number of seconds, got {arguments.timeout:g}"
    names = task_names(arguments)
    if names == []:
        return "--tasks names no task"
    unknown = [name for name in names or () if name not in TASKS_BY_NAME]
    if unknown:
        return f"unknown task {unknown[0]!r}: choose from {', '.join(TASKS_BY_NAME)}"
    if arguments.json:
        return report_path_problem(Path(arguments.json))
    return None


def report_path_problem(path):
    """Why the JSON report could not be written to ``path`` (checked before the grading runs), or None."""
    if path.is_dir():
        return f"--json {path} is a directory"
    folder = next(folder for folder in path.absolute().parents if folder.exists())
    if not folder.is_dir():
        return f"--json {path} cannot be written: {folder} is a file"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"--json {path} cannot be written: {folder} is not writable"
    return None


def task_names(arguments):
    """The names given to --tasks, or None for every task."""
    if arguments.tasks is None:
        return None
    return [name.strip() for name in arguments.tasks.split(",") if name.strip()]


def main(argv=None):
    """Grade, write the JSON report (first, so a closed output loses nothing), print the table."""
    arguments = parse(argv)
    show([f"grading {Path(arguments.student_dir).resolve()}"])
    try:
        with stopped_in_one_line("grade.py"):  # runner.run_worker kills the running worker's group on the way out
            report = grade(arguments.student_dir, task_names(arguments), arguments.timeout)
    except OSError as error:  # no room for a worker's temporary folder, no process to start...
        print(f"grade.py: error: {error}", file=sys.stderr)
        return 2
    status = 0
    if arguments.json:
        try:
            with atomic_output(arguments.json) as temporary:
                Path(temporary).write_text(json.dumps(report, indent=1))
        except OSError as error:
            print(f"grade.py: error: cannot write {arguments.json}: {error}", file=sys.stderr)
            status = 2
    parity = "on" if report["torch_parity"] else "skipped (PyTorch is not installed)"
    show([f"points: {report['rule']}", f"PyTorch parity: {parity}", *table(report["tasks"])])
    return status


if __name__ == "__main__":
    sys.exit(main())
