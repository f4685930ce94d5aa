"""The run's pictures, drawn with matplotlib's Agg canvas (no display needed): curves, predictions, overlays."""
import numpy
from matplotlib.figure import Figure
from PIL import Image

from ..serialization import atomic_output


def plot_curves(history, path):
    """``curves.png``: train and validation loss (left) and Dice (right) per epoch."""
    figure = Figure(figsize=(10, 4), dpi=100)
    loss_axes, dice_axes = figure.subplots(1, 2)
    epochs = history["epoch"]
    loss_axes.plot(epochs, history["train_loss"], "o-", label="train")
    loss_axes.plot(epochs, history["val_loss"], "o-", label="validation")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="Loss")
    dice_axes.plot(epochs, history["train_dice"], "o-", label="train")
    dice_axes.plot(epochs, history["val_dice"], "o-", label="validation")
    dice_axes.set(xlabel="epoch", ylabel="Dice", title="Dice", ylim=(0.0, 1.0))
    for axes in (loss_axes, dice_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary)


def plot_predictions(images, masks, probabilities, path, count=6):
    """``predictions.png``: the first ``count`` validation images with true (green) and predicted (red) contours.

    images (N, H, W) in [0, 1], masks (N, H, W) 0/1, probabilities (N, H, W).
    """
    count = min(count, len(images))
    figure = Figure(figsize=(3 * count, 3.3), dpi=100)
    axes_row = numpy.atleast_1d(figure.subplots(1, count))
    for index, axes in enumerate(axes_row):
        axes.imshow(images[index], cmap="gray", vmin=0.0, vmax=1.0)
        if masks[index].any():
            axes.contour(masks[index], levels=[0.5], colors="lime", linewidths=1.2)
        if (probabilities[index] >= 0.5).any():
            axes.contour(probabilities[index], levels=[0.5], colors="red", linewidths=1.2)
        axes.set_axis_off()
    figure.suptitle("validation: true lungs (green), predicted (red)")
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary)


def overlay(image, mask, colour=(255, 64, 64), alpha=0.35):
    """An RGB uint8 picture of a gray (H, W) image in [0, 1] with the mask tinted and its outline drawn."""
    gray = numpy.round(numpy.clip(image, 0.0, 1.0) * 255).astype(numpy.uint8)
    picture = numpy.repeat(gray[..., None], 3, axis=2).astype(numpy.float64)
    tint = numpy.array(colour, dtype=numpy.float64)
    picture[mask] = (1 - alpha) * picture[mask] + alpha * tint
    interior = mask.copy()
    interior[1:, :] &= mask[:-1, :]
    interior[:-1, :] &= mask[1:, :]
    interior[:, 1:] &= mask[:, :-1]
    interior[:, :-1] &= mask[:, 1:]
    picture[mask & ~interior] = tint
    return Image.fromarray(numpy.round(picture).astype(numpy.uint8))
