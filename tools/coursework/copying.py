"""Copy the repository and blank tasks in the copy: the two steps every student copy is made of."""
import shutil
import subprocess
from pathlib import Path

from .regions import blank
from .tasks import TASKS_BY_NAME

REPOSITORY = Path(__file__).resolve().parents[2]
SKIPPED_PARTS = {".git", "__pycache__", ".pytest_cache", "runs", "build", "dist"}


def repository_files(root=REPOSITORY):
    """Relative paths of the files git tracks or would track (untracked but not ignored included)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                                cwd=root, capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        listed = [str(path.relative_to(root)) for path in Path(root).rglob("*") if path.is_file()]
    return sorted(path for path in listed
                  if path and (Path(root) / path).is_file()
                  and not SKIPPED_PARTS.intersection(Path(path).parts) and not path.endswith(".pyc"))


def copy_files(outdir, paths, root=REPOSITORY):
    """Copy ``paths`` (relative to ``root``) into ``outdir``, which must be empty or absent."""
    outdir = Path(outdir)
    if outdir.exists() and any(outdir.iterdir()):
        raise ValueError(f"make_assignment: output directory {outdir} is not empty")
    for path in paths:
        target = outdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(root) / path, target)


def blank_message(task, qualname):
    """The NotImplementedError text of a blanked function: the task, the function and where it is derived."""
    return f"{task.name}: implement {qualname}, see {task.page}"


def blank_tasks(outdir, names):
    """In the copy at ``outdir``, replace every solution region of the tasks ``names`` by a NotImplementedError."""
    for name in names:
        task = TASKS_BY_NAME[name]
        for function in task.functions:
            file, qualname = function.split("::")
            path = Path(outdir) / file
            path.write_text(blank(path.read_text(), qualname, blank_message(task, qualname)))
