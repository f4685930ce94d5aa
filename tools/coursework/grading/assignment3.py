"""Held-out cases of assignment 3: max-pooling with indices, max-unpooling, bilinear upsampling, batch norm.

Pooling inputs are tie-free; windows overlap, pad, dilate and (ceil_mode) overhang. Unpooling gets indices
of disjoint windows (as a pool's) and odd output sizes. Upsampling covers align_corners both ways, sizes and
non-integer scale factors. Batch norm runs several training steps (running statistics, momentum or the
cumulative average), then evaluation; without affine parameters and without running statistics too.
"""
import numpy

import minidl

from .cases import Case
from .harness import layer_case, layer_gradients, layer_inputs, normal, prepared, tie_free, upstream_for

F32, F64 = numpy.float32, numpy.float64


def pool_case(name, shape, kernel, stride=None, padding=0, dilation=1, ceil_mode=False, dtype=F64):
    def build():
        return minidl.nn.MaxPool2d(kernel, stride, padding, True, dilation=dilation, ceil_mode=ceil_mode)

    def equivalent(torch, x, parameters, inputs):
        return torch.nn.functional.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    return layer_case(name, build, lambda rng: layer_inputs(build, tie_free(rng, shape, dtype), rng), dtype,
                      equivalent=equivalent)


def max_pool2d_cases():
    return [
        pool_case("k2 s2, (2, 3, 8, 8)", (2, 3, 8, 8), 2, 2),
        pool_case("overlapping k3 s2 p1, odd (2, 2, 7, 9)", (2, 2, 7, 9), 3, 2, 1),
        pool_case("k(3,2) s(1,2) p(1,0) ceil_mode, (1, 3, 6, 7)", (1, 3, 6, 7), (3, 2), (1, 2), (1, 0), ceil_mode=True),
        pool_case("k3 s3 p1 ceil_mode, float32 (1, 2, 8, 10)", (1, 2, 8, 10), 3, 3, 1, ceil_mode=True, dtype=F32),
        pool_case("k2 s1 d2, (1, 2, 7, 7)", (1, 2, 7, 7), 2, 1, dilation=2),
        pool_case("k(2,3) s(3,2) p1 d(2,1) ceil_mode, (2, 1, 9, 8)", (2, 1, 9, 8), (2, 3), (3, 2), 1, (2, 1), True),
    ]


def window_cell(rng, position, kernel, stride, padding, size):
    """A random cell of window ``position`` along one axis that lies inside [0, size)."""
    cells = [position * stride - padding + tap for tap in range(kernel)]
    return rng.choice([cell for cell in cells if 0 <= cell < size])


def unpool_indices(rng, shape, kernel, stride, padding, output_hw):
    """Indices (N, C, H, W) int64 as a pool with disjoint windows gives: a cell of each window, h * W + w."""
    indices = numpy.empty(shape, numpy.int64)
    for n, c, i, j in numpy.ndindex(*shape):
        row = window_cell(rng, i, kernel[0], stride[0], padding[0], output_hw[0])
        column = window_cell(rng, j, kernel[1], stride[1], padding[1], output_hw[1])
        indices[n, c, i, j] = row * output_hw[1] + column
    return indices


def unpool_case(name, shape, kernel, stride, padding=(0, 0), output_hw=None, dtype=F64):
    default = tuple((shape[2 + a] - 1) * stride[a] - 2 * padding[a] + kernel[a] for a in range(2))
    size = output_hw or default

    def build():
        return minidl.nn.MaxUnpool2d(kernel, stride, padding)

    def draw(rng):
        return layer_inputs(build, normal(rng, shape, dtype), rng,
                            indices=unpool_indices(rng, shape, kernel, stride, padding, size))

    def call(layer, x, inputs):
        return layer(x, inputs["indices"].copy(), output_size=output_hw)

    def equivalent(torch, x, parameters, inputs):
        return torch.nn.functional.max_unpool2d(x, torch.from_numpy(inputs["indices"]), kernel, stride, padding, size)
    return layer_case(name, build, draw, dtype, call, equivalent)


