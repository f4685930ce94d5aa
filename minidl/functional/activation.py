"""ReLU and the logistic sigmoid, for arrays of any shape."""
from ..backend import get_array_module


def relu_forward(x):
    """y = max(x, 0); the cache is the mask x > 0."""
    # BEGIN SOLUTION
    return get_array_module(x).maximum(x, 0), x > 0
    # END SOLUTION


def relu_backward(dy, mask):
    """dy, mask (x's shape) -> dx (x's shape)."""
    # BEGIN SOLUTION
    # dx = dy * [x > 0]
    return dy * mask
    # END SOLUTION


def relu_forward_inplace(x):
    """y = max(x, 0) written over x (no new array); the cache is the mask x > 0, taken first.

    Its backward is ``relu_backward``. (The mask could be read from y later, y > 0 exactly where
    x > 0, but keeping y would hold four bytes an element alive until backward where the layer
    after may let it go, against the mask's one.)
    """
    # BEGIN SOLUTION
    mask = x > 0
    return get_array_module(x).maximum(x, 0, out=x), mask
    # END SOLUTION


def sigmoid(x):
    """1 / (1 + exp(-x)), evaluated without overflow for any x (exp of -|x| only)."""
    # BEGIN SOLUTION
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
    # END SOLUTION


def sigmoid_forward(x):
    """y = sigmoid(x); the cache is y."""
    # BEGIN SOLUTION
    y = sigmoid(x)
    return y, y
    # END SOLUTION


def sigmoid_backward(dy, y):
    """dy, y (x's shape) -> dx (x's shape)."""
    # BEGIN SOLUTION
    # dx = dy * y * (1 - y)
    return dy * y * (1 - y)
    # END SOLUTION
