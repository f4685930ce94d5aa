"""The data layer: layout detection and pairing, image decoding, resizing, caching, split and augmentation."""
import os
import pathlib
import re

import numpy
import pytest
from PIL import Image

from minidl.data import (DataError, apply_augmentation, default_cache_dir, draw_augmentation, find_pairs, load_pairs,
                         read_image, read_mask, resize_image, resize_mask, split_indices, synthetic_dataset,
                         write_layout)
from minidl.data import dataset as dataset_module
from minidl.data.components import (NEIGHBOURS_4, NEIGHBOURS_8, fill_holes, keep_largest, label_components,
                                    postprocess_mask)
from minidl.training.inference import postprocessed

SIZE, COUNT, SEED = 32, 6, 5
IDENTITY = {"angle": 0.0, "scale": 1.0, "shift_y": 0.0, "shift_x": 0.0, "brightness": 0.0, "contrast": 1.0,
            "gamma": 1.0, "local_contrast": 0.0, "noise": 0.0, "noise_seed": 0.0}  # augmentation that changes nothing


def synthetic_index(name, layout):
    """Which synthetic example a written file holds, from its real-style name."""
    number = int(name.split("_")[1]) - 1
    if layout == "kaggle":
        return 2 * number + name.startswith("CHNCXR")
    return number


@pytest.fixture(scope="module")
def reference():
    return synthetic_dataset(COUNT, SIZE, SEED)


@pytest.mark.parametrize("layout", ["kaggle", "montgomery", "shenzhen", "generic"])
def test_each_layout_is_detected_fully_paired_and_loaded(tmp_path, layout, reference):
    write_layout(tmp_path, layout, COUNT, SEED, size=SIZE)
    report = find_pairs(tmp_path)
    assert report.layout == layout
    assert len(report.pairs) == COUNT and report.image_count == COUNT
    assert report.unpaired_images == [] and report.unpaired_masks == []
    images, masks = load_pairs(report.pairs, (SIZE, SIZE), tmp_path)
    order = [synthetic_index(pair.name, layout) for pair in report.pairs]
    assert sorted(order) == list(range(COUNT))
    assert images.dtype == numpy.float32 and masks.dtype == bool
    numpy.testing.assert_allclose(images, reference[0][order], atol=0.5 / 255 + 1e-6)
    numpy.testing.assert_array_equal(masks, reference[1][order])


def test_kaggle_pairs_both_mask_namings_and_lists_test_images(tmp_path):
    write_layout(tmp_path, "kaggle", 8, SEED, size=SIZE, test_count=3)
    report = find_pairs(tmp_path)
    montgomery = [pair for pair in report.pairs if pair.name.startswith("MCUCXR")]
    shenzhen = [pair for pair in report.pairs if pair.name.startswith("CHNCXR")]
    assert len(montgomery) == 4 and len(shenzhen) == 4
    assert all(os.path.basename(pair.masks[0]) == pair.name + ".png" for pair in montgomery)
    assert all(os.path.basename(pair.masks[0]) == pair.name + "_mask.png" for pair in shenzhen)
    assert len(report.test_images) == 3
    assert report.root.endswith("Lung Segmentation")


def test_unpaired_files_are_reported_by_name(tmp_path):
    root = write_layout(tmp_path, "kaggle", 4, SEED, size=SIZE, test_count=0)
    os.remove(os.path.join(root, "masks", "CHNCXR_0001_1_mask.png"))
    Image.new("L", (SIZE, SIZE)).save(os.path.join(root, "masks", "CHNCXR_0099_0_mask.png"))
    report = find_pairs(root)
    assert len(report.pairs) == 3
    assert report.unpaired_images == ["CHNCXR_0001_1.png"]
    assert report.unpaired_masks == ["CHNCXR_0099_0_mask.png"]
    text = "\n".join(report.lines())
    assert "CHNCXR_0001_1.png" in text and "CHNCXR_0099_0_mask.png" in text and "3 pairs used" in text


