"""``train_lung.py --inspect`` and ``train_lung.py saliency``: watching backprop in the lung-segmentation run.

``InspectedTrainer`` trains as ``Trainer`` does while an ``Inspector`` records each step's per-layer
statistics; after every epoch it rewrites, in the run folder, layer_stats.csv (one row per epoch and
layer: means over the epoch's steps), gradient_flow.png, activations.png, update_ratios.png and
saliency.png (d loss / d input for the first validation images, by the model's own backward).
"""
import os

import numpy

from ..backend import to_device, to_numpy
from ..data import read_image, resize_image
from ..grad_mode import no_grad
from ..inspect import Inspector, input_gradient, layer_table, mean_over_steps
from .builders import build_loss, loss_target, lung_probability
from .inference import check_outputs, output_stems
from .inspection_plots import (plot_activations, plot_gradient_flow, plot_saliency, plot_update_ratios,
                               read_layer_stats, write_layer_stats)
from .loop import Trainer

INSPECTION_FILES = ("layer_stats.csv", "gradient_flow.png", "activations.png", "update_ratios.png", "saliency.png")
SALIENCY_IMAGES = 4


class InspectedTrainer(Trainer):
    """A ``Trainer`` that also writes the ``INSPECTION_FILES`` (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inspector = Inspector(self.model)
        self.epoch_steps, self.epochs_seen = [], []

    def resume(self, checkpoint):
        """As ``Trainer.resume``, keeping the finished epochs' rows of the checkpoint's layer_stats.csv."""
        super().resume(checkpoint)
        folder = os.path.dirname(os.path.abspath(checkpoint["path"]))
        self.epochs_seen = read_layer_stats(os.path.join(folder, "layer_stats.csv"), checkpoint["epoch"])

    def _train_step(self, images, masks, epoch, step):
        result = super()._train_step(images, masks, epoch, step)
        self.epoch_steps.append(self.inspector.end_step())
        return result

    def _end_epoch(self, epoch, totals):
        with self.inspector.paused():
            super()._end_epoch(epoch, totals)
            table = layer_table(mean_over_steps(self.epoch_steps), self.inspector.forward_order)
            self.epochs_seen.append((epoch + 1, table))
            self.epoch_steps = []
            self.write_inspection()

    def write_inspection(self):
        write_layer_stats(self.epochs_seen, self.inspector.layer_types, self.path("layer_stats.csv"))
        plot_gradient_flow(self.epochs_seen, self.path("gradient_flow.png"))
        plot_activations(self.epochs_seen, self.path("activations.png"))
        plot_update_ratios(self.epochs_seen, self.path("update_ratios.png"))
        images, masks = self.val_images[:SALIENCY_IMAGES], self.val_masks[:SALIENCY_IMAGES]
        if not len(images):
            return
        gradients = loss_gradients(self.model, self.config, images, masks)
        plot_saliency(images[:, 0], masks[:, 0], gradients, self.path("saliency.png"),
                      title=f"epoch {self.epochs_seen[-1][0]}, loss against the true mask")


def loss_gradients(model, config, images, masks):
    """d loss / d image (N, H, W) on the host for (N, 1, H, W) host images and 0/1 masks, one image at a time."""
    loss = build_loss(config.loss)
    gradients = []
    for image, mask in zip(images, masks):
        x = to_device(image[None], config.device)
        target = to_device(loss_target(mask[None], config.loss, image.dtype), config.device)
        gradients.append(to_numpy(input_gradient(model, loss, x, target))[0, 0])
    return numpy.stack(gradients)


def predicted_masks(model, config, images):
    """(N, 1, H, W) float 0/1 masks: the model's own prediction (P(lung) >= 0.5) for (N, 1, H, W) host images."""
    with no_grad():
        logits = model(to_device(images, config.device))
    return (to_numpy(lung_probability(logits)) >= 0.5).astype(images.dtype)[:, None]


def saliency_files(model, config, paths, out_dir, overwrite=False):
    """Write ``<stem>_saliency.png`` for each image file: d loss / d input at the training size, the loss taken
    against the model's own thresholded prediction (no true mask is known). Returns the written paths.

    As ``predict_files``, before anything is read: the output names are checked to be distinct, none of them
    an input and none an existing file (unless ``overwrite``)."""
    stems = output_stems(paths, ("_saliency.png",), "saliency")
    check_outputs([os.path.join(out_dir, f"{stem}_saliency.png") for stem in stems], paths, overwrite, "saliency")
    images = {stem: resize_image(read_image(path), (config.size, config.size)) for stem, path in stems.items()}
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for stem, image in images.items():
        batch = image[None, None]
        masks = predicted_masks(model, config, batch)
        gradients = loss_gradients(model, config, batch, masks)
        path = os.path.join(out_dir, f"{stem}_saliency.png")
        plot_saliency(batch[:, 0], masks[:, 0], gradients, path, title=f"{stem}, loss against the predicted mask")
        written.append(path)
    return written
