"""Parameter initialisation, as PyTorch's defaults.

PyTorch initialises convolution weights with ``kaiming_uniform_(a=sqrt(5))``,
whose bound ``gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + a**2))``
simplifies to ``1 / sqrt(fan_in)``; biases are uniform in ``+-1 / sqrt(fan_in)``.
Arrays are created on the host in float32 (``module.to`` moves and casts them).
"""
import math

import numpy

from .random import generator


def fan_in(weight_shape):
    """PyTorch's fan-in: ``shape[1] * prod(shape[2:])`` (for a transposed conv, out_channels * kh * kw)."""
    return int(weight_shape[1] * numpy.prod(weight_shape[2:], dtype=numpy.int64))


def uniform(shape, bound, dtype=numpy.float32):
    """Samples from U(-bound, bound)."""
    return generator().uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_uniform(shape, a=math.sqrt(5), dtype=numpy.float32):
    """He-uniform with negative slope ``a``: bound = sqrt(6 / ((1 + a^2) * fan_in))."""
    bound = math.sqrt(6.0 / ((1.0 + a * a) * fan_in(shape)))
    return uniform(shape, bound, dtype)


def default_bias(weight_shape, out_features, dtype=numpy.float32):
    """Bias uniform in +-1/sqrt(fan_in), fan_in taken from the weight's shape."""
    return uniform((out_features,), 1.0 / math.sqrt(fan_in(weight_shape)), dtype)
