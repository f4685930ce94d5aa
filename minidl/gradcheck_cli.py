"""``python -m minidl.gradcheck``: gradient checks from the command line.

With no arguments it checks every built-in layer and loss in several
configurations; with ``--module package.module:ClassName`` it checks a
student's own layer class:

    python -m minidl.gradcheck
    python -m minidl.gradcheck --module mylayers:Scale --args "3, gain=2.0" --input-shape 2,3,8,8
    python -m minidl.gradcheck --all [--only NAME] [--engine reference|fast|both]

The first two print a table (layer, config, tensor, relative error, pass/fail);
``--all`` prints one row per built-in layer, loss and model and engine with three checks
(see ``gradcheck_all``). Each exits with status 1 if anything fails (naming it),
2 for a bad command line.
"""
import argparse
import ast
import importlib
import importlib.util
import os
import sys
import time
from collections import namedtuple

import numpy

from . import nn
from .engines import ENGINES
from .gradcheck import TOLERANCE, away_from_zero, check_loss, check_module, tie_free

# Inputs are drawn from this seed. It must differ from check_module's upstream seed (0): with the same
# stream the upstream gradient equals the input, and for batch norm that makes dL/dx exactly zero.
SEED = 12345
DEFAULT_SHAPE = "2,3,8,8"  # --input-shape of a user's layer

Case = namedtuple("Case", ["layer", "config", "run", "make", "make_inputs", "wrt", "torch_equivalent"], defaults=(None,))
Case.__doc__ = """One row group of the table: ``run(rng)`` returns {tensor: relative error}. ``make()`` builds the
layer (or loss) afresh and ``make_inputs(rng)`` its forward arguments (logits and target for a loss; then
``wrt`` is None), so other checks (``--all``) can run the same case. ``torch_equivalent(torch)``, where given,
builds the PyTorch module to compare with (a layer's is derived from its settings)."""


def normal(shape, scale=1.0):
    """An input maker: ``scale`` times standard normal entries of ``shape``."""
    return lambda rng: scale * rng.standard_normal(shape)


def _module_case(layer, config, make_module, make_inputs, wrt=(0,)):
    def run(rng):
        return check_module(make_module(), make_inputs(rng), wrt=wrt)
    return Case(layer, config, run, make_module, make_inputs, wrt)


def _conv_cases():
    return [
        _module_case("Conv2d", "3->4 k3 s1 p1", lambda: nn.Conv2d(3, 4, 3, padding=1), normal((2, 3, 7, 8))),
        _module_case("Conv2d", "2->3 k(3,5) s(2,1) p(1,2) d2 no bias",
                     lambda: nn.Conv2d(2, 3, (3, 5), (2, 1), (1, 2), 2, bias=False), normal((1, 2, 11, 13))),
        _module_case("Conv2d", "2->2 k1 s3", lambda: nn.Conv2d(2, 2, 1, stride=3), normal((3, 2, 7, 5))),
        _module_case("ConvTranspose2d", "3->2 k3 s2 p1 op1",
                     lambda: nn.ConvTranspose2d(3, 2, 3, 2, 1, 1), normal((2, 3, 4, 5))),
        _module_case("ConvTranspose2d", "2->3 k(3,2) s(1,2) op(1,0) d2 no bias",
                     lambda: nn.ConvTranspose2d(2, 3, (3, 2), (1, 2), 0, (1, 0), 2, bias=False),
                     normal((1, 2, 5, 4))),
        _module_case("ReLU", "(2,3,5,4), |x| >= 0.1", nn.ReLU, lambda rng: away_from_zero((2, 3, 5, 4), rng)),
        _module_case("Sigmoid", "(2,3,5,4)", nn.Sigmoid, normal((2, 3, 5, 4), 3.0)),
    ]


def _pooling_cases():
    cases = []
    configurations = [("k2 s2", (2, 2)), ("k3 s2 p1", (3, 2, 1)), ("k2 s1 return_indices", (2, 1, 0, True))]
    for config, arguments in configurations:
        cases.append(_module_case("MaxPool2d", config, lambda a=arguments: nn.MaxPool2d(*a),
                                  lambda rng: tie_free((2, 3, 7, 9), rng)))
    # non-overlapping windows: overlapping ones can pick one pixel twice, and unpooling is then not linear
    configurations = [("k2 s2", (2, 2), (8, 10), False),
                      ("k(2,3), output_size (9,11)", ((2, 3),), (9, 11), True)]
    for config, arguments, size, pass_size in configurations:
        def unpool_inputs(rng, arguments=arguments, size=size, pass_size=pass_size):
            _, indices = nn.MaxPool2d(*arguments, return_indices=True)(tie_free((2, 3) + size, rng))
            values = rng.standard_normal(indices.shape)
            return (values, indices, size) if pass_size else (values, indices)
        cases.append(_module_case("MaxUnpool2d", config, lambda a=arguments: nn.MaxUnpool2d(*a),
                                  unpool_inputs))
    return cases


