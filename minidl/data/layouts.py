"""Detecting a lung-mask dataset's folder layout and pairing every image with its mask.

Layouts recognised in ``root`` or one folder below it (``Lung Segmentation/``, say):

- ``kaggle``: ``CXR_png/`` + ``masks/`` (+ ``test/`` of unmasked images), the
  "Chest X-ray Masks and Labels" set. Shenzhen masks are ``CHNCXR_0001_0_mask.png``,
  Montgomery masks carry the image's own name ``MCUCXR_0001_0.png``: both pair.
- ``montgomery``: ``CXR_png/`` + ``ManualMask/leftMask/`` and ``ManualMask/rightMask/``
  of the same names; the mask is the union of the two.
- ``shenzhen``: ``CXR_png/`` + ``mask/`` or ``masks/`` with ``<stem>_mask.png`` names.
- ``generic``: ``images/`` + ``masks/`` matched by stem, with or without ``_mask``.

``find_pairs(root)`` -> ``DatasetReport``: the layout, the pairs, the counts and
every unpaired file by name. Two images whose names differ only in the extension
(``c0.png`` and ``c0.jpg``) would share one mask, so they are an error.
"""
import os
import stat
from dataclasses import dataclass, field

from .errors import DataError, listing

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class Pair:
    """One training example: the image file and the mask file(s) whose union is its mask."""
    name: str
    image: str
    masks: tuple


@dataclass
class DatasetReport:
    """What was found in a dataset folder: the layout, the pairs, and everything left unpaired."""
    layout: str
    root: str
    image_count: int
    mask_count: int
    pairs: list
    unpaired_images: list = field(default_factory=list)
    unpaired_masks: list = field(default_factory=list)
    test_images: list = field(default_factory=list)
    missing_masks: dict = field(default_factory=dict)  # unpaired image name -> the mask files it lacks

    def lines(self):
        """The report as printable lines."""
        text = [f"dataset {self.root}: layout '{self.layout}', {self.image_count} images, "
                f"{self.mask_count} mask files, {len(self.pairs)} pairs used"]
        if self.test_images:
            text.append(f"  {len(self.test_images)} test images without masks (not used for training)")
        for name in self.unpaired_images:
            missing = self.missing_masks.get(name)
            text.append(f"  unpaired image without a mask: {name}" + (f" (missing {', '.join(missing)})"
                                                                       if missing else ""))
        text.extend(f"  unpaired mask without an image: {name}" for name in self.unpaired_masks)
        return text


def _listing(folder):
    """``os.listdir(folder)``; a folder that cannot be read (permissions, a symlink loop) is a ``DataError``."""
    try:
        return os.listdir(folder)
    except OSError as error:
        raise DataError(f"cannot read the folder {folder}: {error.strerror or error}") from None


def _subfolders(root):
    """The paths of ``root``'s visible sub-folders, sorted; one that cannot be followed is a ``DataError``."""
    children = []
    for name in sorted(_listing(root)):
        path = os.path.join(root, name)
        try:
            is_folder = not name.startswith(".") and stat.S_ISDIR(os.stat(path).st_mode)
        except FileNotFoundError:
            continue  # a dangling symlink: no folder there
        except OSError as error:
            raise DataError(f"--data {root}: cannot open {path}: {error.strerror or error}") from None
        if is_folder:
            children.append(path)
    return children


