"""Running the loaded copy's layers, losses and optimizers for a case, the grader's central differences of
them, and their PyTorch equivalents. Every tensor is named as the cases name it: "output", "indices",
"input gradient", "<parameter> gradient"; "value", "logits gradient"; "parameter k update s"."""
import numpy

import minidl

from .cases import Case
from .measures import gradient_errors


def normal(rng, shape, dtype=numpy.float64, scale=1.0):
    """``scale`` times standard normal entries."""
    return (scale * rng.standard_normal(shape)).astype(dtype)


def away_from_zero(rng, shape, dtype=numpy.float64):
    """Entries with |x| in [0.1, 2]: central differences never straddle a kink at 0."""
    return (rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)).astype(dtype)


def tie_free(rng, shape, dtype=numpy.float64):
    """A shuffled linspace with jitter: no two entries within 0.7 steps of each other, so a max has no tie
    and no perturbation by central differences changes which entry wins."""
    size = int(numpy.prod(shape))
    spacing = 6.0 / max(size - 1, 1)
    values = numpy.linspace(-3.0, 3.0, size) + rng.uniform(0, 0.3 * spacing, size)
    return rng.permutation(values).reshape(shape).astype(dtype)


def without_overflow(run):
    """``run()`` with NumPy raising on overflow, invalid results and division by zero."""
    with numpy.errstate(over="raise", invalid="raise", divide="raise"):
        return run()


def upstream_for(output, seed):
    """The upstream gradient of an output: standard normal entries of its shape and dtype, from ``seed``."""
    output = numpy.asarray(output)
    return numpy.random.default_rng(seed).standard_normal(output.shape).astype(output.dtype)


def primary(output):
    """y of a layer returning y or (y, indices)."""
    return output[0] if isinstance(output, tuple) else output


def call_layer(layer, x, inputs):
    """The default forward call: ``layer(x)``."""
    return layer(x)


def prepared(build, inputs):
    """``build()`` cast to the input's dtype, its parameters set from ``inputs["parameters"]``."""
    layer = build()
    layer.to(dtype=inputs["x"].dtype)
    for name, parameter in layer.named_parameters():
        parameter.data[...] = inputs["parameters"][name]
    return layer


def layer_inputs(build, x, rng, **settings):
    """Inputs of a layer case: x, parameters of the built layer's shapes drawn from ``rng`` in x's dtype
    (standard deviation 0.5), the upstream gradient's seed, and ``settings`` (extra forward arguments)."""
    parameters = {name: normal(rng, p.data.shape, x.dtype, 0.5) for name, p in build().named_parameters()}
    return dict(settings, x=x, parameters=parameters, seed=int(rng.integers(2 ** 31)))


def run_layer(build, inputs, call=call_layer):
    """Forward and backward once: output (and indices), input gradient, parameter gradients."""
    layer = prepared(build, inputs)
    output = call(layer, inputs["x"].copy(), inputs)
    tensors = {"output": primary(output)}
    if isinstance(output, tuple):
        tensors["indices"] = output[1]
    tensors["input gradient"] = layer.backward(upstream_for(tensors["output"], inputs["seed"]))
    tensors.update({f"{name} gradient": p.grad.copy() for name, p in layer.named_parameters()})
    return tensors


def layer_gradients(build, inputs, actual, call=call_layer):
    """Central-difference errors of the actual input and parameter gradients (float64 cases)."""
    layer = prepared(build, inputs)
    x = inputs["x"]
    with minidl.no_grad():
        upstream = upstream_for(primary(call(layer, x.copy(), inputs)), inputs["seed"])

    def scalar():
        with minidl.no_grad():
            return float(numpy.sum(primary(call(layer, x.copy(), inputs)) * upstream))
    tensors = [("input gradient", x, actual.get("input gradient"))]
    tensors += [(f"{name} gradient", p.data, actual.get(f"{name} gradient")) for name, p in layer.named_parameters()]
    return gradient_errors(scalar, tensors)


def torch_layer_run(torch, inputs, forward):
    """PyTorch's tensors of a layer case: ``forward(torch, x, parameters, inputs)`` returns y or (y, indices)."""
    x = torch.tensor(inputs["x"], requires_grad=True)
    parameters = {name: torch.tensor(value, requires_grad=True) for name, value in inputs["parameters"].items()}
    output = forward(torch, x, parameters, inputs)
    y = primary(output)
    y.backward(torch.from_numpy(upstream_for(y.detach().numpy(), inputs["seed"])))
    tensors = {"output": y.detach().numpy(), "input gradient": x.grad.numpy()}
    if isinstance(output, tuple):
        tensors["indices"] = output[1].numpy()
    tensors.update({f"{name} gradient": p.grad.numpy() for name, p in parameters.items()})
    return tensors


def run_loss(build, inputs):
    """value (a float64 scalar, or the per-element array for "none") and d value / d logits."""
    loss = build()
    value = loss(inputs["logits"].copy(), inputs["target"].copy())
    return {"value": numpy.asarray(value), "logits gradient": loss.backward(inputs.get("upstream"))}