def _upsample_cases():
    configurations = [("nearest x2", dict(scale_factor=2)),
                      ("nearest size (7,10)", dict(size=(7, 10))),
                      ("bilinear x2", dict(scale_factor=2, mode="bilinear", align_corners=False)),
                      ("bilinear size (7,9) align_corners", dict(size=(7, 9), mode="bilinear", align_corners=True))]
    return [_module_case("Upsample", config, lambda k=kwargs: nn.Upsample(**k), normal((2, 2, 4, 5)))
            for config, kwargs in configurations]


def _batch_norm_cases():
    def in_eval_mode():
        """Running statistics away from the defaults, so eval mode really uses them."""
        module = nn.BatchNorm2d(3)
        generator = numpy.random.default_rng(SEED)
        module.running_mean[...] = generator.standard_normal(3)
        module.running_var[...] = generator.uniform(0.5, 2.0, 3)
        return module.eval()

    inputs = normal((4, 3, 3, 5), 2.0)
    return [_module_case("BatchNorm2d", "train", lambda: nn.BatchNorm2d(3), inputs),
            _module_case("BatchNorm2d", "train, affine=False", lambda: nn.BatchNorm2d(3, affine=False), inputs),
            _module_case("BatchNorm2d", "eval", in_eval_mode, inputs)]


def _loss_case(name, config, make_loss, make_logits_and_target):
    def run(rng):
        logits, target = make_logits_and_target(rng)
        return {"logits": check_loss(make_loss(), logits, target)}
    return Case(name, config, run, make_loss, make_logits_and_target, None)


def binary_targets(rng, shape=(2, 3, 4, 5)):
    return 2 * rng.standard_normal(shape), (rng.random(shape) > 0.5).astype(numpy.float64)


def soft_targets(rng, shape=(2, 3, 4, 5)):
    return 2 * rng.standard_normal(shape), rng.random(shape)


def probabilities_and_soft_targets(rng, shape=(2, 3, 4, 5)):
    return rng.uniform(0.05, 0.95, shape), rng.random(shape)


def class_targets(rng, shape=(2, 3, 4, 5)):
    return rng.standard_normal(shape), rng.integers(0, shape[1], (shape[0],) + shape[2:])


def _loss_cases():
    from . import losses
    pos_weight = numpy.array([1.0, 2.5, 0.5]).reshape(3, 1, 1)
    class_weight = numpy.array([0.2, 1.0, 3.0])
    return [_loss_case("BCEWithLogitsLoss", "mean", lambda: losses.BCEWithLogitsLoss(), binary_targets),
            _loss_case("BCEWithLogitsLoss", "sum, pos_weight (3,1,1), soft targets",
                       lambda: losses.BCEWithLogitsLoss("sum", pos_weight), soft_targets),
            _loss_case("DiceLoss", "from logits, mean", lambda: losses.DiceLoss(), binary_targets),
            _loss_case("DiceLoss", "probabilities, sum, smooth 0.5",
                       lambda: losses.DiceLoss(0.5, from_logits=False, reduction="sum"),
                       probabilities_and_soft_targets),
            _loss_case("CrossEntropyLoss", "mean", lambda: losses.CrossEntropyLoss(), class_targets),
            _loss_case("CrossEntropyLoss", "class weights, mean",
                       lambda: losses.CrossEntropyLoss(weight=class_weight), class_targets),
            _loss_case("BCEDiceLoss", "defaults", lambda: losses.BCEDiceLoss(), binary_targets)]


def builtin_cases():
    """Every (layer, config, run) triple of the built-in table; ``run(rng)`` returns {tensor: error}."""
    return _conv_cases() + _pooling_cases() + _upsample_cases() + _batch_norm_cases() + _loss_cases()


def run_cases(cases, tolerance=TOLERANCE):
    """Run each case; returns rows (layer, config, tensor, error, passed). An exception is a failed row."""
    rows = []
    for case in cases:
        try:
            errors = case.run(numpy.random.default_rng(SEED))
        except Exception as error:  # report and go on: one broken layer must not hide the rest
            rows.append((case.layer, case.config, f"error: {type(error).__name__}: {error}", float("nan"), False))
            continue
        for tensor, error in errors.items():
            rows.append((case.layer, case.config, tensor, error, bool(error < tolerance)))
    return rows