def _image_files(folder):
    """{file name: path} of the image files in ``folder`` (not recursive), sorted by name."""
    if not os.path.isdir(folder):
        return {}
    names = sorted(name for name in _listing(folder)
                   if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."))
    return {name: os.path.join(folder, name) for name in names}


def _stem(name):
    return os.path.splitext(name)[0]


def _check_unique_stems(images):
    """Raise ``DataError`` naming every group of image files that differ only in their extension."""
    by_stem = {}
    for name, path in images.items():
        by_stem.setdefault(_stem(name), []).append(path)
    shared = [" and ".join(paths) for paths in by_stem.values() if len(paths) > 1]
    if shared:
        raise DataError(f"images that differ only in their extension would share one mask and appear twice: "
                        f"{listing(shared)}; keep one of each")


def _pair_by_stem(images, masks):
    """Pair images with masks named ``<stem>.ext`` or ``<stem>_mask.ext``; the ``_mask`` name wins a tie.

    Returns (pairs, unpaired image names, unpaired mask names). Images sharing a stem are a ``DataError``.
    """
    _check_unique_stems(images)
    image_stems = {_stem(name) for name in images}
    mask_for_stem, unpaired_masks = {}, []
    for name in sorted(masks, key=lambda n: not _stem(n).endswith(MASK_SUFFIX)):
        stem = _stem(name)
        without_suffix = stem[:-len(MASK_SUFFIX)] if stem.endswith(MASK_SUFFIX) else None
        target = without_suffix if without_suffix in image_stems else stem
        if target in image_stems and target not in mask_for_stem:
            mask_for_stem[target] = name
        else:
            unpaired_masks.append(name)
    pairs = [Pair(_stem(name), images[name], (masks[mask_for_stem[_stem(name)]],))
             for name in images if _stem(name) in mask_for_stem]
    unpaired_images = [name for name in images if _stem(name) not in mask_for_stem]
    return pairs, unpaired_images, sorted(unpaired_masks)


def _montgomery(folder):
    images = _image_files(os.path.join(folder, "CXR_png"))
    left = _image_files(os.path.join(folder, "ManualMask", "leftMask"))
    right = _image_files(os.path.join(folder, "ManualMask", "rightMask"))
    sides = (("leftMask", left), ("rightMask", right))
    pairs = [Pair(_stem(name), path, (left[name], right[name]))
             for name, path in images.items() if name in left and name in right]
    missing = {name: [f"ManualMask/{side}/{name}" for side, files in sides if name not in files]
               for name in images if name not in left or name not in right}
    unpaired_masks = [f"ManualMask/{side}/{name}" for side, files in sides for name in files if name not in images]
    return DatasetReport("montgomery", folder, len(images), len(left) + len(right), pairs, list(missing),
                         unpaired_masks, missing_masks=missing)


def _cxr_with_masks(folder, mask_folder):
    images = _image_files(os.path.join(folder, "CXR_png"))
    masks = _image_files(os.path.join(folder, mask_folder))
    pairs, unpaired_images, unpaired_masks = _pair_by_stem(images, masks)
    test_images = list(_image_files(os.path.join(folder, "test")))
    kaggle = bool(test_images) or any(not _stem(name).endswith(MASK_SUFFIX) for name in masks)
    return DatasetReport("kaggle" if kaggle else "shenzhen", folder, len(images), len(masks), pairs,
                         unpaired_images, unpaired_masks, test_images)


def _generic(folder):
    images = _image_files(os.path.join(folder, "images"))
    masks = _image_files(os.path.join(folder, "masks"))
    pairs, unpaired_images, unpaired_masks = _pair_by_stem(images, masks)
    return DatasetReport("generic", folder, len(images), len(masks), pairs, unpaired_images, unpaired_masks)


def _detect_in(folder):
    """The report for ``folder`` if it holds a known layout, else None."""
    has = lambda *parts: os.path.isdir(os.path.join(folder, *parts))  # noqa: E731
    if has("CXR_png") and has("ManualMask", "leftMask") and has("ManualMask", "rightMask"):
        return _montgomery(folder)
    for mask_folder in ("masks", "mask"):
        if has("CXR_png") and has(mask_folder):
            return _cxr_with_masks(folder, mask_folder)
    if has("images") and has("masks"):
        return _generic(folder)
    return None


def find_pairs(root):
    """Detect the layout of ``root`` (or of one folder below it) and pair its images with their masks.

    Raises ``DataError`` for a missing folder or a file, an unrecognised layout, a layout with no pairs, or
    images that differ only in their extension.
    """
    root = os.fspath(root)
    if os.path.exists(root) and not os.path.isdir(root):
        raise DataError(f"--data {root}: is a file, not a folder (give the dataset's folder)")
    if not os.path.isdir(root):
        raise DataError(f"--data {root}: no such folder")
    children = _subfolders(root)
    for folder in [root] + children:
        report = _detect_in(folder)
        if report is not None:
            if not report.pairs:
                raise DataError(f"--data {root}: '{report.layout}' layout in {folder} but no image has a mask "
                                f"({report.image_count} images, {report.mask_count} mask files)")
            return report
    found = ", ".join(os.path.basename(child) for child in children) or "none"
    raise DataError(f"--data {root}: unrecognised layout (expected CXR_png/ with masks/, mask/ or ManualMask/, "
                    f"or images/ with masks/; sub-folders found: {found})")
