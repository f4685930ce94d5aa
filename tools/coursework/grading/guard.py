"""The import guard: while a student's code is imported and run, libraries that could compute the answers
cannot be imported.

While the copy's packages are imported, a forbidden import at a file's top level gets a poisoned module
(any use raises ``ForbiddenImport``) and is recorded against that file, so only the tasks of that file lose
their points. While the tasks run, a forbidden import raises ``ForbiddenImport`` and is recorded, even if
the code catches the error. ``lift()`` removes the guard and the poisoned modules (PyTorch is imported after
the student's code has run, for the parity checks). While it is on, the packages ``minidl`` and ``models``
are imported from the copy alone.
"""
import importlib.abc
import importlib.machinery
import sys
import types
from pathlib import Path

COPY_PACKAGES = ("minidl", "models")
FORBIDDEN = ("torch", "torchvision", "tensorflow", "keras", "jax", "jaxlib", "scipy", "sklearn", "skimage", "cv2",
             "numba", "chainer", "mxnet", "paddle", "minidl.fast", "minidl.kernels", "tools.coursework")


class ForbiddenImport(ImportError):
    """A forbidden module was imported (or a poisoned one used) by the graded code."""


def forbidden_root(name):
    """The entry of FORBIDDEN that module ``name`` falls under, or None."""
    return next((root for root in FORBIDDEN if name == root or name.startswith(root + ".")), None)


class PoisonedModule(types.ModuleType):
    """Stands in for a forbidden module imported at a file's top level. While the copy is imported a missing
    attribute is an AttributeError (so ``from torch import nn`` imports a poisoned ``torch.nn``); afterwards
    reading one, or calling a poisoned name, is recorded by the guard as a use, and raises."""

    def __init__(self, name, guard):
        super().__init__(name)
        self.guard = guard

    def __getattr__(self, attribute):
        if self.guard.importing_copy or (attribute.startswith("__") and attribute.endswith("__")):
            raise AttributeError(attribute)
        raise self.used()

    def __call__(self, *arguments, **keywords):
        """A name imported from a forbidden module (``from scipy.special import expit``) is called."""
        raise self.used()

    def used(self):
        """The ForbiddenImport of a use, recorded by the guard once the copy is imported."""
        root = forbidden_root(self.__name__)
        if not self.guard.importing_copy:
            self.guard.attempts.append(root)
        return ForbiddenImport(f"imported {root} (not allowed)")


def forget_poisoned_modules():
    for name in [name for name, module in sys.modules.items() if isinstance(module, PoisonedModule)]:
        del sys.modules[name]


class ImportGuard(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A meta-path finder in front of all others. While ``importing_copy``, a forbidden import gets a poisoned
    module and goes into ``top_level`` as (root, importing file); afterwards it raises and its root goes into
    ``attempts``, as does every use of a poisoned module."""

    def __init__(self, student_dir):
        self.student_dir = Path(student_dir).resolve()
        self.importing_copy = True
        self.top_level = []
        self.attempts = []

    def install(self):
        """Put the guard first on sys.meta_path (forgetting any forbidden module imported before)."""
        for name in [name for name in sys.modules if forbidden_root(name)]:
            del sys.modules[name]
        sys.meta_path.insert(0, self)

    def copy_imported(self):
        """From now on a forbidden import raises. The poisoned modules leave sys.modules (the copy's modules
        keep theirs), so that importing one again reaches the guard."""
        self.importing_copy = False
        forget_poisoned_modules()

    def lift(self):
        """Remove the guard and every poisoned module."""
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        forget_poisoned_modules()

    def find_spec(self, name, path=None, target=None):
        root = forbidden_root(name)
        if root is None:
            return self.copy_spec(name, path) if name.split(".")[0] in COPY_PACKAGES else None
        if not self.importing_copy:
            self.attempts.append(root)
            raise ForbiddenImport(f"imported {root} (not allowed)")
        self.top_level.append((root, self.importing_file()))
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def copy_spec(self, name, path):
        """The spec of a module of the copy's own packages, found in the copy only (an installed minidl, such as
        an editable install of the instructor's, must not fill a gap in the copy)."""
        spec = importlib.machinery.PathFinder.find_spec(name, [str(self.student_dir)] if path is None else path)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} in the copy", name=name)
        return spec

    def create_module(self, spec):
        return PoisonedModule(spec.name, self)

    def exec_module(self, module):
        module.__path__ = []

    def importing_file(self):
        """The copy's file (relative path) whose code is importing, or None if it is not the copy's."""
        frame = sys._getframe(1)
        while frame is not None:
            filename = frame.f_code.co_filename
            machinery = filename.startswith("<frozen") or Path(filename).parent.name == "importlib"
            if not machinery and filename != __file__:
                try:
                    return Path(filename).resolve().relative_to(self.student_dir).as_posix()
                except ValueError:
                    return None
            frame = frame.f_back
        return None

    def roots_imported_by(self, files):
        """The forbidden roots imported at the top level of any of ``files`` while the copy was imported."""
        return list(dict.fromkeys(root for root, file in self.top_level if file in files))
