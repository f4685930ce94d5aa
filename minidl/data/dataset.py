"""Loading a paired dataset into memory at the training size, with an on-disk cache.

``load_pairs(pairs, size, cache_dir)`` -> images (N, H, W) float32 in [0, 1], masks (N, H, W) bool.
The cache is one npz per dataset folder and size, written atomically with
``minidl.save`` (never pickled). Each entry is keyed by its files' paths,
modification times, byte sizes and a digest of their first 64 KiB, the target size and the mask rule, so a
changed file is decoded again and large originals (4000x5000) are decoded only
once. Every pair that decodes is cached, even when others fail or the run is
interrupted; the failures are then reported together, each with its reason.
``usable_cache_dir`` checks the cache folder before any decoding.
"""
import hashlib
import os
import sys

import numpy
from tqdm import tqdm

from ..serialization import load, probe_writable, save
from .errors import DataError, listing
from .images import image_size, read_image, read_mask, resize_image, resize_mask, warn_rescaled

CACHE_FORMAT = "masks-v2"  # part of every cache key: bump it when decoding changes (v2: 0/1 label masks)
HASHED_BYTES = 1 << 16  # the leading bytes of each file that its cache key digests
_warned = set()  # messages already printed by ``_warn_once``


def _home_cache_dir():
    return os.path.join(os.path.expanduser("~"), ".cache", "minidl")


def default_cache_dir():
    """``$MINIDL_CACHE_DIR``, or ``~/.cache/minidl``."""
    return os.environ.get("MINIDL_CACHE_DIR") or _home_cache_dir()


def _warn_once(message):
    """Print ``message`` on stderr, once per process."""
    if message not in _warned:
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr)


def _cache_dir_problem(cache_dir):
    """Why decoded images cannot be written to ``cache_dir`` (creating it if needed), or None if they can."""
    if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        return "it is a file, not a folder"
    try:
        os.makedirs(cache_dir, exist_ok=True)
        probe_writable(cache_dir)
    except OSError as error:
        return f"{error.strerror or error}: {error.filename}" if error.filename else str(error)
    return None


def usable_cache_dir(cache_dir):
    """``cache_dir`` if decoded images can be cached there (it is created), else None; call before decoding.

    An unusable folder the user chose (any but the default ``~/.cache/minidl``: ``--cache-dir`` or
    ``$MINIDL_CACHE_DIR``) is a ``DataError`` naming it. An unusable default is only warned about, once,
    and the run goes on without a cache.
    """
    if not cache_dir:
        return None
    cache_dir = os.fspath(cache_dir)
    problem = _cache_dir_problem(cache_dir)
    if problem is None:
        return cache_dir
    if os.path.abspath(cache_dir) != os.path.abspath(_home_cache_dir()):
        raise DataError(f"cache folder {cache_dir}: cannot write there ({problem}); "
                        f"choose another --cache-dir or pass --no-cache")
    _warn_once(f"cannot cache decoded images in the default folder {cache_dir} ({problem}); "
               f"going on without a cache (set --cache-dir or $MINIDL_CACHE_DIR to a writable folder)")
    return None


def _file_key(path):
    """``path``'s absolute path, mtime, byte size and a digest of its first ``HASHED_BYTES``, so a file replaced
    by another of the same size and time is not taken for it. An unreadable file gets a key no entry has: its
    decoding then reports why."""
    try:
        status = os.stat(path)
        with open(path, "rb") as stream:
            digest = hashlib.sha1(stream.read(HASHED_BYTES)).hexdigest()[:16]
    except OSError:
        return f"{os.path.abspath(path)}|unreadable"
    return f"{os.path.abspath(path)}|{status.st_mtime_ns}|{status.st_size}|{digest}"


def pair_key(pair, size):
    """The cache key of one pair at ``size``: its files' ``_file_key``s, the size and the mask rule."""
    files = [pair.image, *pair.masks]
    return "#".join(_file_key(path) for path in files) + f"#{size[0]}x{size[1]}#{CACHE_FORMAT}"


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


def load_pair(pair, size, rescaled=None):
    """Decode one pair and resize both to ``size``: (H, W) float32 in [0, 1], (H, W) bool.

    ``rescaled`` (a list, when given) gathers the image if ``read_image`` scaled it by its own range."""
    check_pair_sizes(pair)
    return resize_image(read_image(pair.image, rescaled), size), resize_mask(read_mask(pair.masks), size)


def _read_cache(path):
    if not path or not os.path.exists(path):
        return {}
    try:
        stored = load(path)
        return {key: (image, mask) for key, image, mask in zip(stored["keys"], stored["images"], stored["masks"])}
    except (ValueError, KeyError):
        return {}  # an unreadable or foreign cache is rebuilt


