"""``BCEWithLogitsLoss``: input checks and settings around the pair in ``minidl/functional/bce.py``, which
holds the math."""
import numpy

from ..backend import device_of, to_device
from ..functional.bce import bce_with_logits_backward, bce_with_logits_forward
from .base import Loss, as_logits_dtype, check_logits_and_target, check_unit_interval, real_weights


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
