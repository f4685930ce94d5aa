"""Write a student copy of minidl with chosen backward functions blanked out.

    python tools/make_assignment.py --blank conv2d,max_pool2d,batch_norm OUTDIR
    python tools/make_assignment.py --list

The copy holds every file of the repository that git tracks or would track
(no .git, no caches). In it, the body of each chosen backward function is
replaced by ``raise NotImplementedError(...)``; its signature and docstring
stay. The copy also gets ``tests/test_assignment.py``, which gradient-checks
the layer or loss behind every blankable function and reports, per function,
"<name>: gradient of <tensor> missing (NotImplementedError)" or
"<name>: gradient of <tensor> wrong (relative error X)". See docs/coursework.md.
"""
import argparse
import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent

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


def make_assignment(names, outdir, root=REPOSITORY):
    """Write the student copy into ``outdir`` with the backward of each short name in ``names`` blanked."""
    check_names(names, root)
    copy_repository(outdir, root)
    for name in names:
        path, function, page = BLANKABLE[name]
        file = Path(outdir) / path
        message = f"{function}: implement the backward pass, see {page}"
        file.write_text(blank_function(file.read_text(), function, message))
    tests = Path(outdir) / "tests" / "test_assignment.py"
    tests.parent.mkdir(parents=True, exist_ok=True)
    tests.write_text(ASSIGNMENT_TESTS.replace("__CHECKED_NAMES__", repr(available(root))))
    return tests


ASSIGNMENT_TESTS = '''"""Coursework: one gradient check per backward function (written by tools/make_assignment.py).

Run ``python -m pytest tests/test_assignment.py -q``. Each test reports
"<name>: gradient of <tensor> missing (NotImplementedError)" while the
function is still blank, "<name>: gradient of <tensor> wrong (relative
error X)" while it is incorrect, and passes once it is right. The checks
are float64 central differences (minidl.gradcheck); see docs/gradient_checking.md.
"""
import numpy
import pytest

import minidl
from minidl.gradcheck import TOLERANCE, check_loss, check_module

CHECKED_NAMES = __CHECKED_NAMES__


def _rng():
    return numpy.random.default_rng(7)


def _away_from_zero(shape):
    """Normal values pushed at least 0.1 away from 0 (ReLU's kink)."""
    x = _rng().standard_normal(shape)
    return x + 0.1 * numpy.sign(x)


def _tie_free(shape):
    """Distinct values in random order, at least 0.05 apart (max-pool ties)."""
    size = int(numpy.prod(shape))
    return _rng().permutation(numpy.linspace(-2.0, 2.0, size)).reshape(shape)


def _module_check(build, *inputs):
    def run():
        module = build()
        names = ["input"] + [name for name, _ in module.named_parameters()]
        return names, lambda: check_module(module, inputs if len(inputs) > 1 else inputs[0])
    return run


def _loss_check(build, logits, target):
    def run():
        return ["logits"], lambda: {"logits": check_loss(build(), logits, target)}
    return run


def _pooled(shape):
    """(pooled values, int64 indices) of a tie-free input through MaxPool2d(2)."""
    pooled, indices = minidl.nn.MaxPool2d(2, return_indices=True)(_tie_free(shape))
    return _rng().standard_normal(pooled.shape), indices


def _batch_norm(training):
    def build():
        layer = minidl.nn.BatchNorm2d(3)
        layer.running_mean[...] = 0.3
        layer.running_var[...] = 1.7
        return layer.train(training)
    return build


def _checks(name):
    """The gradient checks that exercise the backward function ``name``."""
    nn = minidl.nn
    if name == "conv2d":
        return [_module_check(lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1), _rng().standard_normal((2, 2, 5, 5))),
                _module_check(lambda: nn.Conv2d(4, 2, 3, padding=1), _rng().standard_normal((2, 4, 5, 5)))]
    if name == "conv_transpose2d":
        return [_module_check(lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1),
                              _rng().standard_normal((2, 2, 3, 3)))]
    if name == "relu":
        return [_module_check(nn.ReLU, _away_from_zero((2, 3, 4)))]
    if name == "sigmoid":
        return [_module_check(nn.Sigmoid, 3 * _rng().standard_normal((2, 3, 4)))]
    if name == "max_pool2d":
        return [_module_check(lambda: nn.MaxPool2d(2), _tie_free((2, 2, 6, 6))),
                _module_check(lambda: nn.MaxPool2d(3, stride=2, padding=1), _tie_free((1, 2, 7, 5)))]
    if name == "max_unpool2d":
        return [_module_check(lambda: nn.MaxUnpool2d(2), *_pooled((2, 2, 6, 6)))]
    if name == "upsample_bilinear":
        return [_module_check(lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                              _rng().standard_normal((1, 2, 3, 4))),
                _module_check(lambda: nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True),
                              _rng().standard_normal((1, 2, 3, 4)))]
    if name == "upsample_nearest":
        return [_module_check(lambda: nn.Upsample(scale_factor=2, mode="nearest"),
                              _rng().standard_normal((1, 2, 3, 4)))]
    if name == "batch_norm":
        return [_module_check(_batch_norm(True), _rng().standard_normal((4, 3, 3, 3))),
                _module_check(_batch_norm(False), _rng().standard_normal((4, 3, 3, 3)))]
    from minidl import losses
    logits = 2 * _rng().standard_normal((2, 3, 4, 4))
    if name == "bce":
        return [_loss_check(losses.BCEWithLogitsLoss, logits, _rng().uniform(0, 1, logits.shape))]
    if name == "dice":
        return [_loss_check(losses.DiceLoss, logits, (_rng().uniform(0, 1, logits.shape) > 0.5) * 1.0)]
    if name == "cross_entropy":
        return [_loss_check(losses.CrossEntropyLoss, logits, _rng().integers(0, 3, (2, 4, 4)))]
    raise ValueError(f"no gradient check for {name}")


@pytest.mark.parametrize("name", CHECKED_NAMES)
def test_backward(name):
    for check in _checks(name):
        tensors, run = check()
        try:
            errors, missing = run(), None
        except NotImplementedError as error:
            errors, missing = {}, str(error)
        if missing is not None:
            pytest.fail(f"{name}: gradient of {', '.join(tensors)} missing (NotImplementedError: {missing})",
                        pytrace=False)
        wrong = {tensor: error for tensor, error in errors.items() if not error < TOLERANCE}
        if wrong:
            pytest.fail("; ".join(f"{name}: gradient of {tensor} wrong (relative error {error:.3g})"
                                  for tensor, error in wrong.items()), pytrace=False)
'''


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
