"""``ReLU`` and ``Sigmoid``: elementwise, any input shape."""
from ..functional import checks
from ..functional.activation import relu_backward, relu_forward, relu_forward_inplace, sigmoid_backward, sigmoid_forward
from .module import Module


class ReLU(Module):
    """y = max(x, 0), elementwise; any shape.

    ``inplace=True`` (as PyTorch's) writes y over the input array and returns it:
    no new array (the cache is the same one-byte mask either way). Use it only
    where nothing else reads the input afterwards, e.g. on a conv's or batch
    norm's fresh output, as the models do; not on an array that a Conv2d or
    BatchNorm2d has already taken as input (they keep it for backward).
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""

    def forward(self, x):
        checks.check_float_array("ReLU", x)
        y, mask = (relu_forward_inplace if self.inplace else relu_forward)(x)
        self.keep(mask, y)
        return y

    def backward(self, dy):
        """dy (any shape, the output's) -> dx = dy * [x > 0]."""
        return relu_backward(dy, self.take_cache(dy))


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x)), elementwise; any shape."""

    def forward(self, x):
        checks.check_float_array("Sigmoid", x)
        y, cache = sigmoid_forward(x)
        self.keep(cache, y)
        return y

    def backward(self, dy):
        """dy (any shape, the output's) -> dx = dy * y * (1 - y)."""
        return sigmoid_backward(dy, self.take_cache(dy))