def test_montgomery_needs_both_lungs_and_takes_their_union(tmp_path, reference):
    write_layout(tmp_path, "montgomery", COUNT, SEED, size=SIZE)
    left = tmp_path / "ManualMask" / "leftMask"
    names = sorted(os.listdir(left))
    os.remove(left / names[0])
    report = find_pairs(tmp_path)
    assert report.unpaired_images == [names[0]]
    assert report.unpaired_masks == []  # its right mask has an image: only the left one is missing
    assert f"  unpaired image without a mask: {names[0]} (missing ManualMask/leftMask/{names[0]})" in report.lines()
    os.remove(tmp_path / "CXR_png" / names[1])
    report = find_pairs(tmp_path)
    assert report.unpaired_masks == [f"ManualMask/leftMask/{names[1]}", f"ManualMask/rightMask/{names[1]}"]
    pair = report.pairs[0]
    left_only, right_only = read_mask(pair.masks[0]), read_mask(pair.masks[1])
    union = read_mask(pair.masks)
    assert left_only.any() and right_only.any()
    numpy.testing.assert_array_equal(union, left_only | right_only)
    numpy.testing.assert_array_equal(union, reference[1][synthetic_index(pair.name, "montgomery")])


def test_missing_unrecognised_and_empty_datasets_raise(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        find_pairs(tmp_path / "nowhere")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="afile: is a file, not a folder"):
        find_pairs(tmp_path / "afile")
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError, match="unrecognised layout.*photos"):
        find_pairs(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no image has a mask"):
        find_pairs(tmp_path)


def test_corrupt_image_and_mismatched_mask_are_named(tmp_path):
    root = write_layout(tmp_path, "generic", 2, SEED, size=SIZE)
    report = find_pairs(root)
    broken = report.pairs[0].image
    with open(broken, "wb") as stream:
        stream.write(b"not a png at all")
    with pytest.raises(DataError, match="cannot read image .*case_001.png"):
        load_pairs(report.pairs, (SIZE, SIZE), root)
    Image.new("L", (SIZE + 3, SIZE)).save(report.pairs[1].masks[0])
    with pytest.raises(DataError, match=r"mask .*case_002.* is 35x32 but its image .* is 32x32"):
        load_pairs(report.pairs[1:], (SIZE, SIZE), root)


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "P", "LA", "JPEG"])
def test_read_image_scales_each_format_by_its_range(tmp_path, mode):
    gradient = numpy.linspace(0.0, 1.0, 64).reshape(8, 8)
    path = str(tmp_path / ("image.jpg" if mode == "JPEG" else "image.png"))
    if mode == "I;16":
        Image.fromarray(numpy.round(gradient * 65535).astype(numpy.uint16)).save(path)
    else:
        picture = Image.fromarray(numpy.round(gradient * 255).astype(numpy.uint8))
        picture.convert("L" if mode == "JPEG" else mode).save(path, quality=100)
    image = read_image(path)
    assert image.dtype == numpy.float32 and image.shape == (8, 8)
    tolerance = {"I;16": 0.5 / 65535 + 1e-7, "JPEG": 0.03, "P": 0.01}.get(mode, 0.5 / 255 + 1e-6)
    numpy.testing.assert_allclose(image, gradient, atol=tolerance)


def test_masks_binarise_at_half_their_range(tmp_path):
    Image.fromarray(numpy.array([[0, 127, 128, 255]], numpy.uint8)).save(tmp_path / "eight.png")
    Image.fromarray(numpy.array([[0, 32767, 32768, 65535]], numpy.uint16)).save(tmp_path / "sixteen.png")
    Image.fromarray(numpy.array([[0, 1, 1, 0]], numpy.uint8) * 255).convert("RGB").save(tmp_path / "rgb.png")
    numpy.testing.assert_array_equal(read_mask(str(tmp_path / "eight.png")), [[False, False, True, True]])
    numpy.testing.assert_array_equal(read_mask(str(tmp_path / "sixteen.png")), [[False, False, True, True]])
    numpy.testing.assert_array_equal(read_mask(str(tmp_path / "rgb.png")), [[False, True, True, False]])


@pytest.mark.parametrize("dtype, values, expected", [
    ("uint8", [0, 1, 1, 0], [False, True, True, False]),  # 0/1 label mask: nonzero is lung
    ("uint8", [0, 255, 255, 0], [False, True, True, False]),
    ("uint8", [0, 100, 200, 255], [False, False, True, True]),  # anti-aliased: cut at half the range
    ("uint8", [0, 1, 2, 0], [False, True, True, False]),  # labels 1 and 2 (two lungs)
    ("uint16", [0, 1, 1, 0], [False, True, True, False]),
    ("uint16", [0, 255, 0, 255], [False, True, False, True]),  # 0/255 stored in 16 bits
    ("uint8", [0, 0, 0, 0], [False, False, False, False])])
