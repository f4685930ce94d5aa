"""Using a trained checkpoint: lung masks and overlays for image files, and Dice / IoU on a dataset folder."""
import os

import numpy
from PIL import Image

from ..data import find_pairs, load_pairs, read_image, resize_image
from ..serialization import atomic_output
from .builders import build_loss, build_model, check_device
from .checkpoint import load_model_weights, read_checkpoint
from .errors import ConfigError
from .evaluation import evaluate, predict_probabilities
from .plots import overlay


def load_trained_model(checkpoint_path, device="cpu"):
    """(model in eval mode on ``device``, its TrainConfig) from a checkpoint file or run folder."""
    check_device(device)
    checkpoint = read_checkpoint(checkpoint_path)
    config = checkpoint["config"]
    model = build_model(config)
    load_model_weights(model, checkpoint)
    return model.to(device).eval(), config


def output_stems(paths):
    """{output stem: input path}, a file given twice counted once.

    Two inputs whose file names differ at most in case would write the same outputs on a file system that
    ignores case (macOS's and Windows' by default): refused.
    """
    owners, by_key = {}, {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        other = by_key.get(stem.casefold())
        if other is not None and os.path.abspath(other) == os.path.abspath(path):
            continue
        if other is not None:
            raise ConfigError(f"IMAGES {other} and {path} would both write {stem}_mask.png and "
                              f"{stem}_overlay.png; predict them into separate --out folders")
        by_key[stem.casefold()] = owners[stem] = path
    return owners


def predict_files(model, config, paths, out_dir, device="cpu"):
    """Write ``<stem>_mask.png`` (0/255) and ``<stem>_overlay.png`` at each image's original size.

    Each image is resized to the training size, segmented, and the lung probability resized back
    (bilinear) and thresholded at 0.5. Before anything is written, every input is decoded once and the
    output names are checked to be distinct: a bad input leaves ``out_dir`` untouched (each image is then
    decoded again to predict it, rather than all of them held in memory). Returns the written file paths.
    """
    stems = output_stems(paths)
    for path in paths:
        read_image(path)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for stem, path in stems.items():
        image = read_image(path)
        resized = resize_image(image, (config.size, config.size))
        probability = predict_probabilities(model, resized[None, None], 1, device)[0]
        probability = numpy.asarray(Image.fromarray(probability).resize(image.shape[::-1], Image.BILINEAR))
        mask = probability >= 0.5
        mask_path = os.path.join(out_dir, f"{stem}_mask.png")
        overlay_path = os.path.join(out_dir, f"{stem}_overlay.png")
        with atomic_output(mask_path) as temporary:
            Image.fromarray(mask.astype(numpy.uint8) * 255).save(temporary)
        with atomic_output(overlay_path) as temporary:
            overlay(image, mask).save(temporary)
        written += [mask_path, overlay_path]
    return written


def evaluate_folder(model, config, data, cache_dir=None, device="cpu", log=print):
    """Mean loss, Dice and IoU of ``model`` on every pair in the dataset folder ``data``, at the training size."""
    report = find_pairs(data)
    for line in report.lines():
        log(line)
    images, masks = load_pairs(report.pairs, (config.size, config.size), data, cache_dir)
    metrics, _ = evaluate(model, build_loss(config.loss), config.loss, images[:, None],
                          masks[:, None].astype(numpy.float32), config.batch_size, device)
    return {**metrics, "count": len(images)}
