"""Watching backprop: per-layer statistics of a training step, gathered by module hooks.

    inspector = Inspector(model)          # hooks on every leaf layer and on the model
    logits = model(x); value = loss(logits, y)
    model.backward(loss.backward()); optimizer.step()
    stats = inspector.end_step()          # {(layer name, statistic): float}, one fetch from the device
    inspector.close()                     # the hooks come off

and ``input_gradient(model, loss, x, target)``: d loss / d x, the saliency map of an input.

Per leaf layer (a module without children), for every forward that will be backpropagated (so not under
``no_grad``) and the backward that follows:

- ``activation_mean``, ``activation_std``: of the layer's output;
- ``zero_fraction``: the share of exact zeros in a ReLU's output (dead or inactive units);
- ``grad_input_norm``: the L2 norm of the gradient the layer's backward hands on (grad_input);
- for each of its parameters P (``weight``, ``bias``): ``P_norm``, ``P_grad_norm`` (after the whole backward)
  and ``P_update_ratio`` = ||P after the step - P before|| / ||P before||, the step's relative change
  (a common rule of thumb wants it near 1e-3; NaN where P was all zeros, as a bias may start).

Every statistic is computed where the arrays live (NumPy or CuPy) as a 0-d array; ``end_step`` stacks them
and copies them to the host once.
"""
from collections import OrderedDict, namedtuple
from contextlib import contextmanager

from .backend import get_array_module, to_numpy
from .grad_mode import is_grad_enabled
from .nn.activation import ReLU
from .nn.module import primary_output

Snapshot = namedtuple("Snapshot", ["layer", "name", "parameter", "before"])


def norm(array):
    """||array||_2 over all entries, a 0-d array on the array's device."""
    flat = array.reshape(-1)
    return get_array_module(array).sqrt(flat.dot(flat))


def activation_stats(output, is_relu):
    """{statistic: 0-d array} of a layer's output: mean, std (from the mean of squares) and, for a ReLU, the
    fraction of exact zeros."""
    xp = get_array_module(output)
    flat = output.reshape(-1)
    mean = flat.mean()
    stats = {"activation_mean": mean,
             "activation_std": xp.sqrt(xp.maximum(flat.dot(flat) / flat.size - mean * mean, 0))}
    if is_relu:
        stats["zero_fraction"] = xp.asarray(xp.count_nonzero(output == 0)) / output.size  # 5x faster than on floats
    return stats


class Inspector:
    """Hooks on ``model``'s leaf layers that record the statistics above, per step, under dotted names."""

    def __init__(self, model):
        self.model = model
        self.layers = [(name, module) for name, module in model.named_modules() if not list(module.children())]
        self.layer_types = {name: type(module).__name__ for name, module in self.layers}
        self.pending = []  # (layer, statistic, 0-d array) of the step under way
        self.before_step = {}  # id(parameter) -> Snapshot: its values after the backward, before the step
        self.stepping = False  # a backward has run since the last end_step
        self.forward_order = []  # layer names in the order of their first forward
        self.recording = True
        self.handles = [model.register_full_backward_hook(self._after_model_backward)]
        for name, module in self.layers:
            self.handles.append(module.register_forward_hook(self._forward_hook(name, isinstance(module, ReLU))))
            self.handles.append(module.register_full_backward_hook(self._backward_hook(name)))

    def close(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @contextmanager
    def paused(self):
        """Within the block nothing is recorded (e.g. for an extra forward and backward that is no training step)."""
        recording, self.recording = self.recording, False
        try:
            yield self
        finally:
            self.recording = recording

    def _forward_hook(self, name, is_relu):
        def record(module, inputs, output):
            if self.recording and is_grad_enabled():
                if name not in self.forward_order:
                    self.forward_order.append(name)
                for statistic, value in activation_stats(primary_output(output), is_relu).items():
                    self.pending.append((name, statistic, value))
        return record

    def _backward_hook(self, name):
        def record(module, grad_input, grad_output):
            if self.recording:
                self.pending.append((name, "grad_input_norm", norm(grad_input[0])))
        return record

    def _after_model_backward(self, model, grad_input, grad_output):
        """Every gradient is complete and no parameter has moved yet: record the norms and keep a copy of each."""
        if not self.recording:
            return
        for layer, module in self.layers:
            for name, parameter in module.named_parameters(recurse=False):
                self.pending += [(layer, f"{name}_norm", norm(parameter.data)),
                                 (layer, f"{name}_grad_norm", norm(parameter.grad))]
                self._keep_copy(layer, name, parameter)
        self.stepping = True

    def _keep_copy(self, layer, name, parameter):
        """Copy the parameter's values into its Snapshot buffer (made anew when the array changed kind)."""
        kept = self.before_step.get(id(parameter))
        data = parameter.data
        if kept is None or (kept.before.shape, kept.before.dtype, type(kept.before)) != \
                (data.shape, data.dtype, type(data)):
            self.before_step[id(parameter)] = Snapshot(layer, name, parameter, data.copy())
        else:
            kept.before[...] = data

    def end_step(self):
        """After the optimizer's step: the step's update ratios, then every statistic fetched in one copy.

        Returns {(layer, statistic): float}; statistics with no value this step are absent.
        """
        if self.stepping:
            for kept in self.before_step.values():
                before = norm(kept.before)
                xp = get_array_module(before)
                ratio = norm(kept.parameter.data - kept.before) / xp.where(before > 0, before, xp.nan)
                self.pending.append((kept.layer, f"{kept.name}_update_ratio", ratio))
        self.stepping = False
        if not self.pending:
            return {}
        xp = get_array_module(self.pending[0][2])
        values = to_numpy(xp.stack([xp.asarray(value, dtype=xp.float64) for _, _, value in self.pending]))
        step = OrderedDict(((layer, statistic), float(value))
                           for (layer, statistic, _), value in zip(self.pending, values))
        self.pending = []
        return step


def input_gradient(model, loss, x, target):
    """d loss(model(x), target) / d x, x's shape, by the model's own backward in eval mode (batch norm uses its
    running statistics). The parameters' ``.grad`` and the model's mode are as they were before."""
    parameters = list(model.parameters())
    kept_grads = [parameter.grad.copy() for parameter in parameters]
    was_training = model.training
    model.eval()
    try:
        loss(model(x), target)
        return model.backward(loss.backward())
    finally:
        model.train(was_training)
        for parameter, grad in zip(parameters, kept_grads):
            parameter.grad[...] = grad


def mean_over_steps(steps):
    """{(layer, statistic): mean over the steps that have it} of ``end_step`` results."""
    sums, counts = OrderedDict(), {}
    for step in steps:
        for key, value in step.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return OrderedDict((key, total / counts[key]) for key, total in sums.items())


def layer_table(stats, layer_order):
    """{layer: {statistic: value}} in ``layer_order`` (layers without statistics left out)."""
    table = OrderedDict((layer, OrderedDict()) for layer in layer_order)
    for (layer, statistic), value in stats.items():
        table.setdefault(layer, OrderedDict())[statistic] = value
    return OrderedDict((layer, row) for layer, row in table.items() if row)


def statistic_names(table):
    """The statistics that occur in a ``layer_table``, in first-seen order."""
    names = []
    for row in table.values():
        names += [name for name in row if name not in names]
    return names