def max_unpool2d_cases():
    return [
        unpool_case("k2 s2, (2, 3, 4, 5)", (2, 3, 4, 5), (2, 2), (2, 2)),
        unpool_case("k2 s2, output_size (9, 11), (2, 2, 4, 5)", (2, 2, 4, 5), (2, 2), (2, 2), output_hw=(9, 11)),
        unpool_case("k(2,3) s(2,3), output_size (7, 10), float32 (1, 2, 3, 3)", (1, 2, 3, 3), (2, 3), (2, 3),
                    output_hw=(7, 10), dtype=F32),
        unpool_case("k3 s3 p1, (1, 2, 3, 4)", (1, 2, 3, 4), (3, 3), (3, 3), (1, 1)),
    ]


def upsample_case(name, shape, size=None, scale=None, align_corners=False, dtype=F64, mode="bilinear"):
    """An Upsample case; ``align_corners`` is passed for bilinear only (nearest takes None)."""
    corners = align_corners if mode == "bilinear" else None

    def build():
        return minidl.nn.Upsample(size, scale, mode, corners)

    def equivalent(torch, x, parameters, inputs):
        return torch.nn.functional.interpolate(x, size, scale, mode, corners)
    return layer_case(name, build, lambda rng: layer_inputs(build, normal(rng, shape, dtype), rng), dtype,
                      equivalent=equivalent)


def upsample_bilinear_cases():
    return [
        upsample_case("scale 2, align_corners, (2, 3, 4, 5)", (2, 3, 4, 5), scale=2, align_corners=True),
        upsample_case("scale 2, (2, 3, 4, 5)", (2, 3, 4, 5), scale=2),
        upsample_case("size (7, 11), (1, 2, 3, 4)", (1, 2, 3, 4), size=(7, 11)),
        upsample_case("size (7, 11), align_corners, float32 (1, 2, 3, 4)", (1, 2, 3, 4), size=(7, 11),
                      align_corners=True, dtype=F32),
        upsample_case("scale 1.5, (1, 2, 5, 6)", (1, 2, 5, 6), scale=1.5),
        upsample_case("scale (2.3, 0.6), (1, 1, 4, 10)", (1, 1, 4, 10), scale=(2.3, 0.6)),
        upsample_case("size (1, 5), align_corners, (1, 1, 3, 4)", (1, 1, 3, 4), size=(1, 5), align_corners=True),
        upsample_case("nearest, size (7, 9), (2, 2, 3, 4)", (2, 2, 3, 4), size=(7, 9), mode="nearest"),
        upsample_case("nearest, scale 3, float32 (1, 2, 3, 3)", (1, 2, 3, 3), scale=3, dtype=F32, mode="nearest"),
    ]


def batch_norm_case(name, shape, steps=3, affine=True, track=True, momentum=0.1, eps=1e-5, dtype=F64,
                    given_statistics=False):
    """``steps`` training steps, then one in evaluation mode; every step's output, gradients and running
    statistics. ``given_statistics``: the running statistics start from drawn values."""
    channels = shape[1]

    def build():
        return minidl.nn.BatchNorm2d(channels, eps, momentum, affine, track)

    def draw(rng):
        offset, spread = rng.normal(0, 2, (1, channels, 1, 1)), rng.uniform(0.5, 3, (1, channels, 1, 1))
        batches = [(normal(rng, shape) * spread + offset).astype(dtype) for _ in range(steps + 1)]
        statistics = (normal(rng, channels, dtype), rng.uniform(0.5, 2, channels).astype(dtype))
        return dict(layer_inputs(build, batches[-1], rng), batches=batches[:-1],
                    seeds=[int(seed) for seed in rng.integers(2 ** 31, size=steps)],
                    statistics=statistics if given_statistics else None)

    def started(inputs):
        layer = prepared(build, inputs)
        if inputs["statistics"] is not None:
            layer.running_mean[...], layer.running_var[...] = inputs["statistics"]
        return layer

    def run(inputs):
        layer, tensors = started(inputs), {}
        for step, (x, seed) in enumerate(zip(inputs["batches"], inputs["seeds"]), 1):
            tensors.update(named_step(layer, x, seed, f"step {step}"))
        layer.eval()
        tensors.update(named_step(layer, inputs["x"], inputs["seed"], "eval"))
        return tensors

    def gradients(inputs, actual):
        """Central differences of the first training step and of the evaluation step (with the running
        statistics the steps left)."""
        statistics = (actual["eval running_mean"], actual["eval running_var"]) if track else None
        evaluation = dict(inputs, statistics=statistics)
        errors = step_gradients(lambda: started(evaluation).eval(), evaluation, actual, "eval")
        if steps:
            first = dict(inputs, x=inputs["batches"][0], seed=inputs["seeds"][0])
            errors.update(step_gradients(lambda: started(first), first, actual, "step 1"))
        return errors

    def equivalent(torch, inputs):
        return torch_batch_norm(torch, inputs, build(), steps)
    return Case(name, draw, run, dtype, gradients if dtype == F64 else None, equivalent)


