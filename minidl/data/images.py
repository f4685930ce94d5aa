"""Reading radiographs and masks from disk, resizing them, and caching the result.

``read_image(path)`` -> (H, W) float32 in [0, 1]: 8- or 16-bit, grayscale, RGB
or palette PNG and JPEG, each scaled by its own dtype's range (RGB becomes
luminance). ``read_mask(paths)`` -> (H, W) bool: each file binarised by
``binarise_mask``, several files (Montgomery's left and right masks) combined
as their union. ``resize_image`` is bilinear and ``resize_mask`` nearest, both
with Pillow. Errors name the file.
"""
import numpy
from PIL import Image, UnidentifiedImageError

from .errors import DataError

# Pillow modes whose pixels are integers of a known bit depth, and that range's maximum.
_INTEGER_RANGES = {"1": 1, "L": 255, "P": 255, "I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535}


def _open(path):
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}") from None
    return image


def image_size(path):
    """(height, width) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}") from None
    return height, width


def _as_unit_gray(image, path):
    """A Pillow image of any supported mode as (H, W) float64 in [0, 1], scaled by its dtype's range."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
        image = image.convert("L")
    pixels = numpy.asarray(image)
    if image.mode in _INTEGER_RANGES:
        return pixels.astype(numpy.float64) / _INTEGER_RANGES[image.mode]
    if image.mode == "I":  # the 32-bit container older Pillows decode 16-bit PNGs into
        return numpy.clip(pixels.astype(numpy.float64) / 65535, 0.0, 1.0)
    if image.mode == "F":
        return numpy.clip(pixels.astype(numpy.float64), 0.0, 1.0)
    raise DataError(f"cannot read image {path}: unsupported pixel mode {image.mode}")


def read_image(path):
    """A radiograph as (H, W) float32 gray in [0, 1]."""
    with _open(path) as image:
        return _as_unit_gray(image, path).astype(numpy.float32)


def binarise_mask(gray):
    """The lungs of one mask file read as (H, W) gray in [0, 1] (its dtype's range): (H, W) bool.

    A file with pixels at or above half its range (0/255 masks, anti-aliased ones) is cut there, so soft
    edges stay as drawn. A file with no such pixel is a label mask (0/1, or small label values such as
    1 and 2 for two lungs): every nonzero pixel is lung. An all-zero file is an empty mask.
    """
    if gray.max(initial=0.0) >= 0.5:
        return gray >= 0.5
    return gray > 0.0


def read_mask(paths):
    """The union of one or more mask files, each binarised by ``binarise_mask``: (H, W) bool."""
    paths = [paths] if isinstance(paths, (str, bytes)) or not hasattr(paths, "__iter__") else list(paths)
    union = None
    for path in paths:
        with _open(path) as image:
            mask = binarise_mask(_as_unit_gray(image, path))
        if union is not None and mask.shape != union.shape:
            raise DataError(f"mask {path} has size {mask.shape[1]}x{mask.shape[0]}, "
                            f"its companion {paths[0]} has {union.shape[1]}x{union.shape[0]}")
        union = mask if union is None else union | mask
    return union


def resize_image(image, size):
    """Bilinear resize (antialiased when shrinking) of (H, W) float32 to ``size`` = (height, width)."""
    height, width = size
    if image.shape == (height, width):
        return image.astype(numpy.float32, copy=False)
    resized = Image.fromarray(image.astype(numpy.float32)).resize((width, height), Image.BILINEAR)
    return numpy.clip(numpy.asarray(resized, numpy.float32), 0.0, 1.0)


def resize_mask(mask, size):
    """Nearest-neighbour resize of an (H, W) bool mask to ``size`` = (height, width)."""
    height, width = size
    if mask.shape == (height, width):
        return mask
    resized = Image.fromarray(mask.astype(numpy.uint8) * 255).resize((width, height), Image.NEAREST)
    return numpy.asarray(resized) >= 128
