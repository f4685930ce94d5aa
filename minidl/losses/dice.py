"""Soft Dice loss, one Dice coefficient per sample and channel.

Over the last two axes (H, W) of each (n, c) plane, with p = sigmoid(x) (or p = x):
    I = sum(p t),  B = sum(p) + sum(t) + smooth,  dice = (2 I + smooth) / B,  loss = 1 - dice
"""
import numbers

from ..backend import get_array_module
from ..functional.activation import sigmoid
from ..functional.checks import shape_text
from .base import (Loss, as_logits_dtype, check_logits_and_target, check_unit_interval, reduce_losses,
                   upstream_gradient)


def dice_loss_forward(logits, target, smooth=1.0, from_logits=True, reduction="mean"):
    """logits, target (N, C, H, W) or (N, H, W) -> value, cache.

    value: a 0-d array for ``"mean"``/``"sum"`` over the (N, C) planes, the
    per-plane losses (N, C) (or (N,)) for ``"none"``.
    """
    xp = get_array_module(logits)
    # BEGIN SOLUTION
    probabilities = sigmoid(logits) if from_logits else logits
    intersection = xp.sum(probabilities * target, axis=(-2, -1))
    denominator = xp.sum(probabilities, axis=(-2, -1)) + xp.sum(target, axis=(-2, -1)) + smooth
    dice = (2 * intersection + smooth) / denominator
    cache = (probabilities, target, dice, denominator, from_logits, reduction)
    return reduce_losses(1 - dice, reduction), cache
    # END SOLUTION


def dice_loss_backward(dout, cache):
    """d value / d logits (logits' shape); ``dout`` (d total / d value): None (= 1), a number, or for "none" a per-plane array."""
    probabilities, target, dice, denominator, from_logits, reduction = cache
    upstream = upstream_gradient("DiceLoss", dout, reduction, dice.shape, probabilities)
    # BEGIN SOLUTION
    if reduction == "mean":
        upstream = upstream / dice.size
    plane_scale = upstream / denominator
    # d(1 - dice)/dp = (dice - 2 t) / B, for every pixel of the plane
    gradient = (dice[..., None, None] - 2 * target) * plane_scale[..., None, None]
    if from_logits:
        # dp/dx = p (1 - p)
        gradient *= probabilities * (1 - probabilities)
    return gradient
    # END SOLUTION


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
