"""Cross-entropy over class logits, via a stable log-softmax along axis 1.

For logits x (N, C, ...) and integer targets t (N, ...), per position:
    log p_c = (x_c - m) - log sum_k e^(x_k - m),   m = max_k x_k
    l = -w[t] log p_t            (w = 1 without class weights; 0 where t == ignore_index)
"mean" divides the summed losses by the summed weights w[t] of the kept targets, as PyTorch.
"""
from ..backend import get_array_module
from .reduction import upstream_gradient


def _class_axis_shape(logits):
    """(1, C, 1, ...): broadcasts a per-class vector along axis 1 of the logits."""
    return (1, logits.shape[1]) + (1,) * (logits.ndim - 2)


def cross_entropy_forward(logits, target, weight=None, reduction="mean", ignore_index=-100):
    """logits (N, C, ...), integer target (N, ...), weight (C,) or None -> value, cache.

    value: a 0-d array for ``"mean"``/``"sum"``, the per-position losses (N, ...)
    for ``"none"`` (zero where the target is ``ignore_index``). When every
    target is ignored, the mean is nan (as PyTorch) and the gradient zero.
    """
    xp = get_array_module(logits)
    # BEGIN SOLUTION
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    kept = target != ignore_index
    # ignored positions (and, until the range check reads them back, targets outside [0, C)) pick class 0
    safe_target = xp.where(kept & (target >= 0) & (target < logits.shape[1]), target, 0)
    picked = xp.take_along_axis(log_probabilities, safe_target[:, None], axis=1)[:, 0]
    position_weight = kept.astype(logits.dtype) if weight is None else weight[safe_target] * kept
    losses = -picked * position_weight
    total_weight = None
    if reduction == "mean":
        # sum / total weight, or nan when no target is kept (computed on the device: no read-back here)
        total_weight = position_weight.sum()
        value = xp.where(total_weight > 0, losses.sum() / xp.where(total_weight > 0, total_weight, 1), xp.nan)
        value = value.astype(logits.dtype)
    else:
        value = losses.sum() if reduction == "sum" else losses
    return value, (log_probabilities, safe_target, position_weight, total_weight, reduction)
    # END SOLUTION


def cross_entropy_backward(dout, cache):
    """d value / d logits (N, C, ...); ``dout`` (d total / d value): None (= 1), a number, or for "none" an (N, ...) array."""
    log_probabilities, safe_target, position_weight, total_weight, reduction = cache
    xp = get_array_module(log_probabilities)
    upstream = upstream_gradient("CrossEntropyLoss", dout, reduction, safe_target.shape, log_probabilities)
    # BEGIN SOLUTION
    if reduction == "mean":
        upstream = xp.where(total_weight > 0, upstream / xp.where(total_weight > 0, total_weight, 1), 0)
    coefficient = (position_weight * upstream)[:, None]
    classes = xp.arange(log_probabilities.shape[1]).reshape(_class_axis_shape(log_probabilities))
    # dl/dx_c = w[t] (softmax_c - [c == t])
    return (xp.exp(log_probabilities) - (classes == safe_target[:, None])) * coefficient
    # END SOLUTION
