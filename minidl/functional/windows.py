"""Sliding-window geometry shared by convolution, transposed convolution, pooling and unpooling."""
import numbers


def pair(value, name="argument"):
    """An int or a pair of ints -> a tuple ``(for_height, for_width)``."""
    if isinstance(value, numbers.Integral):
        return (int(value), int(value))
    try:
        values = tuple(value)
    except TypeError:  # a float or None: not a pair either
        values = ()
    if len(values) != 2 or not all(isinstance(v, numbers.Integral) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return (int(values[0]), int(values[1]))


def window_output_size(size, kernel, stride, padding, dilation):
    """Positions of a window along one axis: floor((size + 2p - d(k-1) - 1) / s) + 1 (may be <= 0)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def transposed_output_size(size, kernel, stride, padding, dilation, output_padding):
    """Output length of a transposed convolution: (size-1)s - 2p + d(k-1) + output_padding + 1."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
