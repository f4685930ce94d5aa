"""Light augmentation that keeps anatomy plausible: small rotation, scale and shift, brightness and contrast.

No left-right flip (the heart is on the patient's left). Drawing the random
parameters (``draw_augmentation``) is separate from applying them
(``apply_augmentation``), so a resumed run can replay the draws of the batches
it skips and stay on the same random stream.
"""
import numpy

from ..backend import get_array_module


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


def _source_coordinates(params, height, width, xp):
    """Where each output pixel samples the input: (N, H, W) float32 rows and columns (inverse similarity
    transform), on ``xp``'s device."""
    def column(name):
        return params[name][:, None, None]
    rows = xp.arange(height, dtype=numpy.float32)[None, :, None] - (height - 1) / 2.0
    cols = xp.arange(width, dtype=numpy.float32)[None, None, :] - (width - 1) / 2.0
    cosine = xp.cos(column("angle")) / column("scale")
    sine = xp.sin(column("angle")) / column("scale")
    rows = rows - column("shift_y") * height
    cols = cols - column("shift_x") * width
    source_rows = cosine * rows - sine * cols + (height - 1) / 2.0
    source_cols = sine * rows + cosine * cols + (width - 1) / 2.0
    return source_rows, source_cols


def apply_augmentation(images, masks, params):
    """Warp (N, 1, H, W) images bilinearly and masks by nearest neighbour, then change brightness/contrast.

    Pixels sampled outside the input repeat its border. Works in float32 on the arrays' device (host or
    GPU), so a GPU run augments its batches where it trains. Returns new arrays of the inputs' dtypes.
    """
    xp = get_array_module(images)
    count, _, height, width = images.shape
    names = sorted(params)
    table = xp.asarray(numpy.stack([params[name] for name in names]).astype(numpy.float32))  # one transfer
    params = dict(zip(names, table))
    source_rows, source_cols = _source_coordinates(params, height, width, xp)
    source_rows = xp.clip(source_rows, 0.0, height - 1.0)
    source_cols = xp.clip(source_cols, 0.0, width - 1.0)
    top = xp.minimum(xp.floor(source_rows).astype(numpy.intp), height - 2 if height > 1 else 0)
    left = xp.minimum(xp.floor(source_cols).astype(numpy.intp), width - 2 if width > 1 else 0)
    weight_row, weight_col = source_rows - top, source_cols - left
    sample = xp.arange(count)[:, None, None]
    pixels = images[:, 0].astype(numpy.float32).reshape(-1)
    # flat positions of the four neighbours: (top, left), one column right, one row below (none on a 1-pixel axis)
    corner = (sample * height + top) * width + left
    down, across = (width if height > 1 else 0), (1 if width > 1 else 0)
    warped = ((1 - weight_row) * ((1 - weight_col) * pixels[corner] + weight_col * pixels[corner + across])
              + weight_row * ((1 - weight_col) * pixels[corner + down]
                              + weight_col * pixels[corner + down + across]))
    mean = warped.mean(axis=(1, 2), keepdims=True)
    contrast, brightness = params["contrast"][:, None, None], params["brightness"][:, None, None]
    warped = xp.clip((warped - mean) * contrast + mean + brightness, 0.0, 1.0)
    nearest_rows = xp.rint(source_rows).astype(numpy.intp)
    nearest_cols = xp.rint(source_cols).astype(numpy.intp)
    warped_masks = masks[:, 0][sample, nearest_rows, nearest_cols]
    return warped[:, None].astype(images.dtype), warped_masks[:, None].astype(masks.dtype, copy=False)
