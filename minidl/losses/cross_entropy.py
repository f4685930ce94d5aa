"""``CrossEntropyLoss``: input checks and settings around the pair in ``minidl/functional/cross_entropy.py``,
which holds the math."""
from ..backend import check_same_device, check_values, device_of, get_array_module, to_device
from ..functional.checks import check_float_array, shape_text
from ..functional.cross_entropy import cross_entropy_backward, cross_entropy_forward
from .base import Loss, as_logits_dtype, real_weights


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