def format_table(rows):
    """A markdown table of the rows."""
    header = ("layer", "config", "tensor", "relative error", "result")
    body = [(layer, config, tensor, f"{error:.2e}", "pass" if passed else "FAIL")
            for layer, config, tensor, error, passed in rows]
    widths = [max(len(row[k]) for row in [header] + body) for k in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"
             for row in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def parse_arguments(text):
    """``"3, 4, kernel_size=3"`` -> ``((3, 4), {"kernel_size": 3})``, every value a Python literal."""
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        positional = tuple(ast.literal_eval(node) for node in call.args)
        keywords = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
    except (SyntaxError, ValueError) as error:
        raise ValueError(f"--args {text!r} is not a list of Python literals such as \"3, 4, kernel_size=3\" "
                         f"({error})") from None
    if None in keywords:
        raise ValueError(f"--args {text!r}: ** unpacking is not supported")
    return positional, keywords


def parse_shape(text):
    """``"2,3,8,8"`` (or ``"2x3x8x8"``) -> ``(2, 3, 8, 8)``; every part must be a positive integer."""
    parts = [part.strip() for part in text.replace("x", ",").split(",")]
    if not all(part.isascii() and part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError(f"--input-shape {text!r} must be positive integers separated by commas, e.g. 2,3,8,8")
    return tuple(int(part) for part in parts)


def load_class(spec):
    """``"package.module:ClassName"`` (or ``"path/to/file.py:ClassName"``) -> the class."""
    module_name, separator, class_name = spec.partition(":")
    if not separator or not module_name or not class_name:
        raise ValueError(f"--module {spec!r} must look like package.module:ClassName")
    try:
        if module_name.endswith(".py"):
            file_spec = importlib.util.spec_from_file_location(os.path.basename(module_name)[:-3], module_name)
            if file_spec is None or not os.path.exists(module_name):
                raise ImportError(f"no such file: {module_name}")
            module = importlib.util.module_from_spec(file_spec)
            file_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except Exception as error:
        raise ValueError(f"cannot import {module_name!r} for --module {spec!r}: "
                         f"{type(error).__name__}: {error}") from None
    if not hasattr(module, class_name):
        raise ValueError(f"module {module_name!r} has no attribute {class_name!r} (--module {spec!r})")
    return getattr(module, class_name)


def user_case(spec, arguments, shape, max_elements=None):
    """The case for a student's layer: build it with ``arguments``, check input and parameter gradients."""
    layer_class = load_class(spec)
    positional, keywords = parse_arguments(arguments)
    config = f"args ({arguments}), input {shape}"

    def make():
        return layer_class(*positional, **keywords)

    def run(rng):
        return check_module(make(), rng.standard_normal(shape), max_elements=max_elements)
    return Case(layer_class.__name__, config, run, make, lambda rng: rng.standard_normal(shape), (0,))


def chosen_cases(options):
    """The built-in table, or the case of ``--module``; a bad or misplaced option is a ``ValueError``."""
    shape = parse_shape(options.input_shape or DEFAULT_SHAPE)
    if options.module is not None:
        return [user_case(options.module, options.args, shape, options.max_elements)]
    for option, value in (("--args", options.args), ("--input-shape", options.input_shape),
                          ("--max-elements", options.max_elements)):
        if value not in (None, ""):
            raise ValueError(f"{option} needs --module (the built-in table uses its own inputs)")
    return builtin_cases()


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m minidl.gradcheck",
        description="Check hand-written backward passes against float64 central differences. With no options "
                    "every built-in layer and loss is checked; --module checks your own layer class.")
    parser.add_argument("--module", metavar="PACKAGE.MODULE:CLASS",
                        help="your layer class, e.g. mylayers:Scale (or path/to/file.py:Scale)")
    parser.add_argument("--args", default="", metavar="LITERALS",
                        help="constructor arguments as Python literals, e.g. \"3, 4, kernel_size=3\"")
    parser.add_argument("--input-shape", default=None, metavar="N,C,H,W",
                        help=f"shape of the random float64 input (default {DEFAULT_SHAPE})")
    parser.add_argument("--max-elements", type=int, default=None, metavar="K",
                        help="check a random sample of K entries per tensor (for big layers)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"pass mark for the relative error (default {TOLERANCE:g})")
    parser.add_argument("--all", action="store_true",
                        help="every built-in layer, loss and model three ways: finite differences, PyTorch parity "
                             "(where PyTorch is installed), CPU vs GPU (where a GPU is usable)")
    parser.add_argument("--only", metavar="NAME", help="with --all: only the rows whose layer name contains NAME")
    parser.add_argument("--engine", choices=ENGINES + ("both",), default=None,
                        help="with --all: the engine whose ops are checked, or both (the default), a row each")
    return parser


def main(argv=None):
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.all or options.only or options.engine:
        if not options.all or options.module is not None:
            parser.error("--only and --engine go with --all, and --all checks the built-in cases, not --module")
        from .gradcheck_all import run_all
        engines = ENGINES if options.engine in (None, "both") else (options.engine,)
        return run_all(options.only, engines)
    try:
        cases = chosen_cases(options)
    except ValueError as error:
        parser.error(str(error))
    start = time.perf_counter()
    rows = run_cases(cases, options.tolerance)
    print(format_table(rows))
    failures = [row for row in rows if not row[4]]
    seconds = time.perf_counter() - start
    if failures:
        names = ", ".join(f"{layer} [{config}] {tensor}" for layer, config, tensor, _, _ in failures)
        print(f"\n{len(failures)} of {len(rows)} tensors FAILED (tolerance {options.tolerance:g}): {names}")
        return 1
    print(f"\nall {len(rows)} tensors pass (tolerance {options.tolerance:g}) in {seconds:.2f} s")
    return 0
