"""``python -m minidl.gradcheck --all``: every built-in layer, loss and model checked three ways.

One row per case, three columns, each the largest relative error max|a - b| / max(|a| + |b|) over the
case's tensors (output, input gradient, parameter gradients; value and d value / d logits for a loss):

- finite differences: the hand-written backward against float64 central differences (``check_module``);
- PyTorch: forward and backward against PyTorch's autograd on the same float64 inputs and weights
  ("n/a" where PyTorch is not installed);
- CPU vs GPU: the same case run on the GPU against the CPU, in float64 ("n/a" where no GPU is usable).

Every case runs under each engine asked for (``--engine``: both by default), a row each: the reference
ops the docs derive and the fast ones, each checked on its own. A cell fails above its tolerance
(``TOLERANCES``) or when its check raises.
"""
from collections import namedtuple

import numpy

from . import backend
from .engines import ENGINES, engine
from .gradcheck import TOLERANCE, check_module, relative_error
from .gradcheck_cli import SEED, Case, builtin_cases
from .nn.module import primary_output
from .torch_equivalents import torch_layer, torch_loss

COLUMNS = ("finite differences", "PyTorch", "CPU vs GPU")
TOLERANCES = {"finite differences": TOLERANCE, "PyTorch": 1e-9, "CPU vs GPU": 1e-9}
MODEL_SAMPLES = 6  # entries per tensor that the models' finite differences check (plus the largest)

Cell = namedtuple("Cell", ["error", "note"])  # note: None, "n/a", or the message of a check that raised


# ------------------------------------------------------------------ running one case
def as_list(inputs):
    return list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]


def module_results(module, inputs, wrt, upstream=None, seed=SEED):
    """({name: host array}, upstream) of one forward and backward: the output, each checked input's gradient
    and each parameter's; ``upstream`` (the output's shape) is drawn from ``seed`` unless given."""
    inputs = as_list(inputs)
    output = primary_output(module(*inputs))
    if upstream is None:
        upstream = numpy.random.default_rng(seed).standard_normal(output.shape)
    module.zero_grad()
    gradients = module.backward(backend.to_device(upstream, backend.device_of(output)))
    gradients = gradients if isinstance(gradients, tuple) else (gradients,)
    results = {"output": output}
    results.update((f"d input{position}", gradient) for position, gradient in zip(wrt, gradients))
    results.update((f"d {name}", parameter.grad) for name, parameter in module.named_parameters())
    return {name: backend.to_numpy(value) for name, value in results.items()}, upstream


def loss_results(loss, logits, target):
    """{name: host array}: the loss value and d value / d logits."""
    value = loss(logits, target)
    return {"value": numpy.asarray(backend.to_numpy(value)), "d logits": backend.to_numpy(loss.backward())}


def largest_error(ours, theirs):
    """The largest relative error over the tensors both dicts name; a missing tensor is an error."""
    missing = sorted(set(ours) ^ set(theirs))
    if missing:
        raise KeyError(f"tensors found on one side only: {', '.join(missing)}")
    return max(relative_error(ours[name], theirs[name]) for name in ours)


def fresh_float64(case, rng):
    """A new float64 layer (or loss) of ``case`` and its inputs, float64 where they are floating point."""
    made = case.make()
    if case.wrt is not None:
        made.double()
    inputs = [numpy.asarray(value, numpy.float64) if isinstance(value, numpy.ndarray) and value.dtype.kind == "f"
              else value for value in as_list(case.make_inputs(rng))]
    return made, inputs


def on_gpu(value):
    return backend.to_device(value, "gpu") if isinstance(value, numpy.ndarray) else value


def gpu_error(case):
    """The case on the CPU and again on the GPU (same weights, same inputs, float64)."""
    made, inputs = fresh_float64(case, numpy.random.default_rng(SEED))
    if case.wrt is None:
        cpu = loss_results(made, *inputs)
        return largest_error(cpu, loss_results(case.make(), *[on_gpu(value) for value in inputs]))
    on_device = case.make().double()
    on_device.load_state_dict(made.state_dict())
    on_device.train(made.training).to("gpu")
    cpu, upstream = module_results(made, [value.copy() if isinstance(value, numpy.ndarray) else value
                                          for value in inputs], case.wrt)
    gpu, _ = module_results(on_device, [on_gpu(value) for value in inputs], case.wrt, upstream)
    return largest_error(cpu, gpu)


