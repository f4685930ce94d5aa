"""Losses: objects with ``value = loss(logits, target)`` and ``loss.backward()``, over a functional core.

Each loss is a pair of plain functions ``xxx_forward(...) -> (value, cache)``
and ``xxx_backward(dout, cache) -> d total / d logits`` (``dout`` = d total / d value, None for 1),
the calling convention of every layer; the classes
validate their inputs, keep the cache and turn the value into a Python float
(an array for reduction ``"none"``). Losses combine by adding values and
adding the arrays their ``backward()`` returns.
"""
from .base import Loss
from .bce import BCEWithLogitsLoss, bce_with_logits_backward, bce_with_logits_forward
from .combined import BCEDiceLoss
from .cross_entropy import CrossEntropyLoss, cross_entropy_backward, cross_entropy_forward
from .dice import DiceLoss, dice_loss_backward, dice_loss_forward

__all__ = ["Loss", "BCEWithLogitsLoss", "DiceLoss", "CrossEntropyLoss", "BCEDiceLoss",
           "bce_with_logits_forward", "bce_with_logits_backward", "dice_loss_forward", "dice_loss_backward",
           "cross_entropy_forward", "cross_entropy_backward"]
