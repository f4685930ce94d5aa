"""Cross-entropy over class logits, via a stable log-softmax along axis 1.

For logits x (N, C, ...) and integer targets t (N, ...), per position:
    log p_c = (x_c - m) - log sum_k e^(x_k - m),   m = max_k x_k
    l = -w[t] log p_t            (w = 1 without class weights; 0 where t == ignore_index)
"mean" divides the summed losses by the summed weights w[t] of the kept targets, as PyTorch.
"""
from ..backend import check_same_device, check_values, device_of, get_array_module, to_device
from ..functional.checks import check_float_array, shape_text
from .base import Loss, as_logits_dtype, real_weights, upstream_gradient


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


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy: logits (N, C, H, W) (or (N, C), or (N, C, d1, ...)), integer targets (N, H, W).

    ``weight``: per-class weights (C,), used in the logits' dtype and on their
    device; with weights the mean divides by the summed weights of the targets.
    ``ignore_index`` (default -100, as PyTorch): positions with this target
    contribute nothing and are left out of the mean. Class-probability targets
    and label smoothing are not supported.
    """

    def __init__(self, weight=None, reduction="mean", ignore_index=-100):
        super().__init__(reduction)
        if weight is not None:
            weight = real_weights("CrossEntropyLoss", "weight", weight)
            if weight.ndim != 1:
                raise ValueError(f"CrossEntropyLoss: weight must be a real array of shape (C,), got shape "
                                 f"{shape_text(weight)}")
        self.weight = weight
        self.ignore_index = int(ignore_index)

    def _check(self, logits, target):
        check_float_array("CrossEntropyLoss", logits, "logits")
        if logits.ndim < 2:
            raise ValueError(f"CrossEntropyLoss: expected logits (N, C, ...), got logits of shape {shape_text(logits)}")
        if not hasattr(target, "dtype") or target.dtype.kind not in "iu":
            raise TypeError(f"CrossEntropyLoss: target must be an integer array of class indices, got "
                            f"{getattr(target, 'dtype', type(target).__name__)}")
        expected = (logits.shape[0],) + tuple(logits.shape[2:])
        if tuple(target.shape) != expected:
            raise ValueError(f"CrossEntropyLoss: target of shape {shape_text(target)} does not match logits of "
                             f"shape {shape_text(logits)}: expected target shape {expected}")
        check_same_device("CrossEntropyLoss", target, logits, "logits")
        classes = logits.shape[1]
        if self.weight is not None and self.weight.shape[0] != classes:
            raise ValueError(f"CrossEntropyLoss: weight of shape {shape_text(self.weight)} does not match "
                             f"{classes} classes of logits of shape {shape_text(logits)}")
        if target.size:
            check_values(*self._target_range(logits, target))  # on a GPU, read back with the value

    def _target_range(self, logits, target):
        """The range check of the kept targets, each in [0, C): (statistics, verdict) for ``check_values``
        (on a GPU the forward reads class 0 for a target outside it until the check is read back)."""
        classes, ignore_index = logits.shape[1], self.ignore_index
        xp = get_array_module(target)
        kept_targets = xp.where(target != ignore_index, target, 0)
        statistics = xp.stack([kept_targets.min(), kept_targets.max()])

        def verdict(low, high):
            if low < 0 or high >= classes:
                return (f"CrossEntropyLoss: target value {int(low if low < 0 else high)} is outside [0, {classes}) "
                        f"for logits of shape {shape_text(logits)} (ignore_index={ignore_index})")
            return None
        return statistics, verdict

    def forward_function(self, logits, target):
        self._check(logits, target)
        weight = self.weight
        if weight is not None:
            weight = as_logits_dtype(to_device(weight, device_of(logits)), logits)
        return cross_entropy_forward(logits, target, weight, self.reduction, self.ignore_index)

    def backward_function(self, dout, cache):
        return cross_entropy_backward(dout, cache)

    def __repr__(self):
        extra = "" if self.weight is None else f", weight shape {tuple(self.weight.shape)}"
        return f"CrossEntropyLoss(reduction={self.reduction!r}, ignore_index={self.ignore_index}{extra})"
