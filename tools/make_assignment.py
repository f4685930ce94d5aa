"""Write a student copy of minidl with chosen backward functions blanked out.

    python tools/make_assignment.py --blank conv2d,max_pool2d,batch_norm OUTDIR
    python tools/make_assignment.py --list

The copy holds every file of the repository that git tracks or would track
(no .git, no caches). In it, the body of each chosen backward function is
replaced by ``raise NotImplementedError(...)``; its signature and docstring
stay. The copy also gets ``tests/test_assignment.py``, which gradient-checks
the layer or loss behind every blankable function and reports, per function,
"<name>: gradient of <tensor> missing (NotImplementedError)" or
"<name>: gradient of <tensor> wrong (relative error X)". The copy runs the reference engine by
default (``minidl/engines.py``), so the tests exercise the blanked reference functions. See
docs/coursework.md.
"""
import argparse
import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))
from minidl.serialization import atomic_output  # noqa: E402

# short name -> (file, backward function, page that derives it)
BLANKABLE = {
    "conv2d": ("minidl/functional/conv.py", "conv2d_backward", "docs/convolution.md"),
    "conv_transpose2d": ("minidl/functional/conv.py", "conv_transpose2d_backward",
                         "docs/transposed_convolution.md"),
    "relu": ("minidl/functional/activation.py", "relu_backward", "docs/activations.md"),
    "sigmoid": ("minidl/functional/activation.py", "sigmoid_backward", "docs/activations.md"),
    "max_pool2d": ("minidl/functional/pooling.py", "max_pool2d_backward", "docs/pooling.md"),
    "max_unpool2d": ("minidl/functional/pooling.py", "max_unpool2d_backward", "docs/pooling.md"),
    "upsample_bilinear": ("minidl/functional/upsample.py", "upsample_bilinear2d_backward", "docs/upsampling.md"),
    "upsample_nearest": ("minidl/functional/upsample.py", "upsample_nearest2d_backward", "docs/upsampling.md"),
    "batch_norm": ("minidl/functional/batchnorm.py", "batch_norm2d_backward", "docs/batchnorm.md"),
    "bce": ("minidl/losses/bce.py", "bce_with_logits_backward", "docs/losses.md"),
    "dice": ("minidl/losses/dice.py", "dice_loss_backward", "docs/losses.md"),
    "cross_entropy": ("minidl/losses/cross_entropy.py", "cross_entropy_backward", "docs/losses.md"),
}

# never copied into a student's repository: the instructor's own test of this tool
INSTRUCTOR_ONLY = {"tests/test_make_assignment.py"}
CHECKED_NAMES_LINE = "CHECKED_NAMES = []  # make_assignment.py writes the names checkable in the copy here"
ENGINES_FILE = "minidl/engines.py"
DEFAULT_ENGINE_LINE = 'DEFAULT_ENGINE = "fast"'
STUDENT_ENGINE_LINE = 'DEFAULT_ENGINE = "reference"'
SKIPPED_PARTS = {".git", "__pycache__", ".pytest_cache", "runs", "build", "dist"}


