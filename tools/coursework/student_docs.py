"""The Markdown of a student copy: quotations of blanked code become placeholders, links to pages the copy
leaves out become plain text, and the README opens with the assignment."""
import posixpath
import re
import textwrap

from .tasks import ASSIGNMENTS, TASKS, TASKS_BY_NAME

# the docs' quotation: a ```python block whose first line is ``# file.py::name``; groups: file, name, quoted code
# (tests/test_docs.py checks every quotation against its source with this pattern too)
QUOTATION = re.compile(r"```python\n# ([A-Za-z0-9_./-]+\.py)::([A-Za-z_][A-Za-z0-9_.]*)\n(.*?)```", re.S)
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
WIDTH = 78  # the README's line width


def blanked_functions(names):
    """{"file.py::qualified.name": task name} of every function the tasks ``names`` blank."""
    return {function: name for name in names for function in TASKS_BY_NAME[name].functions}


def placeholder(function, task):
    """What stands in a page where the copy would quote the blanked ``function``."""
    file, qualname = function.split("::")
    return (f"*The code of `{qualname}` (`{file}`) is yours to write: task {task}, checked by "
            f"`python -m pytest -m {task}`.*")


def without_blanked_quotations(text, blanked):
    """``text`` with every quotation of a function in ``blanked`` ({function: task}) replaced by a placeholder."""
    def replace(match):
        function = f"{match.group(1)}::{match.group(2)}"
        return placeholder(function, blanked[function]) if function in blanked else match.group(0)
    return QUOTATION.sub(replace, text)


def without_links_to(text, page, omitted):
    """``text`` (of the page at relative path ``page``) with each link to a file in ``omitted`` (a predicate on
    relative paths) replaced by its text."""
    def replace(match):
        target = match.group(2).split("#", 1)[0]
        if not target or "://" in target:
            return match.group(0)
        path = posixpath.normpath(posixpath.join(posixpath.dirname(page), target))
        return match.group(1) if omitted(path) else match.group(0)
    return LINK.sub(replace, text)


def functions_text(task):
    """"`file.py`: a, b; `other.py`: c": the functions of ``task``, grouped by file."""
    by_file = {}
    for function in task.functions:
        file, qualname = function.split("::")
        by_file.setdefault(file, []).append(qualname)
    return "; ".join(f"`{file}`: {', '.join(names)}" for file, names in by_file.items())


def paragraph(text):
    return textwrap.fill(text, WIDTH, break_on_hyphens=False) + "\n"


def assignment_section(blanked):
    """The Markdown that opens a student copy's README: the tasks left to write, the loop, the capstone."""
    chosen = [task for task in TASKS if task.name in blanked]
    solved = [task.name for task in TASKS if task.name not in blanked]
    parts = ["# Assignment\n",
             paragraph("This is a student copy of minidl. In each blanked task's functions the signature, the "
                       "docstring and the set-up lines stay; where the answer goes they raise "
                       "`NotImplementedError`. Everything else works as in the full library.")]
    if chosen:
        parts.append("| task | assignment | points | functions | derived in |\n|---|---|---|---|---|\n" + "".join(
            f"| {task.name} | {task.assignment} | {task.points} | {functions_text(task)} | {task.page} |\n"
            for task in chosen))
    parts.append(paragraph(f"Solved already: {', '.join(solved)}." if solved and chosen else
                           "Every task is blanked." if chosen else "Nothing is blanked: every task is solved."))
    parts.append(paragraph("The assignments: " + "; ".join(f"{number}. {title}"
                                                           for number, title in ASSIGNMENTS.items()) + "."))
    parts += ["## The loop\n",
              "    python -m pytest -m conv2d      # one task's tests (each task is a pytest marker)\n"
              "    python -m pytest                # every task's\n",
              paragraph("A task's tests compare every tensor your code produces with what the instructor's "
                        "solution produced from the same small inputs (`tests/assignment_data.npz`), and say "
                        "which one is `missing` (still `NotImplementedError`) or `wrong (relative error X)`. They "
                        "check your backward passes against finite differences too, with your own gradient "
                        "checker (task gradcheck): those are skipped until it is written. A solved task's tests "
                        "pass from the start unless its code calls a blanked function; the NotImplementedError "
                        "then names the task to write first (max-pooling slides its windows with im2col, "
                        "say)."),
              "## The capstone\n",
              paragraph("When every test passes, train the demo on your own code: `python train_lung.py` trains "
                        "SegNetSmall on the built-in synthetic chest X-ray set. A short first run: "
                        "`python train_lung.py --epochs 2 --size 64 --synthetic-count 80`."),
              paragraph("This copy has only the reference engine (no `minidl/fast/`, no CUDA kernels). What the "
                        "rest of this README says about the fast engine and its timings, the benchmarks, the "
                        "instructor's test suite and tools refers to the full minidl."),
              ""]
    return "\n".join(parts)
