"""The synthetic chest X-ray generator: deterministic, fast, anatomically arranged, and not a thresholding task."""
import os
import re
import time

import numpy
import pytest
from PIL import Image

from minidl.data import synthetic_dataset, write_layout


def test_same_seed_same_images_other_seed_other_images():
    images, masks = synthetic_dataset(4, 64, seed=11)
    again_images, again_masks = synthetic_dataset(4, 64, seed=11)
    other_images, _ = synthetic_dataset(4, 64, seed=12)
    numpy.testing.assert_array_equal(images, again_images)
    numpy.testing.assert_array_equal(masks, again_masks)
    assert numpy.abs(images - other_images).mean() > 0.01
    assert images.dtype == numpy.float32 and masks.dtype == bool and images.shape == masks.shape == (4, 64, 64)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_two_lungs_with_plausible_size_and_darker_than_the_body():
    images, masks = synthetic_dataset(12, 64, seed=3)
    half = 32
    assert masks[:, :, :half].any(axis=(1, 2)).all() and masks[:, :, half:].any(axis=(1, 2)).all()
    assert not masks[:, :, half - 1:half + 1].any()  # the mediastinum separates them
    coverage = masks.mean(axis=(1, 2))
    assert ((coverage > 0.06) & (coverage < 0.3)).all()
    centre_body = images[:, 40:60, 24:40].mean(axis=(1, 2))  # heart, spine and abdomen, below the lung centres
    lungs = numpy.array([image[mask].mean() for image, mask in zip(images, masks)])
    assert (lungs < centre_body).all()


def test_the_heart_takes_a_bite_out_of_the_left_lung():
    _, masks = synthetic_dataset(12, 64, seed=4)
    right_area = masks[:, :, :32].sum(axis=(1, 2))  # the patient's right lung is on the image's left
    left_area = masks[:, :, 32:].sum(axis=(1, 2))
    assert numpy.mean(left_area < right_area) >= 0.75


def test_no_global_threshold_segments_the_lungs():
    images, masks = synthetic_dataset(10, 64, seed=1)
    best = []
    for image, mask in zip(images, masks):
        scores = [2 * numpy.count_nonzero((image < t) & mask) / (numpy.count_nonzero(image < t) + mask.sum())
                  for t in numpy.linspace(0.0, 1.0, 51)]
        best.append(max(scores))
    assert max(best) < 0.8


def test_hundreds_of_images_in_a_few_seconds():
    started = time.perf_counter()
    synthetic_dataset(200, 128, seed=0)
    assert time.perf_counter() - started < 10.0


def test_written_kaggle_layout_has_real_names_and_a_test_folder(tmp_path):
    root = write_layout(tmp_path, "kaggle", 6, seed=2, size=32, test_count=2)
    images = os.listdir(os.path.join(root, "CXR_png"))
    assert len(images) == 6 and all(re.fullmatch(r"(MCUCXR|CHNCXR)_\d{4}_[01]\.png", name) for name in images)
    names = sorted(os.listdir(os.path.join(root, "masks")))
    assert sum(name.startswith("MCUCXR_") and not name.endswith("_mask.png") for name in names) == 3
    assert sum(name.startswith("CHNCXR_") and name.endswith("_mask.png") for name in names) == 3
    assert len(os.listdir(os.path.join(root, "test"))) == 2


def test_written_files_appear_whole_or_not_at_all(tmp_path, monkeypatch):
    original_save = Image.Image.save

    def save_then_fail(picture, path, *args, **kwargs):
        if len(saved) == 2:  # the third file: write part of it, then fail as a full disk or Ctrl-C would
            with open(path, "wb") as stream:
                stream.write(b"\x89PNG half")
            raise OSError("No space left on device")
        saved.append(path)
        return original_save(picture, path, *args, **kwargs)

    saved = []
    monkeypatch.setattr(Image.Image, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_layout(tmp_path, "generic", 3, seed=0, size=16)
    written = sorted(os.path.relpath(os.path.join(folder, name), tmp_path)
                     for folder, _, names in os.walk(tmp_path) for name in names)
    assert written == ["images/case_001.png", "masks/case_001.png"]
    assert all(os.path.basename(path).startswith(".tmp-") for path in saved)  # never the final name directly
