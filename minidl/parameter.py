"""``Parameter``: a trainable array and the gradient accumulated for it."""
from .backend import get_array_module


class Parameter:
    """A trainable array.

    ``data`` holds the values and ``grad`` an array of the same shape, dtype and
    device, zero from construction and after ``zero_grad()``. Backward passes
    ADD into ``grad``, as PyTorch accumulates.

    ``has_grad`` says whether a gradient arrived since construction or the last
    ``zero_grad()`` (PyTorch's ``grad is not None``): optimizers leave a parameter
    without one untouched, its state not advanced, as torch.optim does.
    """

    def __init__(self, data):
        if not hasattr(data, "dtype") or data.dtype.kind != "f":
            raise TypeError(f"Parameter: expected a floating-point array, got {type(data).__name__} "
                            f"of dtype {getattr(data, 'dtype', None)}")
        self.data = data
        self._grad = get_array_module(data).zeros_like(data)
        self._grad_assigned = False

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        """``p.grad = g``, and ``p.grad += g`` as every backward writes it, mark the gradient as arrived."""
        self._grad = value
        self._grad_assigned = True

    @property
    def has_grad(self):
        """True once a backward added into ``grad`` (or code assigned it), or when ``grad`` was written in place
        with a nonzero value (``grad[...] = g``); False after ``zero_grad()`` until then."""
        return self._grad_assigned or bool(self._grad.any())

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def zero_grad(self):
        """Set the gradient to zero in place; until a backward adds into it, ``has_grad`` is False."""
        self._grad.fill(0)
        self._grad_assigned = False

    def convert(self, function):
        """Replace ``data`` and ``grad`` by ``function`` of each (a move or a cast), keeping ``has_grad``."""
        self.data = function(self.data)
        self._grad = function(self._grad)

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"
