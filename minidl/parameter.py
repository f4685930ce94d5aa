"""``Parameter``: a trainable array and the gradient accumulated for it."""
from .backend import get_array_module


class Parameter:
    """A trainable array.

    ``data`` holds the values and ``grad`` an array of the same shape, dtype and
    device, zero from construction and after ``zero_grad()``. Backward passes
    ADD into ``grad``, as PyTorch accumulates.
    """

    def __init__(self, data):
        if not hasattr(data, "dtype") or data.dtype.kind != "f":
            raise TypeError(f"Parameter: expected a floating-point array, got {type(data).__name__} "
                            f"of dtype {getattr(data, 'dtype', None)}")
        self.data = data
        self.grad = get_array_module(data).zeros_like(data)

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
        """Set the gradient to zero in place."""
        self.grad.fill(0)

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"
