"""Every task's functions in two versions, the copy's and the instructor's, and the switch between them.

The instructor's version of a function is compiled from the instructor's source inside the copy's module,
so its globals are the copy module's: the helpers and other tasks' functions it calls are whatever is
installed there at the time. Switching a function replaces the object now installed everywhere the copy's
modules and their classes refer to it (module globals, class attributes), so calls through imported names,
through ``engines.op`` and through methods all reach the chosen version.
"""
import ast
import importlib
import sys
import textwrap
from pathlib import Path

from ..regions import find_definition
from ..tasks import TASKS, TASKS_BY_NAME

PACKAGES = ("minidl", "models")
INSTRUCTOR_ROOT = Path(__file__).resolve().parents[3]


class MissingFunction(Exception):
    """The copy does not define a function the task is made of."""


def module_name(file):
    """"minidl/functional/conv.py" -> "minidl.functional.conv"."""
    return file[:-len(".py")].replace("/", ".")


def task_modules():
    """The names of the copy's modules that hold the tasks' functions."""
    return sorted({module_name(function.split("::")[0]) for task in TASKS for function in task.functions})


def holder_of(function):
    """(the module or class that holds ``function``, its attribute name) in the loaded copy."""
    file, qualname = function.split("::")
    holder = importlib.import_module(module_name(file))
    *classes, name = qualname.split(".")
    for part in classes:
        holder = getattr(holder, part)
    return holder, name


def defined(function):
    """The copy's ``function`` as its module or class holds it, or None if it (or its class) is not there."""
    try:
        holder, name = holder_of(function)
    except AttributeError:
        return None
    return vars(holder).get(name)


def instructor_version(function, root=INSTRUCTOR_ROOT):
    """The instructor's ``function`` ("file::qualname"), compiled with the copy module's globals."""
    file, qualname = function.split("::")
    path = Path(root) / file
    source = path.read_text()
    node = find_definition(source, qualname)
    first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
    tree = ast.parse(textwrap.dedent("\n".join(source.splitlines()[first - 1:node.end_lineno])))
    ast.increment_lineno(tree, first - 1)
    namespace = {}
    exec(compile(tree, str(path), "exec"), vars(importlib.import_module(module_name(file))), namespace)
    compiled = namespace[node.name]
    compiled.__qualname__ = qualname
    return compiled


def replace_references(old, new):
    """Point every reference to ``old`` in the copy's loaded modules and their classes at ``new``."""
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in PACKAGES:
            continue
        namespace = vars(module)
        for key, value in list(namespace.items()):
            if value is old:
                namespace[key] = new
            elif isinstance(value, type) and value.__module__ == name:
                for attribute, member in list(vars(value).items()):
                    if member is old:
                        setattr(value, attribute, new)


class Versions:
    """The copy's and the instructor's version of every task function; ``use`` installs one of them."""

    def __init__(self, root=INSTRUCTOR_ROOT):
        functions = [function for task in TASKS for function in task.functions]
        self.student = {function: defined(function) for function in functions}
        self.instructor = {function: instructor_version(function, root) for function in functions}
        self.installed = dict(self.student)

    def use(self, task_name, version):
        """Install the task's functions in ``version`` ("student" or "instructor"); MissingFunction, and no
        change, when the copy lacks one of them."""
        chosen = self.student if version == "student" else self.instructor
        functions = TASKS_BY_NAME[task_name].functions
        missing = [function for function in functions if chosen[function] is None]
        if missing:
            file, qualname = missing[0].split("::")
            raise MissingFunction(f"the copy does not define {qualname} in {file}")
        for function in functions:
            try:
                holder, name = holder_of(function)
            except AttributeError:  # the copy lacks the method's class: no code can call the method
                continue
            if self.installed[function] is not None:
                replace_references(self.installed[function], chosen[function])
            setattr(holder, name, chosen[function])
            self.installed[function] = chosen[function]

    def use_instructor_everywhere(self):
        for task in TASKS:
            self.use(task.name, "instructor")
