"""The synthetic chest X-ray generator: deterministic, fast, anatomically arranged, its masks' statistics those of
real radiographs, and not a thresholding task."""
import os
import re

import numpy
import pytest
from PIL import Image

from minidl.data import synthetic_dataset, write_layout
from minidl.data.anatomy import draw_lungs
from minidl.data.components import label_components, postprocess_mask


def test_same_seed_same_images_other_seed_other_images():
    images, masks = synthetic_dataset(4, 64, seed=11)
    again_images, again_masks = synthetic_dataset(4, 64, seed=11)
    other_images, _ = synthetic_dataset(4, 64, seed=12)
    numpy.testing.assert_array_equal(images, again_images)
    numpy.testing.assert_array_equal(masks, again_masks)
    assert numpy.abs(images - other_images).mean() > 0.01
    assert images.dtype == numpy.float32 and masks.dtype == bool and images.shape == masks.shape == (4, 64, 64)
    assert images.min() >= 0.0 and images.max() <= 1.0


REAL_RANGES = {  # fractions of the image, measured on real PA radiographs with manual masks (JSRT kind)
    "area": (0.18, 0.36), "top": (0.06, 0.11), "bottom": (0.61, 0.97), "left": (0.09, 0.14), "right": (0.88, 0.93),
    "fill": (0.45, 0.68)}
REAL_MEANS = {"area": 0.27, "bottom": 0.78}


def mask_statistics(mask):
    """The lung area, the top and bottom rows, left and right columns of the lungs (fractions of the side),
    and the area over the bounding box's."""
    rows, cols = numpy.nonzero(mask.any(axis=1))[0], numpy.nonzero(mask.any(axis=0))[0]
    side = mask.shape[0]
    box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    return {"area": mask.mean(), "top": rows[0] / side, "bottom": (rows[-1] + 1) / side, "left": cols[0] / side,
            "right": (cols[-1] + 1) / side, "fill": mask.sum() / box}


@pytest.fixture(scope="module")
def many():
    """300 seeds' radiographs and masks at 128 x 128."""
    return synthetic_dataset(300, 128, seed=23)


@pytest.fixture(scope="module")
def statistics(many):
    table = [mask_statistics(mask) for mask in many[1]]
    return {name: numpy.array([row[name] for row in table]) for name in REAL_RANGES}


@pytest.mark.parametrize("name", sorted(REAL_RANGES))
def test_mask_statistics_fall_within_the_real_ranges(statistics, name):
    low, high = REAL_RANGES[name]
    values = statistics[name]
    tolerance = 1.5 / 128  # a pixel and a half of rounding
    assert numpy.percentile(values, 10) >= low - tolerance and numpy.percentile(values, 90) <= high + tolerance
    if name in REAL_MEANS:
        assert abs(values.mean() - REAL_MEANS[name]) < 0.02


def test_framing_varies_widely(statistics):
    area = statistics["area"]
    assert area.min() < 0.16 and area.max() > 0.36  # from zoomed-out views with arms to tight ones
    assert numpy.percentile(area, 90) - numpy.percentile(area, 10) > 0.08


def test_two_lungs_one_each_side_without_holes(many):
    _, masks = many
    for mask in masks[:60]:
        labels = label_components(mask)
        assert len(numpy.unique(labels[labels >= 0])) == 2
        assert mask[:, :64].any() and mask[:, 64:].any()
        numpy.testing.assert_array_equal(postprocess_mask(mask), mask)


def lung_halves(mask):
    """The patient's right lung (image left) and left lung of a mask, split at the gap between them."""
    labels = label_components(mask)
    names = numpy.unique(labels[labels >= 0])
    first, second = (labels == name for name in names)
    columns = numpy.arange(mask.shape[1])
    if (columns * first).sum() / first.sum() > (columns * second).sum() / second.sum():
        first, second = second, first
    return first, second


def lateral_floor(lung, lateral_columns):
    """The mean lowest lung row over the lung's lateral half (``lateral_columns`` picks it from the lung's
    columns): the height of the dome's lateral slope, clear of the heart."""
    cols = lateral_columns(numpy.nonzero(lung.any(axis=0))[0])
    return numpy.mean([numpy.nonzero(lung[:, col])[0][-1] for col in cols])


def test_right_dome_higher_and_a_cardiac_notch_on_the_left(many):
    _, masks = many
    higher_right, smaller_left, notched = [], [], []
    for mask in masks[:100]:
        right, left = lung_halves(mask)
        higher_right.append(lateral_floor(right, lambda cols: cols[:len(cols) // 2])
                            < lateral_floor(left, lambda cols: cols[len(cols) // 2:]))
        smaller_left.append(left.sum() < right.sum())
        rows = numpy.nonzero(left.any(axis=1))[0]
        height = rows[-1] - rows[0]
        medial = [numpy.nonzero(left[row])[0][0] for row in (rows[0] + height // 3, rows[0] + 4 * height // 5)]
        notched.append(medial[1] - medial[0] > 0.04 * mask.shape[1])  # the heart pushes the border outward
    assert numpy.mean(higher_right) > 0.7 and numpy.mean(smaller_left) > 0.8 and numpy.mean(notched) > 0.9
    for seed in range(100):
        right, left = draw_lungs(numpy.random.default_rng(seed))
        assert right.dome_top < left.dome_top - 0.015


def test_lungs_darker_than_the_mediastinum_between_them(many):
    images, masks = many
    for image, mask in zip(images[:60], masks[:60]):
        right, left = lung_halves(mask)
        rows = numpy.nonzero(mask.any(axis=1))[0]
        middle_rows = slice(rows[0] + (rows[-1] - rows[0]) // 3, rows[-1])
        gap = slice(numpy.nonzero(right.any(axis=0))[0][-1] + 2, numpy.nonzero(left.any(axis=0))[0][0] - 1)
        assert image[mask].mean() < image[middle_rows, gap].mean()


def test_no_global_threshold_segments_the_lungs():
    images, masks = synthetic_dataset(30, 64, seed=1)
    best = []
    for image, mask in zip(images, masks):
        scores = [2 * numpy.count_nonzero((image < t) & mask) / (numpy.count_nonzero(image < t) + mask.sum())
                  for t in numpy.linspace(0.0, 1.0, 51)]
        best.append(max(scores))
    assert numpy.mean(best) < 0.87  # the lungs' faint rims, the mediastinum, abdomen and exposure get in the way



def test_anatomy_does_not_depend_on_the_image_size():
    _, small = synthetic_dataset(3, 64, seed=9)
    _, large = synthetic_dataset(3, 128, seed=9)
    halved = large.reshape(3, 64, 2, 64, 2).mean(axis=(2, 4))
    assert numpy.mean(numpy.abs(halved - small)) < 0.03  # the same lungs, up to edge pixels


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
