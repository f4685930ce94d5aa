"""predict's pictures at full size: the overlay and the upscaled mask, their values and their memory."""
import tracemalloc

import numpy
from PIL import Image

from minidl.training import plots
from minidl.training.inference import upscaled_mask


def reference_overlay(image, mask, colour=(255, 64, 64), alpha=0.35):
    """The overlay in float64 over the whole picture: the formula the banded uint8 one must reproduce."""
    gray = numpy.round(numpy.clip(image, 0.0, 1.0).astype(numpy.float32) * 255).astype(numpy.float64)
    picture = numpy.repeat(gray[..., None], 3, axis=2)
    picture[mask] = (1 - alpha) * picture[mask] + alpha * numpy.array(colour, numpy.float64)
    padded = numpy.pad(mask, 1, mode="edge")
    interior = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    picture[mask & ~interior] = colour
    return numpy.round(picture).astype(numpy.uint8)


def test_the_banded_uint8_overlay_equals_the_float64_formula(monkeypatch):
    rng = numpy.random.default_rng(3)
    image = rng.uniform(-0.1, 1.1, (37, 29)).astype(numpy.float32)
    mask = rng.random((37, 29)) < 0.6
    monkeypatch.setattr(plots, "ROWS_PER_CHUNK", 4)  # bands whose edges cut through the outline
    picture = numpy.asarray(plots.overlay(image, mask))
    numpy.testing.assert_array_equal(picture, reference_overlay(image, mask))
    numpy.testing.assert_array_equal(numpy.asarray(plots.overlay(plots.gray_bytes(image), mask)), picture)


def test_the_overlay_of_a_large_image_allocates_a_few_bytes_a_pixel():
    image = numpy.random.default_rng(0).random((1500, 1200), dtype=numpy.float32)
    mask = numpy.zeros(image.shape, bool)
    mask[200:1300, 100:1100] = True
    tracemalloc.start()
    plots.overlay(image, mask)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 12 * image.size, peak  # the float64 picture alone took 24 bytes a pixel


def test_the_mask_upscaled_in_bands_agrees_with_one_whole_resize():
    probability = numpy.random.default_rng(1).random((32, 32)).astype(numpy.float32)
    whole = numpy.asarray(Image.fromarray(probability).resize((1300, 1100), Image.BILINEAR))
    mask = upscaled_mask(probability, (1100, 1300))
    far_from_the_cut = numpy.abs(whole - 0.5) > 1e-5
    assert mask.shape == (1100, 1300) and far_from_the_cut.mean() > 0.99
    numpy.testing.assert_array_equal(mask[far_from_the_cut], (whole >= 0.5)[far_from_the_cut])
