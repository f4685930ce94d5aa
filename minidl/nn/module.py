"""``Module``: the stateful shell around the functional core.

A module owns parameters, buffers and sub-modules, registered by assigning
them to attributes (as in PyTorch). ``forward`` computes the output and keeps
in ``self.cache`` what ``backward`` needs; ``backward(dy)`` returns the
gradient with respect to the forward input and adds each parameter's gradient
into its ``.grad``. A module instance holds one cache, so use each instance
once per forward pass. Hooks (``register_forward_hook`` and the others, as in
PyTorch) are in ``hooks.py``.
"""
from collections import OrderedDict, namedtuple

import numpy

from .. import backend
from ..grad_mode import is_grad_enabled
from ..parameter import Parameter
from .hooks import HOOK_KINDS, add_hook

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def primary_output(output):
    """A module's main output: the array itself, or the first of a tuple such as MaxPool2d's (y, indices)."""
    return output[0] if isinstance(output, tuple) else output


class Module:
    """Base class of every layer and model."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "cache", None)
        object.__setattr__(self, "_hooks", {kind: OrderedDict() for kind in HOOK_KINDS})

    # ----------------------------------------------------------- registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        owner = type(self).__name__
        if name in self._parameters and not isinstance(value, (Parameter, type(None))):
            raise TypeError(f"{owner}: cannot assign {type(value).__name__} to parameter '{name}' "
                            "(a Parameter or None expected; to change the values, write into .data)")
        if name in self._modules and not isinstance(value, (Module, type(None))):
            raise TypeError(f"{owner}: cannot assign {type(value).__name__} as child module '{name}' "
                            "(a Module or None expected)")
        registry = (self._parameters if isinstance(value, Parameter) else
                    self._modules if isinstance(value, Module) else
                    self._buffers if name in self._buffers else None)
        for other in (self._parameters, self._buffers, self._modules):
            if other is not registry:
                other.pop(name, None)
        if registry is not None:
            registry[name] = value  # a re-assigned name keeps its place in the order, as in PyTorch
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """Register a non-trainable array saved in ``state_dict`` and moved by ``to``."""
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    # ----------------------------------------------------------------- calling
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def keep(self, cache, output):
        """Store ``cache`` (and the output's shape) for backward, unless inside ``no_grad()``."""
        kept = (cache, tuple(output.shape), output.dtype) if is_grad_enabled() else None
        object.__setattr__(self, "cache", kept)

    def take_cache(self, dy):
        """Check ``dy``'s shape and dtype against the forward output, then return the cache and release it.

        The cache is released because backward runs once per forward, as in PyTorch.
        """
        layer = type(self).__name__
        if self.cache is None:
            raise RuntimeError(
                f"{layer}.backward: no forward pass is waiting for its backward "
                "(forward ran inside no_grad(), or backward was already called for it)")
        cache, output_shape, output_dtype = self.cache
        if tuple(dy.shape) != output_shape:
            raise ValueError(f"{layer}.backward: upstream gradient has shape {tuple(dy.shape)}, "
                             f"the forward output had shape {output_shape}")
        if getattr(dy, "dtype", None) != output_dtype:
            raise TypeError(f"{layer}.backward: upstream gradient has dtype {getattr(dy, 'dtype', type(dy))}, "
                            f"the forward output had dtype {output_dtype}; pass dy.astype(y.dtype)")
        object.__setattr__(self, "cache", None)
        return cache

    # -------------------------------------------------------------------- hooks
    def register_forward_pre_hook(self, hook, *, prepend=False):
        """``hook(module, inputs)`` before each forward; a non-None return replaces the inputs. Returns a handle."""
        return add_hook(self, "forward_pre", hook, prepend)

    def register_forward_hook(self, hook, *, prepend=False):
        """``hook(module, inputs, output)`` after each forward; a non-None return replaces the output."""
        return add_hook(self, "forward", hook, prepend)

    def register_full_backward_pre_hook(self, hook, *, prepend=False):
        """``hook(module, grad_output)`` before each backward; a non-None return replaces grad_output."""
        return add_hook(self, "backward_pre", hook, prepend)

    def register_full_backward_hook(self, hook, *, prepend=False):
        """``hook(module, grad_input, grad_output)`` after each backward; a non-None return replaces grad_input.

        Fires also when a model's own backward calls this module's ``backward`` directly.
        """
        return add_hook(self, "backward", hook, prepend)

    # ---------------------------------------------------------------- traversal
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def _all_named_modules(self, prefix=""):
        """Every ``(dotted name, module)`` pair, depth first, a shared module under each of its names."""
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child._all_named_modules(f"{prefix}.{name}" if prefix else name)

    def named_modules(self, prefix=""):
        """Yield ``(dotted name, module)`` for this module and every descendant, depth first, each module once."""
        seen = set()
        for name, module in self._all_named_modules(prefix):
            if id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix="", recurse=True):
        """Yield ``(dotted name, Parameter)`` in registration order, names as in PyTorch; a shared one once."""
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        seen = set()
        for module_name, module in modules:
            for name, parameter in module._parameters.items():
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    yield (f"{module_name}.{name}" if module_name else name), parameter

    def parameters(self, recurse=True):
        for _, parameter in self.named_parameters(recurse=recurse):
            yield parameter

    def named_buffers(self, prefix="", recurse=True):
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        seen = set()
        for module_name, module in modules:
            for name, buffer in module._buffers.items():
                if id(buffer) not in seen:
                    seen.add(id(buffer))
                    yield (f"{module_name}.{name}" if module_name else name), buffer

    def buffers(self, recurse=True):
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    # ------------------------------------------------------------------- state
    def _named_state(self):
        """``(dotted name, owner module, attribute name, is_parameter)`` in PyTorch's state_dict order
        (a shared module or parameter appears under each of its names, as in PyTorch)."""
        for module_name, module in self._all_named_modules():
            for kind, registry in ((True, module._parameters), (False, module._buffers)):
                for name in registry:
                    full_name = f"{module_name}.{name}" if module_name else name
                    yield full_name, module, name, kind

    def state_dict(self):
        """A dict of dotted name to a host ``numpy.ndarray`` copy, parameters and buffers."""
        state = OrderedDict()
        for full_name, module, name, is_parameter in self._named_state():
            value = module._parameters[name].data if is_parameter else module._buffers[name]
            state[full_name] = numpy.array(backend.to_numpy(value), copy=True)
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the existing arrays, cast to their dtype.

        Keys missing from ``state_dict`` or not in the model are errors when
        ``strict``; a shape mismatch is always an error (RuntimeError, as PyTorch). Every problem is
        checked before anything is copied. Returns ``(missing_keys, unexpected_keys)``.
        """
        targets = {full_name: (module, name, is_parameter)
                   for full_name, module, name, is_parameter in self._named_state()}
        missing = [key for key in targets if key not in state_dict]
        unexpected = [key for key in state_dict if key not in targets]
        owner = type(self).__name__
        if strict and (missing or unexpected):
            raise RuntimeError(f"{owner}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        values = {}
        for key, (module, name, is_parameter) in targets.items():
            if key not in state_dict:
                continue
            target = module._parameters[name].data if is_parameter else module._buffers[name]
            value = state_dict[key]
            value = backend.to_numpy(value.detach() if hasattr(value, "detach") else value)
            if tuple(value.shape) != tuple(target.shape):
                raise RuntimeError(f"{owner}.load_state_dict: key '{key}' has shape {tuple(value.shape)}, "
                                 f"the model expects {tuple(target.shape)}")
            values[key] = value
        for key, value in values.items():
            module, name, is_parameter = targets[key]
            target = module._parameters[name].data if is_parameter else module._buffers[name]
            xp = backend.get_array_module(target)
            target[...] = xp.asarray(value).astype(target.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ mode, grads
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for parameter in self.parameters():
            parameter.zero_grad()

    # ------------------------------------------------------- device and dtype
    def to(self, device=None, dtype=None):
        """Move parameters and buffers to ``"cpu"``/``"gpu"`` and/or cast floating ones to ``dtype``.

        ``module.to("gpu")``, ``module.to(dtype=numpy.float64)`` and
        ``module.to(numpy.float64)`` all work. Caches are dropped.
        """
        if device is not None and not isinstance(device, str):
            device, dtype = None, device
        if device is not None:
            device = backend.check_device_name(device)
            if device == "gpu":
                backend.require_gpu(f"{type(self).__name__}.to")
        if dtype is not None:
            dtype = numpy.dtype(dtype)
            if dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}.to: dtype must be floating point, got {dtype}")

        def convert(array):
            if device is not None:
                array = backend.to_device(array, device)
            if dtype is not None and array.dtype.kind == "f":
                array = array.astype(dtype, copy=False)
            return array

        for module in self.modules():
            object.__setattr__(module, "cache", None)
            for parameter in module._parameters.values():
                parameter.data = convert(parameter.data)
                parameter.grad = convert(parameter.grad)
            for name, buffer in list(module._buffers.items()):
                module._buffers[name] = convert(buffer)
                object.__setattr__(module, name, module._buffers[name])
        return self

    def double(self):
        return self.to(dtype=numpy.float64)

    def float(self):
        return self.to(dtype=numpy.float32)

    # -------------------------------------------------------------- printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                child_repr = repr(child).replace("\n", "\n  ")
                lines.append(f"  ({name}): {child_repr}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"
