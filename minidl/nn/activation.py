"""``ReLU`` and ``Sigmoid``: elementwise, any input shape."""
from ..functional import checks
from ..functional.activation import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward
from .module import Module


class ReLU(Module):
    """y = max(x, 0), elementwise; any shape."""

    def forward(self, x):
        checks.check_float_array("ReLU", x)
        y, mask = relu_forward(x)
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
