"""``Sequential``: modules applied in order, their backward in reverse."""
from .module import Module


class Sequential(Module):
    """``Sequential(m0, m1, ...)``: forward runs m0, m1, ...; backward runs ..., m1, m0."""

    def __init__(self, *modules):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: argument {index} is a {type(module).__name__}, not a Module")
            setattr(self, str(index), module)

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
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