def _write_cache(path, stored, images, masks):
    """Save the entries whose key ``stored`` holds (None: not loaded); returns whether it could.

    A failed write is warned about, not raised. When every pair loaded, the arrays are saved as they are, not
    copied (a copy of a large dataset would double the memory peak).
    """
    kept = [index for index, key in enumerate(stored) if key is not None]
    if len(kept) < len(stored):
        images, masks = images[kept], masks[kept]
    try:
        save(path, {"keys": numpy.array([stored[index] for index in kept], dtype=str), "images": images,
                    "masks": masks})
    except OSError as error:
        _warn_once(f"cannot write the cache {path} ({error}); decoded images are not cached")
        return False
    return True


def _check_headers(pairs, indices):
    """{index: reason} for each pair in ``indices`` whose files' headers are unreadable or disagree in size."""
    failures = {}
    for index in indices:
        try:
            check_pair_sizes(pairs[index])
        except DataError as error:
            failures[index] = str(error)
    return failures


def _decode(pairs, indices, size, images, masks, stored, keys, progress):
    """Decode ``pairs[indices]`` into ``images`` and ``masks``; {index: reason} of those that fail.

    ``stored[index]`` gets the key of each pair decoded, as it is decoded, so an interrupted run can cache them.
    Images scaled by their own range are warned about in one line at the end.
    """
    failures, rescaled = {}, []
    for index in tqdm(indices, desc="decoding images", unit="img", disable=not progress or len(indices) < 20):
        try:
            images[index], masks[index] = load_pair(pairs[index], size, rescaled)
            stored[index] = keys[index]
        except DataError as error:
            failures[index] = str(error)
    warn_rescaled(rescaled)
    return failures


def _failures_error(failures, total, cached):
    """One ``DataError`` for every pair that could not be loaded, in pair order, each with its reason."""
    reasons = [failures[index] for index in sorted(failures)]
    if len(reasons) == 1:
        return DataError(reasons[0])
    others = "; the others are cached, so a rerun decodes only these" if cached else ""
    return DataError(f"{len(reasons)} of {total} image/mask pairs cannot be loaded{others}:\n  "
                     + listing(reasons, separator="\n  "))


def _empty_masks_error(pairs, size):
    """The ``DataError`` for a dataset whose every mask is empty at ``size``, naming its first mask files."""
    with_lungs = next((pair for pair in pairs if read_mask(pair.masks).any()), None)
    why = (f"{with_lungs.masks[0]} has lungs at its own size, which vanish at {size[1]}x{size[0]}; train at a "
           f"larger size" if with_lungs else "their files hold only zero pixels")
    files = listing([path for pair in pairs for path in pair.masks], separator=", ", limit=3)
    return DataError(f"every one of the {len(pairs)} masks is empty ({why}): {files}; a mask marks the lungs "
                     f"with nonzero pixels")


def load_pairs(pairs, size, root, cache_dir=None, progress=True):
    """Every pair decoded at ``size`` = (height, width); reuses and refreshes the cache in ``cache_dir``.

    Returns images (N, H, W) float32 in [0, 1] and masks (N, H, W) bool, in the order of ``pairs``.
    The cache folder is checked first (``usable_cache_dir``). Every pair is tried: those that load are cached
    (also on Ctrl-C), then one ``DataError`` lists each that did not. A set of masks all empty is a ``DataError``.
    """
    cache_dir = usable_cache_dir(cache_dir)
    cache_path = _cache_path(cache_dir, root, size) if cache_dir else None
    cached = _read_cache(cache_path)
    keys = [pair_key(pair, size) for pair in pairs]
    stored = [key if key in cached else None for key in keys]
    images = numpy.empty((len(pairs), *size), numpy.float32)
    masks = numpy.empty((len(pairs), *size), bool)
    for index, key in enumerate(stored):
        if key is not None:
            images[index], masks[index] = cached[key]
    missing = [index for index, key in enumerate(stored) if key is None]
    failures = _check_headers(pairs, missing)  # every header first: a mismatched pair is never decoded
    try:
        failures.update(_decode(pairs, [index for index in missing if index not in failures], size, images, masks,
                                stored, keys, progress))
    finally:  # keep what was decoded, even if a file failed or the user pressed Ctrl-C
        news = bool(cache_path) and set(stored) - {None} != set(cached)
        in_cache = bool(cache_path) and (_write_cache(cache_path, stored, images, masks) if news else True)
    if failures:
        raise _failures_error(failures, len(pairs), in_cache and len(failures) < len(pairs))
    if pairs and not masks.any():
        raise _empty_masks_error(pairs, size)
    return images, masks
