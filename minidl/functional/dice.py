"""Soft Dice loss, one Dice coefficient per sample and channel.

Over the last two axes (H, W) of each (n, c) plane, with p = sigmoid(x) (or p = x):
    I = sum(p t),  B = sum(p) + sum(t) + smooth,  dice = (2 I + smooth) / B,  loss = 1 - dice
"""
from ..backend import get_array_module
from .activation import sigmoid
from .reduction import reduce_losses, upstream_gradient


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