def test_label_masks_read_nonzero_as_lungs_and_others_cut_at_half_range(tmp_path, dtype, values, expected):
    Image.fromarray(numpy.array([values], dtype)).save(tmp_path / "mask.png")
    numpy.testing.assert_array_equal(read_mask(str(tmp_path / "mask.png")), [expected])


@pytest.mark.parametrize("foreground", [1, 255])
def test_a_dataset_of_0_1_or_0_255_masks_loads_its_lungs(tmp_path, reference, foreground):
    root = write_layout(tmp_path, "generic", COUNT, SEED, size=SIZE)
    report = find_pairs(root)
    for pair in report.pairs:
        lungs = numpy.asarray(Image.open(pair.masks[0])) >= 128
        Image.fromarray(lungs.astype(numpy.uint8) * foreground).save(pair.masks[0])
    _, masks = load_pairs(report.pairs, (SIZE, SIZE), root)
    numpy.testing.assert_array_equal(masks, reference[1][[synthetic_index(p.name, "generic") for p in report.pairs]])


def test_a_dataset_whose_every_mask_is_empty_is_an_error_naming_files(tmp_path):
    root = write_layout(tmp_path, "generic", 3, SEED, size=SIZE)
    report = find_pairs(root)
    for pair in report.pairs:
        Image.new("L", (SIZE, SIZE)).save(pair.masks[0])
    with pytest.raises(DataError, match=r"every one of the 3 masks is empty \(their files hold only zero pixels\)"
                                         r".*case_001.*case_002.*case_003.*nonzero"):
        load_pairs(report.pairs, (SIZE, SIZE), root)
    for pair in report.pairs[1:]:  # the first mask stays all zero: the reason is read from every mask
        dot = numpy.zeros((SIZE, SIZE), numpy.uint8)
        dot[1, 1] = 1
        Image.fromarray(dot).save(pair.masks[0])
    with pytest.raises(DataError, match="case_002_mask.png has lungs at its own size, which vanish at 4x4"):
        load_pairs(report.pairs, (4, 4), root)
    Image.fromarray(numpy.ones((SIZE, SIZE), numpy.uint8)).save(report.pairs[1].masks[0])
    assert load_pairs(report.pairs, (4, 4), root)[1].sum() == 16  # one mask with lungs is enough


def truncate(path):
    """Cut a PNG in half: its header still reads, its pixels do not."""
    with open(path, "rb") as stream:
        data = stream.read()
    with open(path, "wb") as stream:
        stream.write(data[:len(data) // 2])


def count_decodes(monkeypatch):
    """The names of the pairs ``load_pairs`` decodes from now on."""
    decoded, original = [], dataset_module.load_pair
    monkeypatch.setattr(dataset_module, "load_pair", lambda pair, size, *rest: decoded.append(pair.name) or
                        original(pair, size, *rest))
    return decoded


def test_every_bad_pair_is_reported_at_once_and_the_good_ones_are_cached(tmp_path, monkeypatch):
    root = write_layout(tmp_path / "data", "generic", 5, SEED, size=SIZE)
    report = find_pairs(root)
    broken = [report.pairs[0].image, report.pairs[2].masks[0], report.pairs[3].masks[0]]
    originals = {path: pathlib.Path(path).read_bytes() for path in broken}
    truncate(broken[0])
    Image.new("L", (SIZE + 1, SIZE)).save(broken[1])
    truncate(broken[2])
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as caught:
        load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=cache)
    lines = str(caught.value).splitlines()
    assert lines[0] == ("3 of 5 image/mask pairs cannot be loaded; the others are cached, so a rerun decodes "
                        "only these:")
    assert re.match(r"  cannot read image .*case_001.png: .*truncated", lines[1])
    assert re.match(r"  mask .*case_003.* is 33x32 but its image .*case_003.png is 32x32", lines[2])
    assert re.match(r"  cannot read image .*masks/case_004_mask.png: .*truncated", lines[3]) and len(lines) == 4
    for path, data in originals.items():  # the user mends the files
        pathlib.Path(path).write_bytes(data)
    decoded = count_decodes(monkeypatch)
    load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=cache)
    assert decoded == ["case_001", "case_003", "case_004"]


