"""The grading process of one task: ``python worker.py STUDENT_DIR TASK RESULT_FILE`` (started by runner.py).

The grading pack is imported under the package name ``minidl_grading_pack`` (from this file's location, not
from sys.path), so the student's copy, first on sys.path, cannot shadow it, and this folder is taken off
sys.path before the copy is imported.
"""
import importlib
import importlib.util
import sys
from pathlib import Path

PACK = "minidl_grading_pack"
HERE = Path(__file__).resolve().parent
COURSEWORK = HERE.parent


def load_pack():
    """Import tools/coursework/ as the package ``minidl_grading_pack``."""
    spec = importlib.util.spec_from_file_location(PACK, COURSEWORK / "__init__.py",
                                                  submodule_search_locations=[str(COURSEWORK)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = package
    spec.loader.exec_module(package)


if __name__ == "__main__":
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
    load_pack()
    session = importlib.import_module(f"{PACK}.grading.session")
    sys.exit(session.main(sys.argv[1:]))
