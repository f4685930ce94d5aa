"""``DiceLoss``: input checks and settings around the pair in ``minidl/functional/dice.py``, which holds the
math."""
import numbers

from ..functional.checks import shape_text
from ..functional.dice import dice_loss_backward, dice_loss_forward
from .base import Loss, as_logits_dtype, check_logits_and_target, check_unit_interval


class DiceLoss(Loss):
    """Soft Dice loss ``1 - (2 I + smooth) / (P + T + smooth)`` per sample and channel.

    Inputs are (N, C, H, W), or (N, H, W) for one channel; targets in [0, 1]
    of the same shape. With ``from_logits=True`` the input goes through a
    sigmoid; with ``False`` it must already be probabilities in [0, 1].
    Reductions ``"mean"`` and ``"sum"`` over the (N, C) planes, ``"none"``
    returns the (N, C) (or (N,)) per-plane losses.
    """

    def __init__(self, smooth=1.0, from_logits=True, reduction="mean"):
        super().__init__(reduction)
        if isinstance(smooth, bool) or not isinstance(smooth, numbers.Real) or smooth < 0:
            raise ValueError(f"DiceLoss: smooth must be a non-negative number, got {smooth!r}")
        self.smooth = float(smooth)
        self.from_logits = bool(from_logits)

    def forward_function(self, logits, target):
        check_logits_and_target("DiceLoss", logits, target)
        if logits.ndim not in (3, 4):
            raise ValueError(f"DiceLoss: expected (N, C, H, W) or (N, H, W) inputs, got logits of shape "
                             f"{shape_text(logits)}")
        check_unit_interval("DiceLoss", target)
        if not self.from_logits:
            check_unit_interval("DiceLoss", logits, "probability (from_logits=False)")
        return dice_loss_forward(logits, as_logits_dtype(target, logits), self.smooth, self.from_logits,
                                 self.reduction)

    def backward_function(self, dout, cache):
        return dice_loss_backward(dout, cache)

    def __repr__(self):
        return f"DiceLoss(smooth={self.smooth}, from_logits={self.from_logits}, reduction={self.reduction!r})"
