"""Loading a paired dataset into memory at the training size, with an on-disk cache.

``load_pairs(pairs, size, cache_dir)`` -> images (N, H, W) float32 in [0, 1], masks (N, H, W) bool.
The cache is one npz per dataset folder and size, written atomically with
``minidl.save`` (never pickled). Each entry is keyed by its files' paths,
modification times and byte sizes and the target size, so a changed file is
decoded again and large originals (4000x5000) are decoded only once.
"""
import hashlib
import os

import numpy
from tqdm import tqdm

from ..serialization import load, save
from .errors import DataError
from .images import image_size, read_image, read_mask, resize_image, resize_mask


def default_cache_dir():
    """``$MINIDL_CACHE_DIR``, or ``~/.cache/minidl``."""
    return os.environ.get("MINIDL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "minidl")


def _file_key(path):
    status = os.stat(path)
    return f"{os.path.abspath(path)}|{status.st_mtime_ns}|{status.st_size}"


def pair_key(pair, size):
    """The cache key of one pair at ``size``: its files' paths, mtimes and byte sizes, and the size."""
    files = [pair.image, *pair.masks]
    return "#".join(_file_key(path) for path in files) + f"#{size[0]}x{size[1]}"


def _cache_path(cache_dir, root, size):
    digest = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"lungs-{digest}-{size[0]}x{size[1]}.npz")


def check_pair_sizes(pair):
    """Raise ``DataError`` unless every mask file has its image's size (read from the headers only)."""
    height, width = image_size(pair.image)
    for mask_path in pair.masks:
        mask_height, mask_width = image_size(mask_path)
        if (mask_height, mask_width) != (height, width):
            raise DataError(f"mask {mask_path} is {mask_width}x{mask_height} but its image {pair.image} "
                            f"is {width}x{height}")


def load_pair(pair, size):
    """Decode one pair and resize both to ``size``: (H, W) float32 in [0, 1], (H, W) bool."""
    check_pair_sizes(pair)
    return resize_image(read_image(pair.image), size), resize_mask(read_mask(pair.masks), size)


def _read_cache(path):
    if not path or not os.path.exists(path):
        return {}
    try:
        stored = load(path)
        return {key: (image, mask) for key, image, mask in zip(stored["keys"], stored["images"], stored["masks"])}
    except (ValueError, KeyError):
        return {}  # an unreadable or foreign cache is rebuilt


def load_pairs(pairs, size, root, cache_dir=None, progress=True):
    """Every pair decoded at ``size`` = (height, width); reuses and refreshes the cache in ``cache_dir``.

    Returns images (N, H, W) float32 in [0, 1] and masks (N, H, W) bool, in the order of ``pairs``.
    """
    cache_path = _cache_path(cache_dir, root, size) if cache_dir else None
    cached = _read_cache(cache_path)
    keys = [pair_key(pair, size) for pair in pairs]
    images = numpy.empty((len(pairs), *size), numpy.float32)
    masks = numpy.empty((len(pairs), *size), bool)
    missing = [index for index, key in enumerate(keys) if key not in cached]
    for index in missing:  # every header first, so a bad pair fails before any slow decoding
        check_pair_sizes(pairs[index])
    for index, key in enumerate(keys):
        if key in cached:
            images[index], masks[index] = cached[key]
    for index in tqdm(missing, desc="decoding images", unit="img", disable=not progress or len(missing) < 20):
        images[index], masks[index] = load_pair(pairs[index], size)
    if cache_path and (missing or len(cached) != len(keys)):
        save(cache_path, {"keys": numpy.array(keys), "images": images, "masks": masks})
    return images, masks
