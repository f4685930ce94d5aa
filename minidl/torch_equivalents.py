"""PyTorch's modules and losses with a minidl layer's or loss's settings, for parity checks.

``torch`` is passed in, so importing this file needs no PyTorch. The models' equivalents are in
``models/torch_equivalents.py``.
"""
from . import losses, nn


def torch_layer(torch, layer):
    """The ``torch.nn`` module configured as the minidl ``layer`` (weights not copied)."""
    tnn = torch.nn
    if isinstance(layer, nn.Conv2d):
        return tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, bias=layer.bias is not None)
    if isinstance(layer, nn.ConvTranspose2d):
        return tnn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                   layer.padding, layer.output_padding, bias=layer.bias is not None,
                                   dilation=layer.dilation)
    if isinstance(layer, nn.MaxPool2d):
        return tnn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                             return_indices=layer.return_indices, ceil_mode=layer.ceil_mode)
    if isinstance(layer, nn.MaxUnpool2d):
        return tnn.MaxUnpool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, nn.Upsample):
        return tnn.Upsample(layer.size, layer.scale_factor, layer.mode, layer.align_corners)
    if isinstance(layer, nn.BatchNorm2d):
        return tnn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum, layer.affine,
                               layer.track_running_stats)
    simple = {nn.ReLU: tnn.ReLU, nn.Sigmoid: tnn.Sigmoid}
    if type(layer) in simple:
        return simple[type(layer)]()
    raise TypeError(f"no PyTorch equivalent for {type(layer).__name__}")


def torch_dice(torch, loss, logits, target):
    """minidl's soft Dice written with PyTorch ops: 1 - (2 I + s) / (P + T + s) per sample and channel."""
    probability = torch.sigmoid(logits) if loss.from_logits else logits
    if probability.dim() == 3:
        probability, target = probability[:, None], target[:, None]
    intersection = (probability * target).sum(dim=(2, 3))
    total = probability.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
    dice = 1 - (2 * intersection + loss.smooth) / (total + loss.smooth)
    return dice.mean() if loss.reduction == "mean" else dice.sum()


def torch_loss(torch, loss):
    """A callable (logits, target) -> PyTorch's value of the minidl ``loss``."""
    functional = torch.nn.functional
    if isinstance(loss, losses.BCEDiceLoss):
        bce, dice = torch_loss(torch, loss.bce), torch_loss(torch, loss.dice)
        return lambda logits, target: loss.bce_weight * bce(logits, target) + loss.dice_weight * dice(logits, target)
    if isinstance(loss, losses.BCEWithLogitsLoss):
        pos_weight = None if loss.pos_weight is None else torch.as_tensor(loss.pos_weight)
        return lambda logits, target: functional.binary_cross_entropy_with_logits(
            logits, target, pos_weight=pos_weight, reduction=loss.reduction)
    if isinstance(loss, losses.DiceLoss):
        return lambda logits, target: torch_dice(torch, loss, logits, target)
    if isinstance(loss, losses.CrossEntropyLoss):
        weight = None if loss.weight is None else torch.as_tensor(loss.weight)
        return lambda logits, target: functional.cross_entropy(logits, target, weight=weight,
                                                               reduction=loss.reduction)
    raise TypeError(f"no PyTorch equivalent for {type(loss).__name__}")