def pytorch_error(torch, case):
    """The case against PyTorch's autograd on the same float64 inputs and weights."""
    made, inputs = fresh_float64(case, numpy.random.default_rng(SEED))
    if case.wrt is None:
        theirs = torch_loss(torch, made)
        logits = torch.tensor(inputs[0], requires_grad=True)
        value = theirs(logits, torch.as_tensor(inputs[1]))
        value.backward()
        reference = {"value": value.detach().numpy(), "d logits": logits.grad.numpy()}
        return largest_error(loss_results(made, *inputs), reference)
    theirs = torch_equivalent(torch, case, made)
    ours, upstream = module_results(made, [value.copy() if isinstance(value, numpy.ndarray) else value
                                           for value in inputs], case.wrt)
    tensors = [torch.tensor(value, requires_grad=position in case.wrt) if isinstance(value, numpy.ndarray)
               else value for position, value in enumerate(inputs)]
    output = theirs(*tensors)
    output = output[0] if isinstance(output, tuple) else output
    (output * torch.tensor(upstream)).sum().backward()
    reference = {"output": output.detach().numpy()}
    reference.update((f"d input{position}", tensors[position].grad.numpy()) for position in case.wrt)
    reference.update((f"d {name}", parameter.grad.numpy()) for name, parameter in theirs.named_parameters())
    return largest_error(ours, reference)


def torch_equivalent(torch, case, made):
    """PyTorch's module for ``made`` (a layer, or a model with ``case.torch_equivalent``), same weights and mode."""
    theirs = case.torch_equivalent(torch) if case.torch_equivalent is not None else torch_layer(torch, made)
    theirs.double()
    theirs.load_state_dict({name: torch.from_numpy(value) for name, value in made.state_dict().items()})
    return theirs.train(made.training)


# ------------------------------------------------------------------ the models
def signal_preserving_init(model, rng):
    """He-normal conv weights and N(0, 0.1) biases: tiny models keep gradients of order 1, far above the
    finite differences' rounding (with the default init they fall to 1e-20 without batch norm)."""
    from .nn import Conv2d, ConvTranspose2d
    for module in model.modules():
        if isinstance(module, (Conv2d, ConvTranspose2d)):
            weight = module.weight.data
            kh, kw = module.kernel_size
            fan_in = weight.shape[1] * kh * kw if isinstance(module, Conv2d) else \
                weight.shape[0] * kh * kw / (module.stride[0] * module.stride[1])
            weight[...] = rng.standard_normal(weight.shape) * numpy.sqrt(2.0 / fan_in)
            if module.bias is not None:
                module.bias.data[...] = 0.1 * rng.standard_normal(module.bias.shape)
    return model


def model_case(name, config, build, build_equivalent, shape):
    """A Case for a tiny model in eval mode (batch norm then an affine map: finite differences stay smooth;
    its training mode is the BatchNorm2d rows' business), finite differences on a sample of entries."""
    def make():
        return signal_preserving_init(build(), numpy.random.default_rng(SEED)).eval()

    def torch_equivalent(torch):
        from models.torch_equivalents import torch_models
        return build_equivalent(torch_models(torch))

    def run(rng):
        return check_module(make(), rng.standard_normal(shape), max_elements=MODEL_SAMPLES)
    return Case(name, config, run, make, lambda rng: rng.standard_normal(shape), (0,), torch_equivalent)


