"""A student copy of minidl: the repository without the instructor's files, chosen tasks blanked, public tests.

The copy leaves out the fast engine and the CUDA kernels (so no answer survives in a faster form), the
figure script (it draws the docs' pictures from its own bilinear matrix, max-pool and stable BCE), the
benchmarks and their pages, the instructor's tests, CI and every coursework and grading tool. It runs the
reference engine (``minidl/engines.py`` sees that ``minidl/fast/`` is absent). In it, each solution region of a
blanked task raises NotImplementedError, each page's quotation of a blanked function is a placeholder, links
to left-out pages are plain text, notebooks' answer cells are empty, and the README opens with the assignment.
Its ``tests/`` holds only the public tests, with the values the instructor's solution produced for them.
The copy is built in a temporary folder beside the destination and renamed into place when complete.
"""
import os
import shutil
import tempfile
from pathlib import Path

import numpy

from .copying import REPOSITORY, blank_tasks, copy_files, repository_files
from .expected_values import PUBLIC_TESTS, TEMPLATES, record_expected_values
from .notebooks import blank_notebook
from .student_docs import assignment_section, blanked_functions, without_blanked_quotations, without_links_to
from .tasks import ASSIGNMENTS, TASKS, TASKS_BY_NAME, tasks_of_assignment

OMITTED_FOLDERS = ("minidl/fast/", "bench/", "tests/", ".ci/", "tools/coursework/")
OMITTED_FILES = ("minidl/kernels.py", "tools/make_assignment.py", "tools/grade.py", "tools/gpu_check.sh",
                 "tools/make_figures.py", "docs/fast_engines.md", "docs/benchmarks.md")
TASKS_LINE = "TASKS = {}  # tools/make_assignment.py writes {task: what it asks for} here"


def omitted(path):
    """Whether the relative path ``path`` stays out of a student copy."""
    return path in OMITTED_FILES or path.startswith(OMITTED_FOLDERS)


def student_files(root=REPOSITORY):
    """The repository's files that a student copy holds (before blanking)."""
    return [path for path in repository_files(root) if not omitted(path)]


def task_names(text):
    """"conv2d,relu" -> ["conv2d", "relu"]; ValueError naming the tasks for an unknown or empty list."""
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in TASKS_BY_NAME]
    if unknown or not names:
        problem = f"unknown task {', '.join(map(repr, unknown))}" if unknown else "no task named"
        raise ValueError(f"{problem}; the tasks are {', '.join(task.name for task in TASKS)}")
    return names


def assignment_tasks(text):
    """The task names of assignment ``text`` ("2") and of every later one (a week's copy holds no answer to a
    later week); ValueError naming the assignments for anything else."""
    if text.strip() not in {str(number) for number in ASSIGNMENTS}:
        raise ValueError(f"no assignment {text!r}; the assignments are {', '.join(map(str, ASSIGNMENTS))}")
    return [task.name for number in ASSIGNMENTS if number >= int(text) for task in tasks_of_assignment(number)]


def check_destination(outdir, root=REPOSITORY):
    """ValueError unless ``outdir`` is absent or an empty folder outside ``root``: a copy never overwrites
    anything, and a copy inside the repository would be copied, answers and all, into every later copy."""
    resolved = outdir.resolve()
    if resolved == Path(root).resolve() or Path(root).resolve() in resolved.parents:
        raise ValueError(f"{outdir} is inside the repository {root}; give a folder outside it")
    if outdir.is_file():
        raise ValueError(f"{outdir} is a file; give a new folder")
    if outdir.exists() and any(outdir.iterdir()):
        raise ValueError(f"{outdir} is not empty; give a new folder")
    above = next(folder for folder in resolved.parents if folder.exists())
    if not above.is_dir():
        raise ValueError(f"{outdir} cannot be made: {above} is a file")


def make_student_copy(outdir, blanked, root=REPOSITORY):
    """Write the student copy of ``root`` with the tasks ``blanked`` (names) blanked into ``outdir``.

    The public tests' expected values come from the minidl this process imports (the instructor's solution).
    """
    outdir = Path(outdir)
    check_destination(outdir, root)
    arrays = record_expected_values()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    try:
        fill(stage, blanked, arrays, root)
        os.chmod(stage, 0o777 & ~current_umask())
        os.replace(stage, outdir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fill(stage, blanked, arrays, root):
    """Everything a copy holds, written into the empty folder ``stage``."""
    copy_files(stage, student_files(root), root)
    blank_tasks(stage, blanked)
    rewrite_pages(stage, blanked_functions(blanked))
    for notebook in sorted(stage.rglob("*.ipynb")):
        notebook.write_text(blank_notebook(notebook.read_text()))
    write_public_tests(stage, arrays)
    readme = stage / "README.md"
    readme.write_text(assignment_section(blanked) + readme.read_text())


def rewrite_pages(stage, blanked):
    """Every Markdown page of the copy without quotations of ``blanked`` functions or links to left-out files."""
    for page in sorted(stage.rglob("*.md")):
        text = page.read_text()
        rewritten = without_links_to(without_blanked_quotations(text, blanked), page.relative_to(stage).as_posix(),
                                     omitted)
        if rewritten != text:
            page.write_text(rewritten)


def write_public_tests(stage, arrays):
    """tests/test_assignment.py, tests/conftest.py (a marker per task) and tests/assignment_data.npz."""
    tests = stage / "tests"
    tests.mkdir()
    shutil.copyfile(PUBLIC_TESTS, tests / "test_assignment.py")
    conftest = (TEMPLATES / "assignment_conftest.py").read_text()
    if TASKS_LINE not in conftest:
        raise RuntimeError(f"tools/coursework/templates/assignment_conftest.py lost its line {TASKS_LINE!r}")
    markers = "".join(f"    {task.name!r}: {task.summary!r},\n" for task in TASKS)
    (tests / "conftest.py").write_text(conftest.replace(TASKS_LINE, "TASKS = {\n" + markers + "}"))
    numpy.savez(tests / "assignment_data.npz", **arrays)


def task_listing():
    """The lines of ``--list``: each assignment, its tasks with their points, and the functions they blank."""
    lines = []
    for number, title in ASSIGNMENTS.items():
        tasks = tasks_of_assignment(number)
        lines.append(f"assignment {number} ({sum(task.points for task in tasks)} points): {title}")
        for task in tasks:
            lines.append(f"  {task.name:18s} {task.points:3d} points  {task.page}")
            lines += [f"      {function}" for function in task.functions]
    return lines
