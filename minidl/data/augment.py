"""Light augmentation that keeps anatomy plausible: small rotation, scale and shift, brightness and contrast.

No left-right flip (the heart is on the patient's left). Drawing the random
parameters (``draw_augmentation``) is separate from applying them
(``apply_augmentation``), so a resumed run can replay the draws of the batches
it skips and stay on the same random stream.
"""
import numpy


def draw_augmentation(rng, count, strength=1.0):
    """Per-sample parameters for ``count`` images: a dict of (count,) float64 arrays."""
    return {
        "angle": rng.uniform(-7.0, 7.0, count) * strength * numpy.pi / 180.0,
        "scale": 1.0 + rng.uniform(-0.08, 0.08, count) * strength,
        "shift_y": rng.uniform(-0.05, 0.05, count) * strength,
        "shift_x": rng.uniform(-0.05, 0.05, count) * strength,
        "brightness": rng.uniform(-0.08, 0.08, count) * strength,
        "contrast": 1.0 + rng.uniform(-0.15, 0.15, count) * strength,
    }


def _source_coordinates(params, height, width):
    """Where each output pixel samples the input: (N, H, W) rows and columns (inverse similarity transform)."""
    rows = numpy.arange(height, dtype=numpy.float64)[None, :, None] - (height - 1) / 2.0
    cols = numpy.arange(width, dtype=numpy.float64)[None, None, :] - (width - 1) / 2.0
    cosine = (numpy.cos(params["angle"]) / params["scale"])[:, None, None]
    sine = (numpy.sin(params["angle"]) / params["scale"])[:, None, None]
    rows = rows - params["shift_y"][:, None, None] * height
    cols = cols - params["shift_x"][:, None, None] * width
    source_rows = cosine * rows - sine * cols + (height - 1) / 2.0
    source_cols = sine * rows + cosine * cols + (width - 1) / 2.0
    return source_rows, source_cols


def apply_augmentation(images, masks, params):
    """Warp (N, 1, H, W) images bilinearly and masks by nearest neighbour, then change brightness/contrast.

    Pixels sampled outside the input repeat its border. Returns new arrays of the inputs' dtypes.
    """
    count, _, height, width = images.shape
    source_rows, source_cols = _source_coordinates(params, height, width)
    source_rows = numpy.clip(source_rows, 0.0, height - 1.0)
    source_cols = numpy.clip(source_cols, 0.0, width - 1.0)
    top = numpy.minimum(numpy.floor(source_rows).astype(numpy.int64), height - 2 if height > 1 else 0)
    left = numpy.minimum(numpy.floor(source_cols).astype(numpy.int64), width - 2 if width > 1 else 0)
    weight_row, weight_col = source_rows - top, source_cols - left
    sample = numpy.arange(count)[:, None, None]
    plane = images[:, 0].astype(numpy.float64)
    below, right = numpy.minimum(top + 1, height - 1), numpy.minimum(left + 1, width - 1)
    warped = ((1 - weight_row) * ((1 - weight_col) * plane[sample, top, left] + weight_col * plane[sample, top, right])
              + weight_row * ((1 - weight_col) * plane[sample, below, left]
                              + weight_col * plane[sample, below, right]))
    mean = warped.mean(axis=(1, 2), keepdims=True)
    contrast, brightness = params["contrast"][:, None, None], params["brightness"][:, None, None]
    warped = numpy.clip((warped - mean) * contrast + mean + brightness, 0.0, 1.0)
    nearest_rows = numpy.rint(source_rows).astype(numpy.int64)
    nearest_cols = numpy.rint(source_cols).astype(numpy.int64)
    warped_masks = masks[:, 0][sample, nearest_rows, nearest_cols]
    return warped[:, None].astype(images.dtype), warped_masks[:, None].astype(masks.dtype, copy=False)
