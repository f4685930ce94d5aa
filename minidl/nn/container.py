"""``Sequential``: modules applied in order, their backward in reverse."""
from collections import OrderedDict

from .module import Module


class Sequential(Module):
    """``Sequential(m0, m1, ...)``: forward runs m0, m1, ...; backward runs ..., m1, m0.

    Children are named "0", "1", ...; ``Sequential(OrderedDict(name=module, ...))`` names them, and a
    slice keeps its children's names, as PyTorch.
    """

    def __init__(self, *modules):
        super().__init__()
        named = modules[0].items() if len(modules) == 1 and isinstance(modules[0], OrderedDict) else (
            (str(index), module) for index, module in enumerate(modules))
        for name, module in named:
            if not isinstance(name, str) or not name or "." in name or (hasattr(self, name) and
                                                                       name not in self._modules):
                raise KeyError(f"Sequential: child name {name!r} must be a non-empty string without '.' that is "
                               "not already an attribute of the module")
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: argument {name} is a {type(module).__name__}, not a Module")
            setattr(self, name, module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, dy):
        # dL/dx = J_0^T ... J_{n-1}^T dy: each module's backward, last to first
        for module in reversed(self._modules.values()):
            dy = module.backward(dy)
        return dy

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
