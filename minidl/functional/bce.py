"""Binary cross-entropy on logits, in a form that is finite for logits of any magnitude.

Per element, with t in [0, 1] and softplus(z) = log(1 + e^z):
    l = max(x, 0) - x t + log1p(e^-|x|)                  (= -t log s(x) - (1 - t) log(1 - s(x)))
    l = (1 - t) x + (1 + (pw - 1) t) softplus(-x)        with pos_weight pw, as PyTorch
softplus(-x) is evaluated as max(-x, 0) + log1p(e^-|x|), so no exp overflows.
"""
from ..backend import get_array_module
from .activation import sigmoid
from .reduction import reduce_losses, upstream_gradient


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
