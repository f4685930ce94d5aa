"""``BCEDiceLoss``: weighted BCE-with-logits plus soft Dice, the usual binary segmentation objective."""
from ..backend import read_back
from .bce import BCEWithLogitsLoss
from .dice import DiceLoss


class BCEDiceLoss:
    """value = bce_weight * BCEWithLogitsLoss(logits, t) + dice_weight * DiceLoss(logits, t), both "mean".

    Inputs as ``DiceLoss``: logits (N, C, H, W) or (N, H, W), targets in [0, 1].
    ``pos_weight`` goes to the BCE term and ``smooth`` to the Dice term. After
    a call, ``terms`` holds the two unweighted values, e.g. for logging.
    """

    def __init__(self, bce_weight=1.0, dice_weight=1.0, pos_weight=None, smooth=1.0):
        self.bce_weight, self.dice_weight = float(bce_weight), float(dice_weight)
        self.bce = BCEWithLogitsLoss(pos_weight=pos_weight)
        self.dice = DiceLoss(smooth=smooth)
        self.terms = {}

    def __call__(self, logits, target):
        values = [self.bce.evaluate(logits, target), self.dice.evaluate(logits, target)]
        bce, dice = read_back(values)  # one device->host transfer for both values and the deferred checks
        self.terms = {"bce": bce, "dice": dice}
        return self.bce_weight * bce + self.dice_weight * dice

    def backward(self, upstream=None):
        """d value / d logits = bce_weight * dBCE + dice_weight * dDice (times ``upstream``, a number)."""
        scale = 1.0 if upstream is None else float(upstream)
        return self.bce.backward(self.bce_weight * scale) + self.dice.backward(self.dice_weight * scale)

    def __repr__(self):
        return f"BCEDiceLoss(bce_weight={self.bce_weight}, dice_weight={self.dice_weight})"