def test_no_pair_cached_means_no_claim_that_the_others_are(tmp_path):
    root = write_layout(tmp_path / "data", "generic", 2, SEED, size=SIZE)
    report = find_pairs(root)
    for pair in report.pairs:
        truncate(pair.image)
    with pytest.raises(DataError, match=r"^2 of 2 image/mask pairs cannot be loaded:\n") as caught:
        load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=tmp_path / "cache")
    assert "the others are cached" not in str(caught.value)


def test_pairs_decoded_before_ctrl_c_are_cached(tmp_path, monkeypatch):
    root = write_layout(tmp_path / "data", "generic", 4, SEED, size=SIZE)
    report = find_pairs(root)
    original = dataset_module.load_pair

    def interrupted_at_the_third(pair, size, *rest):
        if pair.name == "case_003":
            raise KeyboardInterrupt
        return original(pair, size, *rest)

    monkeypatch.setattr(dataset_module, "load_pair", interrupted_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(dataset_module, "load_pair", original)
    decoded = count_decodes(monkeypatch)
    load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=tmp_path / "cache")
    assert decoded == ["case_003", "case_004"]


def test_a_long_list_of_bad_files_names_the_first_twenty(tmp_path):
    root = write_layout(tmp_path, "generic", 23, SEED, size=16)
    report = find_pairs(root)
    for pair in report.pairs:
        with open(pair.image, "wb") as stream:
            stream.write(b"garbage")
    with pytest.raises(DataError) as caught:
        load_pairs(report.pairs, (16, 16), root)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("23 of 23 image/mask pairs cannot be loaded:") and len(lines) == 22
    assert "case_020.png" in lines[20] and lines[21] == "  and 3 more"


def test_images_differing_only_in_extension_are_an_error(tmp_path):
    root = write_layout(tmp_path, "generic", 3, SEED, size=SIZE)
    Image.new("L", (SIZE, SIZE)).save(os.path.join(root, "images", "case_002.jpg"))
    with pytest.raises(DataError, match=r"differ only in their extension.*images/case_002.jpg and .*images/"
                                        r"case_002.png; keep one"):
        find_pairs(root)


def test_a_cache_folder_the_user_named_must_be_writable_before_any_decoding(tmp_path, monkeypatch):
    root = write_layout(tmp_path / "data", "generic", 2, SEED, size=SIZE)
    report = find_pairs(root)
    (tmp_path / "afile").write_text("x")
    decoded = count_decodes(monkeypatch)
    for folder in (tmp_path / "afile", tmp_path / "afile" / "below"):
        with pytest.raises(DataError, match=f"cache folder {folder}: cannot write there .*--no-cache"):
            load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=folder)
    assert decoded == []


def test_an_unwritable_default_cache_warns_once_and_goes_on_uncached(tmp_path, monkeypatch, capsys):
    root = write_layout(tmp_path / "data", "generic", 2, SEED, size=SIZE)
    report = find_pairs(root)
    (tmp_path / "home").write_text("not a folder")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINIDL_CACHE_DIR", raising=False)
    monkeypatch.setattr(dataset_module, "_warned", set())
    for _ in range(2):
        images, _ = load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=default_cache_dir())
        assert images.shape == (2, SIZE, SIZE)
    err = capsys.readouterr().err
    assert err.count("warning: cannot cache decoded images in the default folder") == 1
    assert str(tmp_path / "home") in err
    monkeypatch.setenv("MINIDL_CACHE_DIR", str(tmp_path / "home" / "cache"))  # set by the user: an error
    with pytest.raises(DataError, match="cache folder .*home/cache: cannot write there"):
        load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=default_cache_dir())


def test_resize_is_bilinear_for_images_and_nearest_for_masks():
    ramp = numpy.tile(numpy.linspace(0.0, 1.0, 64, dtype=numpy.float32), (64, 1))
    small = resize_image(ramp, (16, 16))
    assert small.dtype == numpy.float32 and small.shape == (16, 16)
    numpy.testing.assert_allclose(small[:, 1:-1], ramp[::4, :].reshape(16, 16, 4).mean(axis=2)[:, 1:-1], atol=1e-5)
    mask = numpy.zeros((64, 64), bool)
    mask[16:48, 8:40] = True
    resized = resize_mask(mask, (16, 16))
    assert resized.dtype == bool and resized.sum() == 8 * 8
    assert resized[4:12, 2:10].all()