def named_step(layer, x, seed, prefix):
    """One forward and backward of ``layer``: "<prefix> output", "... input gradient", parameter gradients and
    running statistics."""
    layer.zero_grad()
    y = layer(x.copy())
    tensors = {"output": y, "input gradient": layer.backward(upstream_for(y, seed))}
    tensors.update({f"{name} gradient": p.grad.copy() for name, p in layer.named_parameters()})
    if layer.track_running_stats:
        tensors.update(running_mean=layer.running_mean.copy(), running_var=layer.running_var.copy())
    return {f"{prefix} {name}": value for name, value in tensors.items()}


def step_gradients(build, inputs, actual, prefix):
    """Central-difference errors of the "<prefix> ..." gradients of one step, named with the prefix."""
    step = {name[len(prefix) + 1:]: value for name, value in actual.items() if name.startswith(prefix + " ")}
    return {f"{prefix} {name}": error for name, error in layer_gradients(build, inputs, step).items()}


def torch_batch_norm(torch, inputs, layer, steps):
    """PyTorch's tensors of a batch norm case, from torch.nn.BatchNorm2d with the layer's settings."""
    dtype = getattr(torch, str(inputs["x"].dtype))
    module = torch.nn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum, layer.affine,
                                  layer.track_running_stats).to(dtype)
    with torch.no_grad():
        for name, value in inputs["parameters"].items():
            getattr(module, name).copy_(torch.from_numpy(value))
        if inputs["statistics"] is not None:
            module.running_mean.copy_(torch.from_numpy(inputs["statistics"][0]))
            module.running_var.copy_(torch.from_numpy(inputs["statistics"][1]))
    tensors = {}
    batches = list(zip(inputs["batches"], inputs["seeds"], [f"step {k}" for k in range(1, steps + 1)]))
    for x, seed, prefix in batches + [(inputs["x"], inputs["seed"], "eval")]:
        module.train(prefix != "eval")
        module.zero_grad()
        x = torch.tensor(x, requires_grad=True)
        y = module(x)
        y.backward(torch.from_numpy(upstream_for(y.detach().numpy(), seed)))
        step = {"output": y.detach().numpy(), "input gradient": x.grad.numpy()}
        step.update({f"{name} gradient": p.grad.numpy().copy() for name, p in module.named_parameters()})
        if module.track_running_stats:
            step.update(running_mean=module.running_mean.numpy().copy(), running_var=module.running_var.numpy().copy())
        tensors.update({f"{prefix} {name}": value for name, value in step.items()})
    return tensors


def batch_norm_cases():
    return [
        batch_norm_case("3 training steps, then eval, (4, 3, 3, 5)", (4, 3, 3, 5)),
        batch_norm_case("momentum None (cumulative average), no affine, (3, 2, 4, 3)", (3, 2, 4, 3), affine=False,
                        momentum=None),
        batch_norm_case("no running statistics, (2, 2, 4, 3)", (2, 2, 4, 3), 2, track=False),
        batch_norm_case("eps 1e-3, momentum 0.3, float32 (4, 3, 2, 3)", (4, 3, 2, 3), eps=1e-3, momentum=0.3,
                        dtype=F32),
        batch_norm_case("eval with given running statistics, (3, 3, 2, 4)", (3, 3, 2, 4), 0, given_statistics=True),
        batch_norm_case("two values per channel, (1, 2, 1, 2)", (1, 2, 1, 2), 1),
    ]