def model_cases():
    """The built-in models, tiny, each with its PyTorch equivalent (``models.torch_equivalents``)."""
    import models
    widths = (2, 3, 3, 4, 4)
    return [
        model_case("SegNetSmall", "bilinear, F=2", lambda: models.SegNetSmall(1, 2, init_features=2),
                   lambda t: t.SegNetSmall(1, 2, 2, "bilinear"), (1, 1, 16, 16)),
        model_case("SegNetSmall", "unpool, F=2, 17x19", lambda: models.SegNetSmall(1, 2, 2, upsample="unpool"),
                   lambda t: t.SegNetSmall(1, 2, 2, "unpool"), (1, 1, 17, 19)),
        model_case("SegNet", f"widths {widths}", lambda: models.SegNet(1, 2, widths=widths),
                   lambda t: t.SegNet(1, 2, widths, (2, 2, 3, 3, 3)), (1, 1, 32, 32)),
        model_case("SegNetBasic", "width 2", lambda: models.SegNetBasic(1, 2, width=2),
                   lambda t: t.SegNetBasic(1, 2, 2), (1, 1, 16, 16)),
        model_case("FCN", f"widths {widths}", lambda: models.FCN(1, 2, widths=widths),
                   lambda t: t.FCN(1, 2, widths), (1, 1, 32, 32)),
    ] + [model_case(f"FCN{stride}s", f"fc 3, widths {widths}",
                    lambda stride=stride: getattr(models, f"FCN{stride}s")(1, 2, 3, widths=widths),
                    lambda t, stride=stride: t.FCNSkip(stride, 1, 2, 3, widths), (1, 1, 32, 32))
         for stride in (32, 16, 8)]


# ------------------------------------------------------------------ the table
def try_cell(check, *arguments):
    try:
        return Cell(check(*arguments), None)
    except Exception as error:  # a check that raises fails its cell and the table goes on
        return Cell(float("nan"), f"error: {type(error).__name__}: {error}")


def case_row(case, torch, gpu):
    """{column: Cell} for one case."""
    finite = try_cell(lambda: max(case.run(numpy.random.default_rng(SEED)).values()))
    parity = try_cell(pytorch_error, torch, case) if torch is not None else Cell(float("nan"), "n/a")
    device = try_cell(gpu_error, case) if gpu else Cell(float("nan"), "n/a")
    return dict(zip(COLUMNS, (finite, parity, device)))


def failures(case, engine_name, row):
    """Lines naming each failing cell of a row."""
    lines = []
    for column, cell in row.items():
        if cell.note == "n/a":
            continue
        if cell.note is not None or not cell.error <= TOLERANCES[column]:
            what = cell.note or f"{cell.error:.2e} > {TOLERANCES[column]:g}"
            lines.append(f"{case.layer} [{case.config}] {column}: {what} ({engine_name} engine)")
    return lines


def cell_text(cell):
    return cell.note if cell.note == "n/a" else ("error" if cell.note else f"{cell.error:.1e}")


def all_cases():
    return builtin_cases() + model_cases()


def format_rows(rows):
    """A markdown table of (case, engine name, {column: Cell}) rows."""
    header = ("layer", "config", "engine") + COLUMNS + ("result",)
    body = [(case.layer, case.config.replace("|", "\\|"), engine_name) +
            tuple(cell_text(row[column]) for column in COLUMNS) +
            ("FAIL" if failures(case, engine_name, row) else "pass",) for case, engine_name, row in rows]
    widths = [max(len(line[k]) for line in [header] + body) for k in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |"
             for line in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def engine_rows(cases, engine_name, torch, gpu):
    """[(case, engine name, {column: Cell})] of every case run on engine ``engine_name``."""
    with engine(engine_name):
        return [(case, engine_name, case_row(case, torch, gpu)) for case in cases]


def run_all(only=None, engines=ENGINES, print_line=print):
    """Check every case (or those whose layer name contains ``only``) on each of ``engines``; print the table;
    return the exit status."""
    cases = [case for case in all_cases() if only is None or only.lower() in case.layer.lower()]
    if not cases:
        print_line(f"no built-in layer, loss or model matches {only!r}")
        return 2
    torch, gpu = import_torch(), backend.gpu_available()
    rows = [row for engine_name in engines for row in engine_rows(cases, engine_name, torch, gpu)]
    print_line(format_rows(rows))
    failed = [line for case, engine_name, row in rows for line in failures(case, engine_name, row)]
    tolerances = ", ".join(f"{column} {TOLERANCES[column]:g}" for column in COLUMNS)
    notes = [] if torch is not None else ["PyTorch: n/a, PyTorch is not installed"]
    notes += [] if gpu else ["CPU vs GPU: n/a, no usable GPU (CuPy and a CUDA device)"]
    for note in notes:
        print_line(note)
    if failed:
        print_line(f"\nFAILED, {len(failed)} of the cells (tolerances: {tolerances}):\n" + "\n".join(failed))
        return 1
    print_line(f"\nall {len(rows)} rows pass (tolerances: {tolerances})")
    return 0
