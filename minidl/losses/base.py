"""The loss object protocol and the input checks the losses share.

``value = loss(logits, target)`` runs the loss's functional forward, keeps its
cache (unless inside ``minidl.no_grad()``) and returns a Python float (an
array for reduction ``"none"``); ``loss.backward(upstream=None)`` runs the
functional backward once and returns d value / d logits.
"""
import numpy

from ..backend import check_same_device, check_values, get_array_module, read_back
from ..functional.checks import check_float_array, shape_text
from ..grad_mode import is_grad_enabled


class Loss:
    """Base class: subclasses set ``reductions`` and define ``forward_function`` and ``backward_function``."""

    reductions = ("mean", "sum", "none")

    def __init__(self, reduction):
        name = type(self).__name__
        if reduction not in self.reductions:
            raise ValueError(f"{name}: reduction must be one of {self.reductions}, got {reduction!r}")
        self.reduction = reduction
        self.cache = None

    def forward_function(self, logits, target):
        raise NotImplementedError(f"{type(self).__name__} does not define forward_function")

    def backward_function(self, dout, cache):
        raise NotImplementedError(f"{type(self).__name__} does not define backward_function")

    def evaluate(self, logits, target):
        """Run the forward and keep its cache; returns the value as an array on the logits' device. Checks of
        device values are deferred (``backend.check_values``) and read back with the value."""
        value, cache = self.forward_function(logits, target)
        self.cache = cache if is_grad_enabled() else None
        return value

    def __call__(self, logits, target):
        value = self.evaluate(logits, target)
        if self.reduction == "none":
            read_back([])  # the deferred checks, now
            return value
        return read_back([value])[0]  # one device->host transfer for the value and the checks

    def backward(self, upstream=None):
        """d value / d logits, shaped and typed like the logits; ``upstream`` as in ``minidl/functional/reduction.py::upstream_gradient``."""
        if self.cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: no forward pass is waiting for its backward "
                               "(call the loss first; forward inside no_grad() keeps nothing, and each "
                               "forward allows one backward)")
        cache, self.cache = self.cache, None
        return self.backward_function(upstream, cache)


def check_logits_and_target(loss, logits, target):
    """Floating logits, a real-valued target array of the same shape on the same device."""
    check_float_array(loss, logits, "logits")
    if not hasattr(target, "shape") or not hasattr(target, "dtype"):
        raise TypeError(f"{loss}: expected an array as target, got {type(target).__name__}")
    if target.dtype.kind not in "biuf":
        raise TypeError(f"{loss}: target must hold real numbers, got dtype {target.dtype}")
    if tuple(target.shape) != tuple(logits.shape):
        raise ValueError(f"{loss}: target shape {shape_text(target)} differs from logits shape {shape_text(logits)}")
    check_same_device(loss, target, logits, "logits")


def check_unit_interval(loss, array, name="target"):
    """ValueError unless every entry lies in [0, 1], naming the range found; deferred to the loss value's
    read-back for a device array (``backend.check_values``)."""
    if array.size == 0:
        return
    xp = get_array_module(array)

    def verdict(low, high):
        if 0 <= low and high <= 1:
            return None
        return (f"{loss}: {name} values must lie in [0, 1], found values in [{low:g}, {high:g}] "
                f"({name} of shape {shape_text(array)})")
    check_values(xp.stack([xp.min(array), xp.max(array)]), verdict)


def real_weights(loss, name, value):
    """A loss's weight argument (array, number, list or torch tensor) as an array of real numbers.

    Arrays (NumPy or CuPy) are kept as they are; anything else becomes a float64 NumPy array.
    A non-real dtype is a TypeError naming the loss and the argument.
    """
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    converted = not hasattr(value, "dtype")
    if converted:
        value = numpy.asarray(value)
    if value.dtype.kind not in "iuf":
        raise TypeError(f"{loss}: {name} must be real numbers, got dtype {value.dtype}")
    return value.astype(numpy.float64) if converted else value


def as_logits_dtype(target, logits):
    """The target in the logits' dtype (a copy only when the dtype differs)."""
    return target.astype(logits.dtype, copy=False)
