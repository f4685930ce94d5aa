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


def plot_worst_cases(images, masks, predicted, names, dice, path, count=5):
    """A gallery of the ``count`` images of lowest Dice, worst first, titled with their names and Dice, with
    true (green) and predicted (red) lung contours. images (N, H, W) in [0, 1], masks and predicted (N, H, W)
    bool, dice (N,)."""
    order = numpy.argsort(dice, kind="stable")[:count]
    figure = Figure(figsize=(3 * len(order), 3.8), dpi=100)
    for axes, index in zip(numpy.atleast_1d(figure.subplots(1, len(order))), order):
        axes.imshow(images[index], cmap="gray", vmin=0.0, vmax=1.0)
        for mask, colour in ((masks[index], "lime"), (predicted[index], "red")):
            if mask.any():
                axes.contour(mask.astype(numpy.float32), levels=[0.5], colors=colour, linewidths=1.2)
        axes.set_title(f"{names[index]}\nDice {dice[index]:.3f}", fontsize=9)
        axes.set_axis_off()
    figure.suptitle("lowest Dice: true lungs (green), predicted (red)")
    figure.tight_layout(rect=(0.0, 0.0, 1.0, 0.9))  # the top tenth for the title
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png")


ROWS_PER_CHUNK = 512  # rows converted at a time, so no full-size float temporary is made


def gray_bytes(image):
    """(H, W) float in [0, 1] -> (H, W) uint8 round(255 * clip(image)), converted in bands of rows."""
    gray = numpy.empty(image.shape, numpy.uint8)
    for start in range(0, image.shape[0], ROWS_PER_CHUNK):
        band = numpy.clip(image[start:start + ROWS_PER_CHUNK], 0.0, 1.0).astype(numpy.float32)
        gray[start:start + ROWS_PER_CHUNK] = numpy.round(band * 255)
    return gray


def _outline(mask):
    """The pixels of an (H, W) bool mask with a 4-neighbour outside it (the picture's border counts as inside)."""
    interior = mask.copy()
    interior[1:, :] &= mask[:-1, :]
    interior[:-1, :] &= mask[1:, :]
    interior[:, 1:] &= mask[:, :-1]
    interior[:, :-1] &= mask[:, 1:]
    return mask & ~interior


def overlay(image, mask, colour=(255, 64, 64), alpha=0.35):
    """An RGB uint8 picture of a gray (H, W) image (uint8, or float in [0, 1]) with the mask tinted and its
    outline drawn.

    Built in uint8, a band of rows at a time: a tinted pixel is looked up in a 256-entry table of
    round((1 - alpha) * gray + alpha * colour), and each band's outline is found with one row of the mask
    above and below it, so a large radiograph needs little more than the picture itself.
    """
    gray = image if image.dtype == numpy.uint8 else gray_bytes(image)
    tinted = numpy.round((1 - alpha) * numpy.arange(256.0)[:, None] + alpha * numpy.array(colour, numpy.float64))
    tinted, colour = tinted.astype(numpy.uint8), numpy.array(colour, numpy.uint8)
    height = gray.shape[0]
    picture = numpy.empty((*gray.shape, 3), numpy.uint8)
    for top in range(0, height, ROWS_PER_CHUNK):
        bottom = min(height, top + ROWS_PER_CHUNK)
        above, below = max(0, top - 1), min(height, bottom + 1)
        band, band_gray, band_mask = picture[top:bottom], gray[top:bottom], mask[top:bottom]
        band[...] = band_gray[..., None]
        band[band_mask] = tinted[band_gray[band_mask]]
        band[_outline(mask[above:below])[top - above:bottom - above]] = colour
    return Image.fromarray(picture)