def find_function(tree, name):
    """The module-level ``def name`` in a parsed file, or None."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


def available(root=REPOSITORY):
    """The short names whose backward function exists under ``root``, in BLANKABLE order."""
    names = []
    for name, (path, function, _) in BLANKABLE.items():
        file = Path(root) / path
        if file.is_file() and find_function(ast.parse(file.read_text()), function) is not None:
            names.append(name)
    return names


def check_names(names, root=REPOSITORY):
    """ValueError naming the valid short names unless ``names`` is a non-empty list of them."""
    valid = available(root)
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise ValueError(f"make_assignment: unknown or unavailable function name(s) {unknown or names}; "
                         f"valid names: {', '.join(valid)}")


def parse_names(text, root=REPOSITORY):
    """'conv2d,relu' -> ['conv2d', 'relu']; ValueError naming the valid names for anything else."""
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    check_names(names, root)
    return names


def _body_first_line(node, lines):
    """1-based first line to replace: after the docstring, or after the signature (and its comments)."""
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno + 1
    line = first.lineno
    while line - 1 > node.lineno and lines[line - 2].strip().startswith("#"):
        line -= 1
    return line


def blank_function(source, function, message):
    """``source`` with the body of module-level ``function`` replaced by a NotImplementedError (docstring kept)."""
    node = find_function(ast.parse(source), function)
    if node is None:
        raise ValueError(f"make_assignment: no function {function} in the given source")
    lines = source.splitlines(keepends=True)
    start = _body_first_line(node, lines)
    if start <= node.lineno:
        raise ValueError(f"make_assignment: {function} is written on one line; cannot blank its body")
    indent = " " * node.body[0].col_offset
    replacement = f"{indent}raise NotImplementedError({message!r})\n"
    return "".join(lines[:start - 1]) + replacement + "".join(lines[node.end_lineno:])


def repository_files(root=REPOSITORY):
    """Relative paths of the files git tracks or would track (untracked but not ignored included)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                                cwd=root, capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        listed = [str(path.relative_to(root)) for path in Path(root).rglob("*") if path.is_file()]
    return sorted(path for path in listed
                  if path and (Path(root) / path).is_file() and path not in INSTRUCTOR_ONLY
                  and not SKIPPED_PARTS.intersection(Path(path).parts) and not path.endswith(".pyc"))


def copy_repository(outdir, root=REPOSITORY):
    """Copy the repository's files into ``outdir`` (which must be empty or absent)."""
    outdir = Path(outdir)
    if outdir.exists() and any(outdir.iterdir()):
        raise ValueError(f"make_assignment: output directory {outdir} is not empty")
    for path in repository_files(root):
        target = outdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(root) / path, target)


def write_text(path, text):
    """Write ``text`` to ``path`` atomically: a temporary file in its folder, renamed over it."""
    with atomic_output(path) as temporary:
        Path(temporary).write_text(text)


def run_the_reference_engine(outdir):
    """Make the copy's default engine "reference", whose backward functions are the blanked ones."""
    engines = outdir / ENGINES_FILE
    source = engines.read_text()
    if source.count(DEFAULT_ENGINE_LINE) != 1:
        raise RuntimeError(f"{ENGINES_FILE} lost its line {DEFAULT_ENGINE_LINE!r}")
    write_text(engines, source.replace(DEFAULT_ENGINE_LINE, STUDENT_ENGINE_LINE))


def make_assignment(names, outdir, root=REPOSITORY):
    """Write the student copy into ``outdir`` with the backward of each short name in ``names`` blanked."""
    check_names(names, root)
    copy_repository(outdir, root)
    for name in names:
        path, function, page = BLANKABLE[name]
        file = Path(outdir) / path
        message = f"{function}: implement the backward pass, see {page}"
        write_text(file, blank_function(file.read_text(), function, message))
    run_the_reference_engine(Path(outdir))
    tests = Path(outdir) / "tests" / "test_assignment.py"
    tests.parent.mkdir(parents=True, exist_ok=True)
    template = (Path(__file__).resolve().parent / "assignment_tests_template.py").read_text()
    if CHECKED_NAMES_LINE not in template:
        raise RuntimeError(f"tools/assignment_tests_template.py lost its line {CHECKED_NAMES_LINE!r}")
    write_text(tests, template.replace(CHECKED_NAMES_LINE, f"CHECKED_NAMES = {available(root)!r}"))
    return tests


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="blankable names: " + ", ".join(BLANKABLE))
    parser.add_argument("--blank", help="comma-separated short names of the backward functions to blank")
    parser.add_argument("--list", action="store_true", help="print the blankable names and their functions")
    parser.add_argument("outdir", nargs="?", help="where to write the student copy (empty or absent)")
    args = parser.parse_args(argv)
    if args.list:
        for name in available():
            path, function, page = BLANKABLE[name]
            print(f"{name:18s} {path}::{function}  ({page})")
        return 0
    if not args.blank or not args.outdir:
        parser.error("give --blank NAMES and OUTDIR (or --list)")
    try:
        names = parse_names(args.blank)
        tests = make_assignment(names, args.outdir)
    except ValueError as error:
        parser.exit(2, f"{error}\n")
    print(f"wrote {args.outdir} with {', '.join(names)} blanked; "
          f"students run: python -m pytest {tests.relative_to(args.outdir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
