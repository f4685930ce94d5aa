"""What every loss's functional pair shares: the reductions and the upstream gradient.

A loss's forward returns ``value`` (a 0-d array for reduction ``"mean"``/``"sum"``, the unreduced losses for
``"none"``) and a cache; its backward takes ``dout`` = d total / d value (None for 1) and the cache and returns
d total / d logits.
"""
from ..backend import check_same_device
from .checks import shape_text


def reduce_losses(losses, reduction):
    """mean or sum to a 0-d array, or the array itself for ``"none"``."""
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def upstream_gradient(loss, upstream, reduction, value_shape, logits):
    """The upstream gradient d(total)/d(value) as a multiplier in the logits' dtype.

    None means 1. For ``"mean"``/``"sum"`` it is a number (or a one-element
    array); for ``"none"`` an array of the value's shape on the logits' device.
    """
    if upstream is None:
        return 1.0
    if reduction != "none":
        if getattr(upstream, "size", 1) != 1:
            raise ValueError(f"{loss}.backward: the value is a scalar, got an upstream gradient of shape "
                             f"{shape_text(upstream)}")
        return float(upstream)
    if tuple(getattr(upstream, "shape", ())) != tuple(value_shape):
        raise ValueError(f"{loss}.backward: upstream gradient has shape {tuple(getattr(upstream, 'shape', ()))}, "
                         f"the value had shape {tuple(value_shape)}")
    check_same_device(f"{loss}.backward", upstream, logits, "logits")
    return upstream.astype(logits.dtype, copy=False)