def test_decoded_images_are_cached_and_refreshed_when_a_file_changes(tmp_path, monkeypatch):
    root = write_layout(tmp_path / "data", "shenzhen", 3, SEED, size=48)
    report = find_pairs(root)
    cache = tmp_path / "cache"
    images, masks = load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=cache)
    assert len(os.listdir(cache)) == 1 and os.listdir(cache)[0].endswith(".npz")
    decoded = count_decodes(monkeypatch)
    again, again_masks = load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=cache)
    assert decoded == []
    numpy.testing.assert_array_equal(again, images)
    numpy.testing.assert_array_equal(again_masks, masks)
    changed = report.pairs[1].image
    Image.fromarray(numpy.full((48, 48), 255, numpy.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))
    refreshed, _ = load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=cache)
    assert decoded == [report.pairs[1].name]
    numpy.testing.assert_array_equal(refreshed[[0, 2]], images[[0, 2]])
    numpy.testing.assert_allclose(refreshed[1], 1.0)
    monkeypatch.setattr(dataset_module, "CACHE_FORMAT", "another-mask-rule")
    load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=cache)
    assert decoded[1:] == [pair.name for pair in report.pairs]  # entries decoded under another rule are not reused


def test_a_file_replaced_by_another_of_the_same_size_and_time_is_decoded_again(tmp_path, monkeypatch):
    root = write_layout(tmp_path / "data", "shenzhen", 2, SEED, size=48)
    report = find_pairs(root)
    image = report.pairs[0].image
    Image.fromarray(numpy.full((48, 48), 10, numpy.uint8)).save(image, compress_level=0)
    os.utime(image, ns=(10 ** 18, 10 ** 18))
    first, _ = load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=tmp_path / "cache")
    size = os.path.getsize(image)
    Image.fromarray(numpy.full((48, 48), 200, numpy.uint8)).save(image, compress_level=0)
    os.utime(image, ns=(10 ** 18, 10 ** 18))
    assert os.path.getsize(image) == size  # stored without compression: the same byte size
    decoded = count_decodes(monkeypatch)
    second, _ = load_pairs(report.pairs, (SIZE, SIZE), root, cache_dir=tmp_path / "cache")
    assert decoded == [report.pairs[0].name]
    numpy.testing.assert_allclose(first[0], 10 / 255, rtol=1e-6)
    numpy.testing.assert_allclose(second[0], 200 / 255, rtol=1e-6)


def float_tiff(path, pixels):
    Image.fromarray(numpy.asarray(pixels, numpy.float32)).save(path)
    return str(path)


def test_a_float_image_beyond_0_1_is_scaled_by_its_own_range_not_clipped(tmp_path):
    hounsfield = numpy.linspace(-1000.0, 2000.0, 48 * 40).reshape(40, 48)
    rescaled = []
    image = read_image(float_tiff(tmp_path / "ct.tif", hounsfield), rescaled)
    numpy.testing.assert_allclose(image, (hounsfield + 1000.0) / 3000.0, atol=1e-6)
    assert image.dtype == numpy.float32 and rescaled == [str(tmp_path / "ct.tif")]
    inside = numpy.linspace(0.0, 0.8, 48 * 40).reshape(40, 48)
    numpy.testing.assert_allclose(read_image(float_tiff(tmp_path / "unit.tif", inside), rescaled), inside, atol=1e-7)
    assert len(rescaled) == 1  # values in [0, 1] are kept as they are


def test_nan_pixels_are_an_error_naming_the_file(tmp_path):
    pixels = numpy.zeros((8, 8))
    pixels[3, 4] = numpy.nan
    path = float_tiff(tmp_path / "nan.tif", pixels)
    with pytest.raises(DataError, match=f"cannot read image {re.escape(path)}: it holds NaN pixels"):
        read_image(path)


def test_loading_float_images_warns_once_with_their_count(tmp_path, capsys):
    root = write_layout(tmp_path / "data", "generic", 3, SEED, size=SIZE)
    report = find_pairs(root)
    for pair in report.pairs[:2]:
        os.remove(pair.image)
        float_tiff(os.path.splitext(pair.image)[0] + ".tif", numpy.linspace(-5.0, 7.0, SIZE * SIZE).reshape(SIZE, SIZE))
    report = find_pairs(root)
    images, _ = load_pairs(report.pairs, (SIZE, SIZE), root)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: 2 image files held values outside [0, 1]")
    assert images.min() == 0.0 and images.max() == 1.0 and 0.3 < images[:2].mean() < 0.7


