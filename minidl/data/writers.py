"""Writing synthetic radiographs to disk in the real datasets' folder layouts and file names.

``write_layout(directory, layout, count, seed, size)`` writes ``count`` image/mask
pairs as the ``kaggle``, ``montgomery``, ``shenzhen`` or ``generic`` layout
(see ``layouts``) and returns the folder a loader should be pointed at. The
Kaggle layout mixes Montgomery names (mask named like its image, 16-bit
images) and Shenzhen names (``_mask`` masks, RGB images) and adds a ``test/``
folder of images without masks, so every decoding path is exercised. Each file
is written atomically (``atomic_output``), so an interrupted run leaves no half-written PNG.
"""
import os

import numpy
from PIL import Image

from ..serialization import atomic_output
from .synthetic import synthetic_dataset

LAYOUTS = ("kaggle", "montgomery", "shenzhen", "generic")


def _save_gray(path, image, bits=8, rgb=False):
    """Save (H, W) float in [0, 1] as an 8-bit (optionally RGB) or 16-bit grayscale PNG, atomically."""
    if bits == 16:
        picture = Image.fromarray(numpy.round(image * 65535).astype(numpy.uint16))
    else:
        picture = Image.fromarray(numpy.round(image * 255).astype(numpy.uint8))
        if rgb:
            picture = picture.convert("RGB")
    with atomic_output(path) as temporary:
        picture.save(temporary)


def _save_mask(path, mask):
    _save_gray(path, mask.astype(numpy.float64))


def _tuberculosis_flags(count, seed):
    return numpy.random.default_rng(seed + 1).integers(0, 2, count)


def write_layout(directory, layout="kaggle", count=20, seed=0, size=256, test_count=None):
    """Write ``count`` synthetic pairs in ``layout`` under ``directory``; return the dataset folder."""
    if layout not in LAYOUTS:
        raise ValueError(f"write_layout: unknown layout {layout!r}; expected one of {LAYOUTS}")
    images, masks = synthetic_dataset(count, size, seed)
    flags = _tuberculosis_flags(count, seed)
    if layout == "kaggle":
        root = os.path.join(directory, "Lung Segmentation")
        for index in range(count):
            if index % 2 == 0:  # Montgomery: 16-bit image, mask with the image's own name
                name = f"MCUCXR_{index // 2 + 1:04d}_{flags[index]}"
                _save_gray(os.path.join(root, "CXR_png", f"{name}.png"), images[index], bits=16)
                _save_mask(os.path.join(root, "masks", f"{name}.png"), masks[index])
            else:  # Shenzhen: RGB image, "_mask" mask
                name = f"CHNCXR_{index // 2 + 1:04d}_{flags[index]}"
                _save_gray(os.path.join(root, "CXR_png", f"{name}.png"), images[index], rgb=True)
                _save_mask(os.path.join(root, "masks", f"{name}_mask.png"), masks[index])
        test_count = max(2, count // 10) if test_count is None else test_count
        if test_count:
            test_images, _ = synthetic_dataset(test_count, size, seed + 7919)
            for index, image in enumerate(test_images):
                _save_gray(os.path.join(root, "test", f"{index}.png"), image)
        return root
    root = directory
    for index in range(count):
        if layout == "montgomery":
            name = f"MCUCXR_{index + 1:04d}_{flags[index]}.png"
            patient_left, patient_right = masks[index].copy(), masks[index].copy()
            patient_left[:, :size // 2] = False  # the patient's left lung is on the image's right
            patient_right[:, size // 2:] = False
            _save_gray(os.path.join(root, "CXR_png", name), images[index], bits=16)
            _save_mask(os.path.join(root, "ManualMask", "leftMask", name), patient_left)
            _save_mask(os.path.join(root, "ManualMask", "rightMask", name), patient_right)
        elif layout == "shenzhen":
            name = f"CHNCXR_{index + 1:04d}_{flags[index]}"
            _save_gray(os.path.join(root, "CXR_png", f"{name}.png"), images[index])
            _save_mask(os.path.join(root, "mask", f"{name}_mask.png"), masks[index])
        else:
            name = f"case_{index + 1:03d}"
            _save_gray(os.path.join(root, "images", f"{name}.png"), images[index])
            mask_name = f"{name}_mask.png" if index % 2 else f"{name}.png"
            _save_mask(os.path.join(root, "masks", mask_name), masks[index])
    return root
