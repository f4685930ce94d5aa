"""Binary cross-entropy on logits, in a form that is finite for logits of any magnitude.

Per element, with t in [0, 1] and softplus(z) = log(1 + e^z):
    l = max(x, 0) - x t + log1p(e^-|x|)                  (= -t log s(x) - (1 - t) log(1 - s(x)))
    l = (1 - t) x + (1 + (pw - 1) t) softplus(-x)        with pos_weight pw, as PyTorch
softplus(-x) is evaluated as max(-x, 0) + log1p(e^-|x|), so no exp overflows.
"""
import numpy

from ..backend import device_of, get_array_module, to_device
from ..functional.activation import sigmoid
from .base import (Loss, as_logits_dtype, check_logits_and_target, check_unit_interval, real_weights, reduce_losses,
                   upstream_gradient)


def bce_with_logits_forward(logits, target, pos_weight=None, reduction="mean"):
    """logits, target (any shape, equal), pos_weight (broadcastable to logits) or None -> value, cache.

    value: a 0-d array for ``"mean"``/``"sum"``, the elementwise losses (logits' shape) for ``"none"``.
    """
    xp = get_array_module(logits)
    # BEGIN SOLUTION
    log1p_exp = xp.log1p(xp.exp(-xp.abs(logits)))
    if pos_weight is None:
        losses = xp.maximum(logits, 0) - logits * target + log1p_exp
    else:
        positive_scale = 1 + (pos_weight - 1) * target
        losses = (1 - target) * logits + positive_scale * (xp.maximum(-logits, 0) + log1p_exp)
    return reduce_losses(losses, reduction), (logits, target, pos_weight, reduction)
    # END SOLUTION


def bce_with_logits_backward(dout, cache):
    """d value / d logits (logits' shape); ``dout`` (d total / d value): None (= 1), a number, or for "none" an array."""
    logits, target, pos_weight, reduction = cache
    upstream = upstream_gradient("BCEWithLogitsLoss", dout, reduction, logits.shape, logits)
    # BEGIN SOLUTION
    if reduction == "mean":
        upstream = upstream / logits.size
    probability = sigmoid(logits)
    if pos_weight is None:
        # dl/dx = s(x) - t
        return (probability - target) * upstream
    # dl/dx = (1 - t) - (1 + (pw - 1) t) s(-x), with s(-x) = 1 - s(x)
    return ((1 - target) - (1 + (pos_weight - 1) * target) * (1 - probability)) * upstream
    # END SOLUTION


class BCEWithLogitsLoss(Loss):
    """Sigmoid + binary cross-entropy: logits and targets in [0, 1] of any equal shape.

    ``pos_weight``: an array (or number) broadcastable to the logits, e.g. (C, 1, 1)
    for (N, C, H, W) logits, weighting the positive term as PyTorch; it is used
    in the logits' dtype and on their device. Targets may be float, int or bool.
    Reductions ``"mean"`` (over all elements), ``"sum"`` and ``"none"``.
    """

    def __init__(self, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.pos_weight = None if pos_weight is None else real_weights("BCEWithLogitsLoss", "pos_weight", pos_weight)

    def forward_function(self, logits, target):
        check_logits_and_target("BCEWithLogitsLoss", logits, target)
        check_unit_interval("BCEWithLogitsLoss", target)
        pos_weight = self.pos_weight
        if pos_weight is not None:
            try:
                broadcast_shape = numpy.broadcast_shapes(pos_weight.shape, logits.shape)
            except ValueError:
                broadcast_shape = None
            if broadcast_shape != tuple(logits.shape):
                raise ValueError(f"BCEWithLogitsLoss: pos_weight of shape {tuple(pos_weight.shape)} does not "
                                 f"broadcast to logits of shape {tuple(logits.shape)}")
            pos_weight = as_logits_dtype(to_device(pos_weight, device_of(logits)), logits)
        return bce_with_logits_forward(logits, as_logits_dtype(target, logits), pos_weight, self.reduction)

    def backward_function(self, dout, cache):
        return bce_with_logits_backward(dout, cache)

    def __repr__(self):
        extra = "" if self.pos_weight is None else f", pos_weight shape {tuple(self.pos_weight.shape)}"
        return f"BCEWithLogitsLoss(reduction={self.reduction!r}{extra})"