def test_an_image_over_pillows_pixel_limit_is_a_data_error(tmp_path, monkeypatch):
    path = str(tmp_path / "big.png")
    Image.new("L", (30, 20)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)
    with pytest.raises(DataError, match=f"cannot read image {re.escape(path)}: Image size \\(600 pixels\\) exceeds"):
        read_image(path)


def test_split_is_seeded_disjoint_and_complete():
    train, val, test = split_indices(20, 0.2, 0.1, seed=3)
    assert (len(train), len(val), len(test)) == (14, 4, 2)
    assert sorted(numpy.concatenate([train, val, test]).tolist()) == list(range(20))
    again = split_indices(20, 0.2, 0.1, seed=3)
    other = split_indices(20, 0.2, 0.1, seed=4)
    assert all(numpy.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not numpy.array_equal(val, other[1])
    with pytest.raises(DataError, match="too few"):
        split_indices(2, 0.5, 0.5)


def test_augmentation_shifts_as_asked_and_keeps_masks_binary(rng):
    images = rng.uniform(0.2, 0.8, (2, 1, 32, 32)).astype(numpy.float32)
    masks = numpy.zeros((2, 1, 32, 32), numpy.float32)
    masks[:, :, 8:20, 6:14] = 1.0
    identity = {name: numpy.full(2, value) for name, value in IDENTITY.items()}
    same_images, same_masks = apply_augmentation(images, masks, identity)
    numpy.testing.assert_allclose(same_images, images, atol=1e-6)
    numpy.testing.assert_array_equal(same_masks, masks)
    shifted = dict(identity, shift_x=numpy.full(2, 4 / 32), shift_y=numpy.full(2, -2 / 32))
    moved_images, moved_masks = apply_augmentation(images, masks, shifted)
    numpy.testing.assert_array_equal(moved_masks[:, :, 6:18, 10:18], 1.0)
    assert moved_masks.sum() == masks.sum()
    numpy.testing.assert_allclose(moved_images[:, :, 2:30, 4:], images[:, :, 4:32, :28], atol=1e-6)
    params = draw_augmentation(numpy.random.default_rng(0), 2)
    warped_images, warped_masks = apply_augmentation(images, masks, params)
    assert warped_images.dtype == numpy.float32 and warped_masks.dtype == numpy.float32
    assert set(numpy.unique(warped_masks)) <= {0.0, 1.0}
    assert 0.0 <= warped_images.min() and warped_images.max() <= 1.0
    again = apply_augmentation(images, masks, draw_augmentation(numpy.random.default_rng(0), 2))
    numpy.testing.assert_array_equal(again[0], warped_images)


def reference_labels(mask, neighbours):
    """Connected components by breadth-first search: a list of sets of (row, col)."""
    remaining, components = set(zip(*numpy.nonzero(mask))), []
    while remaining:
        queue = [remaining.pop()]
        component = set(queue)
        while queue:
            row, col = queue.pop()
            for row_step, col_step in neighbours:
                neighbour = (row + row_step, col + col_step)
                if neighbour in remaining:
                    remaining.discard(neighbour)
                    component.add(neighbour)
                    queue.append(neighbour)
        components.append(component)
    return components


@pytest.mark.parametrize("connectivity", [4, 8])
def test_components_match_a_breadth_first_search(connectivity):
    neighbours = NEIGHBOURS_8 if connectivity == 8 else NEIGHBOURS_4
    for seed in range(6):
        mask = numpy.random.default_rng(seed).random((23, 31)) < 0.45
        labels = label_components(mask, connectivity)
        found = [set(zip(*numpy.nonzero(labels == name))) for name in numpy.unique(labels[labels >= 0])]
        assert sorted(map(sorted, found)) == sorted(map(sorted, reference_labels(mask, neighbours)))
        assert ((labels >= 0) == mask).all()


def test_a_spiral_is_one_component():
    mask = numpy.zeros((21, 21), bool)
    for ring in range(0, 10, 2):  # nested square rings joined by a gap-bridging pixel each
        mask[ring, ring:21 - ring] = mask[20 - ring, ring:21 - ring] = True
        mask[ring:21 - ring, ring] = mask[ring:21 - ring, 20 - ring] = True
        mask[ring + 1, ring] = False
        mask[ring + 1, ring + 1] = True
    labels = label_components(mask, 4)
    assert len(numpy.unique(labels[labels >= 0])) == len(reference_labels(mask, NEIGHBOURS_4))


def test_postprocessing_keeps_the_two_largest_regions_and_fills_their_holes():
    mask = numpy.zeros((20, 30), bool)
    mask[2:18, 2:12] = True       # right lung, 160 pixels, with a hole
    mask[8:10, 5:7] = False
    mask[3:17, 16:26] = True      # left lung, 140 pixels
    mask[0:3, 27:30] = True       # a speck of 9 pixels touching the border
    mask[18, 14] = True           # a lone pixel
    cleaned = postprocess_mask(mask)
    expected = numpy.zeros_like(mask)
    expected[2:18, 2:12] = expected[3:17, 16:26] = True
    numpy.testing.assert_array_equal(cleaned, expected)
    numpy.testing.assert_array_equal(keep_largest(mask, 1), mask & (numpy.arange(30) < 12)[None, :] & (
        numpy.arange(20) >= 2)[:, None])
    ring = numpy.zeros((5, 5), bool)
    ring[0, :] = ring[:, 0] = ring[-1, :] = ring[:, -1] = True  # a hole enclosed against the border
    assert fill_holes(ring).all()
    corner = numpy.ones((5, 5), bool)
    corner[0, 0] = corner[1, 1] = False  # background touching the border only diagonally is a hole
    filled = fill_holes(corner)
    assert filled[1, 1] and not filled[0, 0] and filled.sum() == 24


def test_postprocessed_probability_agrees_with_the_cleaned_mask():
    probability = numpy.full((12, 12), 0.2, numpy.float32)
    probability[1:9, 1:5] = probability[1:9, 7:11] = 0.9
    probability[5, 2] = 0.3   # a hole
    probability[11, 5] = 0.8  # a speck
    adjusted, changed = postprocessed(probability)
    numpy.testing.assert_array_equal(adjusted >= 0.5, postprocess_mask(probability >= 0.5))
    assert adjusted[5, 2] == 1.0 and adjusted[11, 5] == 0.0 and adjusted[3, 3] == numpy.float32(0.9)
    assert changed == pytest.approx(2 / 64)


def test_intensity_augmentation_changes_what_it_is_asked_to(rng):
    images = numpy.full((3, 1, 32, 32), 0.5, numpy.float32)
    images[:, :, :, 16:] = 0.25
    masks = numpy.zeros((3, 1, 32, 32), numpy.float32)
    identity = {name: numpy.full(3, value) for name, value in IDENTITY.items()}
    noisy = dict(identity, noise=numpy.array([0.0, 0.05, 0.05]), noise_seed=numpy.array([1.0, 1.0, 2.0]))
    out, _ = apply_augmentation(images, masks, noisy)
    numpy.testing.assert_allclose(out[0], images[0], atol=1e-6)
    assert (out[1] - images[1]).std() == pytest.approx(0.05, rel=0.1)
    assert abs((out[1] - images[1]).mean()) < 0.005 and numpy.abs(out[1] - out[2]).mean() > 0.02
    numpy.testing.assert_array_equal(apply_augmentation(images, masks, noisy)[0], out)
    curved, _ = apply_augmentation(images, masks, dict(identity, gamma=numpy.full(3, 2.0)))
    numpy.testing.assert_allclose(curved[0, 0, 0, [0, 31]], [0.25, 0.0625], atol=1e-6)
    sharpened, _ = apply_augmentation(images, masks, dict(identity, local_contrast=numpy.full(3, 1.0)))
    assert sharpened[0, 0, 10, 15] > 0.5 and sharpened[0, 0, 10, 16] < 0.25  # overshoot at the edge
    numpy.testing.assert_allclose(sharpened[0, 0, 10, [2, 29]], [0.5, 0.25], atol=1e-6)  # flat far from it


def test_augmentation_never_flips_left_and_right():
    params = draw_augmentation(numpy.random.default_rng(3), 500)
    assert numpy.abs(params["angle"]).max() <= numpy.radians(7) and (params["scale"] > 0).all()
