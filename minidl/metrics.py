"""Segmentation metrics on thresholded binary predictions: Dice, IoU and pixel accuracy.

Predictions are probabilities in [0, 1] (or logits with ``from_logits=True``,
passed through a sigmoid first); a pixel is predicted foreground when its
probability is >= ``threshold``. Targets are masks in [0, 1] (float, int or
bool), foreground where >= 0.5. Inputs are (N, ...) of one shape, e.g.
(N, 1, H, W) or (N, H, W): one score per image over all its other axes.

    Dice = 2 |P & T| / (|P| + |T|)        IoU = |P & T| / |P | T|
An image whose prediction and target are both empty scores 1.0 on both (a
perfect answer). The ``*_per_image`` functions return an (N,) float64 array
on the inputs' device; the others return the mean over images as a Python float.
"""
from .backend import check_same_device, get_array_module
from .functional.activation import sigmoid
from .functional.checks import check_float_array, shape_text


def _masks(function, prediction, target, threshold, from_logits):
    """Boolean (N, pixels) prediction and target masks, after checking the inputs."""
    check_float_array(function, prediction, "prediction")
    if not hasattr(target, "shape") or getattr(target, "dtype", None) is None or target.dtype.kind not in "biuf":
        raise TypeError(f"{function}: expected a real-valued target array, got {type(target).__name__}")
    if prediction.ndim < 2 or tuple(prediction.shape) != tuple(target.shape):
        raise ValueError(f"{function}: expected prediction and target of one shape (N, ...), got prediction "
                         f"{shape_text(prediction)} and target {shape_text(target)}")
    check_same_device(function, target, prediction, "prediction")
    if not 0 <= threshold <= 1:
        raise ValueError(f"{function}: threshold must lie in [0, 1], got {threshold}")
    xp = get_array_module(prediction)
    probabilities = sigmoid(prediction) if from_logits else prediction
    checked = (("target", target),) if from_logits else (("prediction", prediction), ("target", target))
    for name, array in checked:
        low, high = (float(xp.min(array)), float(xp.max(array))) if array.size else (0.0, 0.0)
        if not (0 <= low and high <= 1):
            hint = "; pass from_logits=True for logits" if name == "prediction" else ""
            raise ValueError(f"{function}: {name} values must lie in [0, 1], found values in [{low:g}, {high:g}]"
                             f" ({name} of shape {shape_text(array)}{hint})")
    n = prediction.shape[0]
    return (probabilities >= threshold).reshape(n, -1), (target >= 0.5).reshape(n, -1)


def _ratio_per_image(numerator, denominator):
    """numerator / denominator per image as float64, 1.0 where the denominator is 0 (both masks empty)."""
    xp = get_array_module(numerator)
    numerator, denominator = numerator.astype(xp.float64), denominator.astype(xp.float64)
    empty = denominator == 0
    return xp.where(empty, 1.0, numerator / xp.where(empty, 1.0, denominator))


def _dice(predicted, actual):
    return _ratio_per_image(2 * (predicted & actual).sum(axis=1), predicted.sum(axis=1) + actual.sum(axis=1))


def _iou(predicted, actual):
    return _ratio_per_image((predicted & actual).sum(axis=1), (predicted | actual).sum(axis=1))


def _accuracy(predicted, actual):
    return (predicted == actual).mean(axis=1, dtype=get_array_module(predicted).float64)


def dice_per_image(prediction, target, threshold=0.5, from_logits=False):
    """Dice 2|P & T| / (|P| + |T|) of each image: (N,) float64, 1.0 for an empty prediction on an empty target."""
    return _dice(*_masks("dice_per_image", prediction, target, threshold, from_logits))


def iou_per_image(prediction, target, threshold=0.5, from_logits=False):
    """IoU |P & T| / |P | T| of each image: (N,) float64, 1.0 for an empty prediction on an empty target."""
    return _iou(*_masks("iou_per_image", prediction, target, threshold, from_logits))


def pixel_accuracy_per_image(prediction, target, threshold=0.5, from_logits=False):
    """Fraction of pixels whose thresholded prediction equals the target, per image: (N,) float64."""
    return _accuracy(*_masks("pixel_accuracy_per_image", prediction, target, threshold, from_logits))


def dice_score(prediction, target, threshold=0.5, from_logits=False):
    """Mean over images of the per-image Dice, a Python float."""
    return float(_dice(*_masks("dice_score", prediction, target, threshold, from_logits)).mean())


def iou_score(prediction, target, threshold=0.5, from_logits=False):
    """Mean over images of the per-image IoU, a Python float."""
    return float(_iou(*_masks("iou_score", prediction, target, threshold, from_logits)).mean())


def pixel_accuracy(prediction, target, threshold=0.5, from_logits=False):
    """Fraction of all pixels (of all images, each image the same size) predicted correctly, a Python float."""
    return float(_accuracy(*_masks("pixel_accuracy", prediction, target, threshold, from_logits)).mean())
