"""Validation: loss, Dice and IoU of a model on a set of images, and its lung probabilities."""
import numpy

from ..backend import get_array_module, to_device, to_numpy
from ..grad_mode import no_grad
from .builders import loss_target, lung_probability


def dice_and_iou(predicted, target):
    """Per-image Dice 2|P&T|/(|P|+|T|) and IoU |P&T|/|P|T| of (N, H, W) bool masks; 1 where both are empty.

    Float64 arrays (N,) on the masks' device."""
    xp = get_array_module(predicted)
    predicted, target = predicted.reshape(len(predicted), -1), target.reshape(len(target), -1)
    overlap = (predicted & target).sum(axis=1, dtype=numpy.float64)
    total = predicted.sum(axis=1, dtype=numpy.float64) + target.sum(axis=1, dtype=numpy.float64)
    union = total - overlap
    dice = xp.where(total > 0, 2.0 * overlap / xp.maximum(total, 1.0), 1.0)
    iou = xp.where(union > 0, overlap / xp.maximum(union, 1.0), 1.0)
    return dice, iou


def _logits_in_batches(model, images, batch_size, device):
    """Yield (start, logits) over (N, 1, H, W) host images, in eval mode and inside no_grad()."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for start in range(0, len(images), batch_size):
                yield start, model(to_device(images[start:start + batch_size], device))
    finally:
        model.train(was_training)


def predict_probabilities(model, images, batch_size, device="cpu"):
    """P(lung) for (N, 1, H, W) host images: (N, H, W) float32 on the host."""
    probabilities = numpy.empty((len(images), *images.shape[2:]), numpy.float32)
    for start, logits in _logits_in_batches(model, images, batch_size, device):
        probabilities[start:start + len(logits)] = to_numpy(lung_probability(logits))
    return probabilities


def evaluate(model, loss, loss_name, images, masks, batch_size, device="cpu"):
    """Mean loss, Dice and IoU (threshold 0.5, averaged per image) over (N, 1, H, W) images and 0/1 masks.

    Returns ({"loss", "dice", "iou"}, probabilities (N, H, W) float32).
    """
    total_loss = 0.0
    probabilities = numpy.empty((len(images), *images.shape[2:]), numpy.float32)
    for start, logits in _logits_in_batches(model, images, batch_size, device):
        target = to_device(loss_target(masks[start:start + len(logits)], loss_name, logits.dtype), device)
        total_loss += loss(logits, target) * len(logits)
        probabilities[start:start + len(logits)] = to_numpy(lung_probability(logits))
    dice, iou = dice_and_iou(probabilities >= 0.5, masks[:, 0] >= 0.5)
    return {"loss": total_loss / len(images), "dice": float(dice.mean()), "iou": float(iou.mean())}, probabilities
