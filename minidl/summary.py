"""``summary``: a torchsummary-style table of the layers a model calls, their output shapes and parameters."""
import sys

import numpy

from . import backend
from .grad_mode import no_grad
from .nn.module import primary_output

RULE = "-" * 64
DOUBLE_RULE = "=" * 64
MEGABYTE = 1024 ** 2


def _model_dtype_and_device(model):
    for parameter in model.parameters():
        return parameter.dtype, backend.device_of(parameter.data)
    return numpy.dtype(numpy.float32), "cpu"


def _record_leaf_calls(model, x):
    """Run ``model(x)`` in eval mode under ``no_grad``; return [(layer type, output shape, own params)] per leaf call.

    Eval mode keeps BatchNorm's running statistics untouched; each module's mode and the cache a
    pending backward needs are restored afterwards, so a summary between forward and backward is harmless.
    """
    rows = []

    def observe(module, inputs, output):
        if not list(module.children()):
            own_parameters = sum(p.size for p in module.parameters(recurse=False))
            rows.append((type(module).__name__, tuple(primary_output(output).shape), own_parameters))

    modes = [(module, module.training, module.cache) for module in model.modules()]
    model.eval()
    handles = [module.register_forward_hook(observe) for module in model.modules()]
    try:
        with no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, training, cache in modes:
            object.__setattr__(module, "training", training)
            object.__setattr__(module, "cache", cache)
    return rows


def summary(model, input_shape, batch_size=-1, device=None, file=None):
    """Print a table of every leaf layer ``model`` calls on an input of shape ``input_shape`` (no batch).

    As torchsummary, except that the forward runs in eval mode (BatchNorm's running statistics stay
    untouched; every module's mode is restored) under ``no_grad`` on zeros of shape (1, *input_shape),
    with the dtype and device of the model's parameters (or ``device``). Each row is "Type-i" (i counts
    calls), the output shape with the batch shown as ``batch_size`` (-1 by default) and the layer's own
    parameter count; then the totals and a memory estimate in MB for a batch of ``max(batch_size, 1)``:
    input, forward/backward activations (twice the outputs), parameters. Every minidl parameter is
    trainable. Prints to ``file`` (stdout by default) and returns the model's total parameter count.
    """
    dtype, model_device = _model_dtype_and_device(model)
    device = model_device if device is None else backend.check_device_name(device)
    shape = tuple(int(s) for s in input_shape)
    x = backend.to_device(numpy.zeros((1,) + shape, dtype=dtype), device)
    rows = _record_leaf_calls(model, x)
    total_parameters = int(sum(p.size for p in model.parameters()))
    samples = max(batch_size, 1)
    itemsize = numpy.dtype(dtype).itemsize
    output_elements = sum(int(numpy.prod(out_shape[1:])) for _, out_shape, _ in rows) * samples
    input_mb = int(numpy.prod(shape)) * samples * itemsize / MEGABYTE
    activations_mb = 2 * output_elements * itemsize / MEGABYTE
    parameters_mb = total_parameters * itemsize / MEGABYTE

    lines = [RULE, f"{'Layer (type)':>20}  {'Output Shape':>25} {'Param #':>15}", DOUBLE_RULE]
    for index, (layer, out_shape, parameters) in enumerate(rows, start=1):
        shown = str([batch_size] + list(out_shape[1:]))
        lines.append(f"{f'{layer}-{index}':>20}  {shown:>25} {parameters:>15,}")
    lines += [DOUBLE_RULE,
              f"Total params: {total_parameters:,}",
              f"Trainable params: {total_parameters:,}",
              "Non-trainable params: 0",
              RULE,
              f"Input size (MB): {input_mb:.2f}",
              f"Forward/backward pass size (MB): {activations_mb:.2f}",
              f"Params size (MB): {parameters_mb:.2f}",
              f"Estimated Total Size (MB): {input_mb + activations_mb + parameters_mb:.2f}",
              RULE]
    print("\n".join(lines), file=file if file is not None else sys.stdout)
    return total_parameters
