"""Augmentation that keeps anatomy plausible and widens what the images look like.

Geometry: small rotation, scale and shift (framing). Intensity, aimed at the
differences between synthetic and real radiographs: brightness and contrast, a
gamma curve, local contrast (unsharp masking, or its opposite, a softening
blur) and pixel noise. No left-right flip (the heart is on the patient's left). Drawing the random
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
        "scale": 1.0 + rng.uniform(-0.12, 0.12, count) * strength,
        "shift_y": rng.uniform(-0.06, 0.06, count) * strength,
        "shift_x": rng.uniform(-0.06, 0.06, count) * strength,
        "brightness": rng.uniform(-0.08, 0.08, count) * strength,
        "contrast": 1.0 + rng.uniform(-0.15, 0.15, count) * strength,
        "gamma": numpy.exp(rng.uniform(-0.4, 0.4, count) * strength),
        "local_contrast": rng.uniform(-0.5, 1.0, count) * strength,
        "noise": rng.uniform(0.0, 0.04, count) * strength,
        "noise_seed": rng.integers(0, 2 ** 24, count).astype(numpy.float64),  # exact in float32
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


def _box_blur(images, radius, xp):
    """Mean over a (2 radius + 1)-pixel square around each pixel of (N, H, W) images, borders repeated."""
    width = 2 * radius + 1
    for axis in (1, 2):
        padding = [(0, 0), (0, 0), (0, 0)]
        padding[axis] = (radius + 1, radius)
        sums = xp.cumsum(xp.pad(images, padding, mode="edge"), axis=axis)
        length = images.shape[axis]
        images = (xp.take(sums, xp.arange(width, width + length), axis=axis)
                  - xp.take(sums, xp.arange(length), axis=axis)) / width
    return images


def _hash_noise(shape, seeds, xp):
    """Zero-mean, unit-variance noise of ``shape`` (N, H, W) from per-sample ``seeds`` (float32, below 2**24),
    by an integer hash: identical on the host and the GPU."""
    count = shape[0]
    index = xp.arange(int(numpy.prod(shape[1:])), dtype=numpy.uint32)[None]
    seeds = seeds.astype(numpy.uint32)[:, None]

    def uniform(salt):
        value = index * numpy.uint32(0x9E3779B1) + (seeds * numpy.uint32(2) + numpy.uint32(salt)) * numpy.uint32(
            0x85EBCA77)
        for shift, factor in ((15, 0x2C1B3C6D), (12, 0x297A2D39), (15, 0x9E3779B1)):
            value = (value ^ (value >> numpy.uint32(shift))) * numpy.uint32(factor)
        return (value >> numpy.uint32(8)).astype(numpy.float32) / numpy.float32(2 ** 24)

    return ((uniform(0) + uniform(1) - 1.0) * numpy.float32(6 ** 0.5)).reshape(count, *shape[1:])


def _intensity(images, params, xp):
    """Gamma, local contrast, brightness/contrast and noise on (N, H, W) float32 images in [0, 1]."""
    def column(name):
        return params[name][:, None, None]
    images = xp.clip(images, 0.0, 1.0) ** column("gamma")
    radius = max(1, images.shape[1] // 16)
    images = images + column("local_contrast") * (images - _box_blur(images, radius, xp))
    mean = images.mean(axis=(1, 2), keepdims=True)
    images = (images - mean) * column("contrast") + mean + column("brightness")
    images = images + column("noise") * _hash_noise(images.shape, params["noise_seed"], xp)
    return xp.clip(images, 0.0, 1.0)


def apply_augmentation(images, masks, params):
    """Warp (N, 1, H, W) images bilinearly and masks by nearest neighbour, then change the intensities
    (gamma, local contrast, brightness/contrast, noise).

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
    warped = _intensity(warped, params, xp)
    nearest_rows = xp.rint(source_rows).astype(numpy.intp)
    nearest_cols = xp.rint(source_cols).astype(numpy.intp)
    warped_masks = masks[:, 0][sample, nearest_rows, nearest_cols]
    return warped[:, None].astype(images.dtype), warped_masks[:, None].astype(masks.dtype, copy=False)
