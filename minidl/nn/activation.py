"""``ReLU`` and ``Sigmoid``: elementwise, any input shape."""
from ..functional import checks
from ..functional.activation import (relu_backward, relu_backward_inplace, relu_forward, relu_forward_inplace,
                                     sigmoid_backward, sigmoid_forward)
from .module import Module


class ReLU(Module):
    """y = max(x, 0), elementwise; any shape.

    ``inplace=True`` (as PyTorch's) writes y over the input array and returns it:
    no new array, and backward reads the mask [y > 0] from y instead of keeping
    one. Use it only where nothing else reads the input afterwards, e.g. on a
    conv's fresh output; not on an array that a Conv2d or BatchNorm2d has
    already taken as input (they keep it for backward).
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""

    def forward(self, x):
        checks.check_float_array("ReLU", x)
        y, cache = (relu_forward_inplace if self.inplace else relu_forward)(x)
        self.keep((self.inplace, cache), y)
        return y

    def backward(self, dy):
        """dy (any shape, the output's) -> dx = dy * [x > 0]."""
        inplace, cache = self.take_cache(dy)
        return (relu_backward_inplace if inplace else relu_backward)(dy, cache)


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