def loss_gradients(build, inputs, actual):
    """Central-difference error of the actual logits gradient."""
    loss, logits, target = build(), inputs["logits"], inputs["target"]
    weight = 1.0 if inputs.get("upstream") is None else inputs["upstream"]

    def scalar():
        with minidl.no_grad():
            return float(numpy.sum(numpy.asarray(loss(logits.copy(), target)) * weight))
    return gradient_errors(scalar, [("logits gradient", logits, actual.get("logits gradient"))])


def torch_loss_run(torch, inputs, forward):
    """PyTorch's value and logits gradient: ``forward(torch, logits, target)`` returns the value."""
    logits = torch.tensor(inputs["logits"], requires_grad=True)
    value = forward(torch, logits, torch.tensor(inputs["target"]))
    upstream = inputs.get("upstream")
    value.backward(None if upstream is None else torch.as_tensor(upstream, dtype=value.dtype))
    value = value.detach().numpy()
    return {"value": value if value.ndim else value.astype(numpy.float64), "logits gradient": logits.grad.numpy()}


def run_optimizer(build, inputs):
    """Steps of ``build(parameters)`` with the drawn gradients (and learning rates): every step's update of
    every parameter, the final parameters, and the optimizer's per-parameter state."""
    parameters = [minidl.Parameter(value.copy()) for value in inputs["parameters"]]
    optimizer = build(parameters)
    tensors = {}
    for step, (gradients, lr) in enumerate(zip(inputs["gradients"], inputs["lrs"]), 1):
        before = [p.data.copy() for p in parameters]
        for parameter, gradient in zip(parameters, gradients):
            parameter.grad = gradient.copy()
        optimizer.lr = lr
        optimizer.step()
        tensors.update({f"parameter {k} update {step}": p.data - before[k] for k, p in enumerate(parameters)})
    tensors.update({f"parameter {k}": p.data.copy() for k, p in enumerate(parameters)})
    tensors.update({name: numpy.array(value) for name, value in optimizer.state_dict().items()
                    if name.startswith("state.")})
    return tensors


def torch_optimizer_run(torch, inputs, build):
    """PyTorch's updates and final parameters: ``build(torch.optim, parameters)`` makes the optimizer."""
    parameters = [torch.tensor(value, requires_grad=True) for value in inputs["parameters"]]
    optimizer = build(torch.optim, parameters)
    tensors = {}
    for step, (gradients, lr) in enumerate(zip(inputs["gradients"], inputs["lrs"]), 1):
        before = [p.detach().numpy().copy() for p in parameters]
        for parameter, gradient in zip(parameters, gradients):
            parameter.grad = torch.tensor(gradient)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        tensors.update({f"parameter {k} update {step}": p.detach().numpy() - before[k]
                        for k, p in enumerate(parameters)})
    tensors.update({f"parameter {k}": p.detach().numpy().copy() for k, p in enumerate(parameters)})
    return tensors


def layer_case(name, build, draw, dtype=numpy.float64, call=call_layer, equivalent=None, numeric=True):
    """A Case of layer ``build()``: ``draw(rng)`` makes its inputs (``layer_inputs``); the central differences
    run in float64 cases when ``numeric``; ``equivalent(torch, x, parameters, inputs)`` is PyTorch's forward."""
    return Case(name, draw, lambda inputs: run_layer(build, inputs, call), dtype,
                (lambda inputs, actual: layer_gradients(build, inputs, actual, call))
                if numeric and dtype == numpy.float64 else None,
                (lambda torch, inputs: torch_layer_run(torch, inputs, equivalent)) if equivalent else None)


def loss_case(name, build, draw, dtype=numpy.float64, equivalent=None, numeric=True, strict=False):
    """A Case of loss ``build()``: ``draw(rng)`` gives logits, target and an optional upstream; ``strict``
    runs it with NumPy raising on overflow; ``equivalent(torch, logits, target)`` is PyTorch's value."""
    def run(inputs):
        return without_overflow(lambda: run_loss(build, inputs)) if strict else run_loss(build, inputs)
    return Case(name, draw, run, dtype,
                (lambda inputs, actual: loss_gradients(build, inputs, actual))
                if numeric and dtype == numpy.float64 else None,
                (lambda torch, inputs: torch_loss_run(torch, inputs, equivalent)) if equivalent else None)


def optimizer_case(name, build, equivalent, lrs, dtype=numpy.float64, shrinking=False, shapes=((3, 4), (5,))):
    """A Case of ``build(parameters, lr)`` stepping two parameters with drawn gradients, one step per entry
    of ``lrs`` (the learning rate of that step); ``shrinking`` gradients get smaller step by step (so AMSGrad's
    maximum matters). ``equivalent(optim, parameters, lr)`` builds PyTorch's optimizer."""
    def draw(rng):
        gradients = [[normal(rng, shape, dtype, 2.0 / step if shrinking else 1.0) for shape in shapes]
                     for step in range(1, len(lrs) + 1)]
        return {"parameters": [normal(rng, shape, dtype) for shape in shapes], "gradients": gradients, "lrs": lrs}
    return Case(name, draw, lambda inputs: run_optimizer(lambda parameters: build(parameters, lrs[0]), inputs),
                dtype, equivalent=lambda torch, inputs: torch_optimizer_run(
                    torch, inputs, lambda optim, parameters: equivalent(optim, parameters, lrs[0])))
