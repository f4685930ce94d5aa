"""Reading radiographs and masks from disk, resizing them, and caching the result.

``read_image(path)`` -> (H, W) float32 in [0, 1]: 8- or 16-bit, grayscale, RGB
or palette PNG and JPEG, each scaled by its own dtype's range (RGB becomes
luminance); float (TIFF) images beyond [0, 1], such as Hounsfield-like -1000..2000,
by their own minimum and maximum (``read_image``'s ``rescaled`` list gathers them for ``warn_rescaled``), and NaN
pixels are an error. ``read_mask(paths)`` -> (H, W) bool: each file binarised by
``binarise_mask``, several files (Montgomery's left and right masks) combined
as their union. ``resize_image`` is bilinear and ``resize_mask`` nearest, both
with Pillow. Errors name the file.
"""
import io
import sys

import numpy
from PIL import Image, UnidentifiedImageError

from .errors import DataError

# Pillow modes whose pixels are integers of a known bit depth, and that range's maximum.
_INTEGER_RANGES = {"1": 1, "L": 255, "P": 255, "I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535}


def read_file_bytes(path):
    """The whole file ``path`` as bytes (a ``DataError`` naming it when it cannot be read)."""
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as error:
        raise DataError(f"cannot read image {path}: {_reason(error)}") from None


def _open(path, contents=None):
    """The decoded image ``path`` (from ``contents``, its bytes, when given), errors naming the path."""
    try:
        image = Image.open(path if contents is None else io.BytesIO(contents))
        image.load()
    except Image.DecompressionBombError as error:
        raise DataError(f"cannot read image {path}: {error}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {_reason(error)}") from None
    return image


def _reason(error):
    """An OSError's reason without the path Python repeats in ``str`` (the message names the file already)."""
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


def image_size(path):
    """(height, width) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise DataError(f"cannot read image {path}: {error}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {_reason(error)}") from None
    return height, width


def _own_range(pixels, path, scale, rescaled):
    """Pixels of a 32-bit integer or float image as float32 in [0, 1]: divided by ``scale`` when they lie in
    [0, scale], else scaled by their own minimum and maximum (``path`` is then appended to ``rescaled``, a list
    or None). NaN is an error."""
    pixels = pixels.astype(numpy.float32)
    if numpy.isnan(pixels).any():
        raise DataError(f"cannot read image {path}: it holds NaN pixels")
    low, high = float(pixels.min(initial=0.0)), float(pixels.max(initial=0.0))
    if 0.0 <= low and high <= scale:
        return pixels / numpy.float32(scale)
    if rescaled is not None:
        rescaled.append(path)
    pixels -= numpy.float32(low)
    return pixels / numpy.float32(high - low) if high > low else pixels


def warn_rescaled(files):
    """One warning line on stderr for the ``files`` (if any) that ``read_image`` scaled by their own minimum and
    maximum: float images beyond [0, 1], 32-bit integer images beyond 16 bits."""
    if files:
        print(f"warning: {len(files)} image file{'s' * (len(files) != 1)} held values outside [0, 1] (float) or "
              f"beyond 16 bits and were scaled by their own minimum and maximum, first {files[0]}", file=sys.stderr)


def _as_unit_gray(image, path, rescaled=None):
    """A Pillow image of any supported mode as (H, W) float32 in [0, 1], scaled by its dtype's range."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
        image = image.convert("L")
    pixels = numpy.asarray(image)
    if image.mode in _INTEGER_RANGES:
        return pixels.astype(numpy.float32) / numpy.float32(_INTEGER_RANGES[image.mode])
    if image.mode == "I":  # 32-bit integers: older Pillows decode 16-bit PNGs into this container
        return _own_range(pixels, path, 65535.0, rescaled)
    if image.mode == "F":
        return _own_range(pixels, path, 1.0, rescaled)
    raise DataError(f"cannot read image {path}: unsupported pixel mode {image.mode}")


def read_image(path, rescaled=None, contents=None):
    """A radiograph as (H, W) float32 gray in [0, 1]; ``path`` is appended to the list ``rescaled`` (when given)
    if its values were scaled by their own minimum and maximum. ``contents``, when given, are the file's bytes
    already read (``read_file_bytes``): decoded without opening the file again."""
    with _open(path, contents) as image:
        return _as_unit_gray(image, path, rescaled)


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
    resized = Image.fromarray(image.astype(numpy.float32, copy=False)).resize((width, height), Image.BILINEAR)
    return numpy.clip(numpy.asarray(resized, numpy.float32), 0.0, 1.0)


def resize_mask(mask, size):
    """Nearest-neighbour resize of an (H, W) bool mask to ``size`` = (height, width)."""
    height, width = size
    if mask.shape == (height, width):
        return mask
    resized = Image.fromarray(mask.astype(numpy.uint8) * 255).resize((width, height), Image.NEAREST)
    return numpy.asarray(resized) >= 128
