"""Using a trained checkpoint: lung masks and overlays for image files, and Dice / IoU on a dataset folder."""
import os

import numpy
from PIL import Image

from ..data import find_pairs, load_pairs, read_file_bytes, read_image, resize_image, warn_rescaled
from ..data.components import postprocess_mask
from ..data.errors import listing
from ..serialization import atomic_output
from .builders import build_loss, build_model, check_device
from .checkpoint import load_model_weights, read_checkpoint
from .errors import ConfigError
from .evaluation import dice_and_iou, evaluate, predict_probabilities
from .plots import gray_bytes, overlay


def load_trained_model(checkpoint_path, device="cpu"):
    """(model in eval mode on ``device``, its TrainConfig) from a checkpoint file or run folder."""
    check_device(device)
    checkpoint = read_checkpoint(checkpoint_path)
    config = checkpoint["config"]
    model = build_model(config)
    load_model_weights(model, checkpoint)
    return model.to(device).eval(), config


PREDICT_SUFFIXES = ("_mask.png", "_overlay.png")


def output_stems(paths, suffixes=PREDICT_SUFFIXES, command="predict"):
    """{output stem: input path}, a file given twice counted once.

    Two inputs whose file names differ at most in case would write the same outputs (``<stem><suffix>``) on a
    file system that ignores case (macOS's and Windows' by default): refused.
    """
    owners, by_key = {}, {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        other = by_key.get(stem.casefold())
        if other is not None and os.path.abspath(other) == os.path.abspath(path):
            continue
        if other is not None:
            raise ConfigError(f"IMAGES {other} and {path} would both write "
                              f"{' and '.join(stem + suffix for suffix in suffixes)}; run {command} on them with "
                              "separate --out folders")
        by_key[stem.casefold()] = owners[stem] = path
    return owners


def output_paths(stems, out_dir):
    """{stem: (mask path, overlay path)}: the files ``predict_files`` writes for each input."""
    return {stem: (os.path.join(out_dir, f"{stem}_mask.png"), os.path.join(out_dir, f"{stem}_overlay.png"))
            for stem in stems}


def _identity(path):
    """(device, inode) of an existing file, None for a missing one."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def check_outputs(outputs, inputs, overwrite=False, command="predict"):
    """Refuse, before anything is read or written, an output that is one of the inputs (always: the output
    would replace its own source) and an existing output (unless ``overwrite``): a ``ConfigError`` naming them."""
    sources = {os.path.realpath(path) for path in inputs} | ({_identity(path) for path in inputs} - {None})
    clobbered = [path for path in outputs if os.path.realpath(path) in sources or _identity(path) in sources]
    if clobbered:
        raise ConfigError(f"{command} would write over its own input{'s' * (len(clobbered) > 1)} "
                          f"{listing(clobbered, ', ')}; choose another --out")
    existing = [path for path in outputs if os.path.lexists(path)]
    if existing and not overwrite:
        raise ConfigError(f"--out already holds {listing(existing, ', ')}; {command} never replaces a file unless "
                          "--overwrite is given (or choose another --out)")


def _predict_at_training_size(model, config, path, contents, device, rescaled):
    """(P(lung) at the training size, the image's (height, width)) for one input file, of bytes ``contents``."""
    image = read_image(path, rescaled, contents)
    resized = resize_image(image, (config.size, config.size))
    return predict_probabilities(model, resized[None, None], 1, device)[0], image.shape


ROWS_PER_BAND = 512  # output rows resized at a time, so a large image's probability is never held at full size


def upscaled_mask(probability, shape):
    """The (S, S) float32 ``probability`` resized bilinearly to ``shape`` = (height, width), cut at 0.5: bool.

    Resized in bands of rows (Pillow's ``box``, each band the same source rectangle a whole resize reads), so
    only the bool mask is full size; the values agree with one whole resize to float32 rounding (about 1e-6).
    """
    height, width = shape
    source, (source_height, source_width) = Image.fromarray(probability), probability.shape
    mask = numpy.empty(shape, bool)
    for top in range(0, height, ROWS_PER_BAND):
        bottom = min(height, top + ROWS_PER_BAND)
        box = (0, top * source_height / height, source_width, bottom * source_height / height)
        band = source.resize((width, bottom - top), Image.BILINEAR, box=box)
        mask[top:bottom] = numpy.asarray(band) >= 0.5
    return mask


def postprocessed(probability):
    """(``probability`` made to agree with ``postprocess_mask`` of its 0.5 cut, the fraction of the raw mask's
    area that changed).

    Pixels the cleaning removed become 0 and pixels it filled become 1, so the mask later resized from the
    probability is the cleaned one (the other pixels keep their values, and with them the smooth border).
    """
    raw = probability >= 0.5
    cleaned = postprocess_mask(raw)
    changed = numpy.count_nonzero(raw != cleaned) / max(numpy.count_nonzero(raw), 1)
    adjusted = numpy.where(cleaned & ~raw, 1.0, numpy.where(raw & ~cleaned, 0.0, probability))
    return adjusted.astype(numpy.float32), changed


def _write_outputs(path, contents, probability, shape, mask_path, overlay_path):
    """The mask (the probability resized bilinearly to ``shape`` and cut at 0.5) and the overlay of one input,
    drawn on the image decoded again from its bytes ``contents``."""
    mask = upscaled_mask(probability, shape)
    with atomic_output(mask_path) as temporary:
        Image.fromarray(mask.astype(numpy.uint8) * numpy.uint8(255)).save(temporary)
    gray = gray_bytes(read_image(path, contents=contents))
    with atomic_output(overlay_path) as temporary:
        overlay(gray, mask).save(temporary)


def predict_files(model, config, paths, out_dir, device="cpu", overwrite=False, postprocess=True):
    """Write ``<stem>_mask.png`` (0/255) and ``<stem>_overlay.png`` at each image's original size.

    Each image is resized to the training size, segmented, cleaned unless ``postprocess`` is False (the two
    largest regions kept, holes filled: ``postprocessed``), and the lung probability resized back (bilinear)
    and thresholded at 0.5. Before anything is written: the output names are checked to be distinct, none of
    them an input and none an existing file (unless ``overwrite``), and every input is read (once: its bytes
    are kept), decoded and segmented. So a bad input leaves ``out_dir`` untouched; besides the inputs' bytes
    only the small training-size probabilities are kept, and each image is decoded once more, from its bytes,
    to draw its overlay.

    Returns (the written paths, {input path: fraction of its raw mask's area the cleaning changed}, empty
    without ``postprocess``).
    """
    stems = output_stems(paths)
    outputs = output_paths(stems, out_dir)
    check_outputs([path for pair in outputs.values() for path in pair], paths, overwrite)
    rescaled = []
    contents = {stem: read_file_bytes(path) for stem, path in stems.items()}
    predicted = {stem: _predict_at_training_size(model, config, path, contents[stem], device, rescaled)
                 for stem, path in stems.items()}
    warn_rescaled(rescaled)
    changes = {}
    if postprocess:
        for stem, (probability, shape) in predicted.items():
            cleaned, changes[stems[stem]] = postprocessed(probability)
            predicted[stem] = cleaned, shape
    os.makedirs(out_dir, exist_ok=True)
    for stem, path in stems.items():
        _write_outputs(path, contents[stem], *predicted[stem], *outputs[stem])
    return [path for stem in stems for path in outputs[stem]], changes


def evaluate_folder(model, config, data, cache_dir=None, device="cpu", log=print, postprocess=True):
    """Loss, Dice and IoU of ``model`` on every pair in the dataset folder ``data``, at the training size.

    Returns {"loss", "dice", "iou" (means, on the masks cleaned as ``predict`` cleans them unless
    ``postprocess`` is False), "raw_dice" (the mean without cleaning), "count", "per_image_dice" (N,),
    "names" (N pair names), "images" (N, S, S), "masks" (N, S, S) bool, "predicted" (N, S, S) bool}.
    """
    report = find_pairs(data)
    for line in report.lines():
        log(line)
    images, masks = load_pairs(report.pairs, (config.size, config.size), data, cache_dir)
    metrics, probabilities = evaluate(model, build_loss(config.loss), config.loss, images[:, None],
                                      masks[:, None].astype(numpy.float32), config.batch_size, device)
    truth = masks >= 0.5
    predicted = probabilities >= 0.5
    raw_dice = float(dice_and_iou(predicted, truth)[0].mean())
    if postprocess:
        predicted = numpy.stack([postprocess_mask(mask) for mask in predicted])
    dice, iou = dice_and_iou(predicted, truth)
    return {"loss": metrics["loss"], "dice": float(dice.mean()), "iou": float(iou.mean()), "raw_dice": raw_dice,
            "count": len(images), "per_image_dice": dice, "names": [pair.name for pair in report.pairs],
            "images": images, "masks": truth, "predicted": predicted}
