"""A deterministic synthetic chest X-ray generator with exact lung masks.

Each image is built from the anatomy a lung segmenter must cope with: a body
outline, two lung fields of varying shape, size and position whose lower
border is the diaphragm dome, a heart that covers part of the left lung, a
spine, ribs and clavicles crossing the lungs, vessel texture, then blur,
contrast and gamma changes, an illumination gradient and noise. Brightness
is attenuation (air dark, bone bright), as on a radiograph. The mask is the
lung field as radiologists draw it: the lung shape above the diaphragm, minus
the heart. Everything is drawn from ``numpy.random.default_rng(seed)``.

``make_chest_xray(rng, size)`` -> image (size, size) float32 in [0, 1], mask (size, size) bool.
``synthetic_dataset(count, size, seed)`` -> images (count, size, size) float32, masks (count, size, size) bool.
"""
import numpy

LUNG_SOFTNESS = 0.012  # width of the lungs' soft edge, in units of the image side


def _smooth_step(signed_distance, softness):
    """A soft indicator of ``signed_distance < 0``: 1 inside, 0 outside."""
    return 1.0 / (1.0 + numpy.exp(numpy.clip(signed_distance / softness, -40.0, 40.0)))


def _lung_field(u, v, side, rng):
    """Signed distance-like function of one lung (negative inside) and its diaphragm height (u, v in [0, 1])."""
    separation = rng.uniform(0.16, 0.21)
    centre_u = 0.5 + side * separation + rng.uniform(-0.015, 0.015)
    centre_v = rng.uniform(0.43, 0.50)
    half_width = rng.uniform(0.11, 0.15)
    half_height = rng.uniform(0.22, 0.29)
    medial_squeeze = rng.uniform(0.75, 0.95)
    dx = (u - centre_u) / half_width
    dx = numpy.where(dx * side < 0, dx / medial_squeeze, dx)
    dy = (v - centre_v) / half_height
    dx = dx * (1.0 + rng.uniform(0.25, 0.5) * numpy.clip(-dy, 0.0, 1.0))  # narrower towards the apex
    radius = numpy.hypot(dx, dy)
    angle = numpy.arctan2(dy, dx)
    boundary = numpy.ones_like(radius)
    for harmonic in range(2, 5):
        boundary += rng.uniform(0.0, 0.05) * numpy.cos(harmonic * angle + rng.uniform(0, 2 * numpy.pi))
    dome_top = centre_v + half_height * rng.uniform(0.55, 0.8) + (0.02 if side > 0 else 0.0)
    dome_centre = centre_u + side * rng.uniform(0.0, 0.03)
    dome = dome_top + rng.uniform(1.0, 2.0) * (u - dome_centre) ** 2
    lung_distance = (radius - boundary) * min(half_width, half_height)
    return numpy.maximum(lung_distance, v - dome), dome


def _heart(u, v, rng):
    """Signed distance-like function of the heart: a tilted ellipse over the left lung (image right),
    resting on the diaphragm (everything below its centre and within its width is heart too)."""
    centre_u, centre_v = 0.5 + rng.uniform(0.05, 0.09), rng.uniform(0.58, 0.64)
    half_u, half_v = rng.uniform(0.13, 0.17), rng.uniform(0.10, 0.13)
    tilt = rng.uniform(-0.5, -0.2)
    du, dv = u - centre_u, v - centre_v
    along = du * numpy.cos(tilt) + dv * numpy.sin(tilt)
    across = -du * numpy.sin(tilt) + dv * numpy.cos(tilt)
    ellipse = (numpy.hypot(along / half_u, across / half_v) - 1.0) * min(half_u, half_v)
    base = numpy.maximum(numpy.abs(du) - 0.85 * half_u, -dv)
    return numpy.minimum(ellipse, base)


def _ribs(u, v, rng):
    """Rib shadows: arched bands on both sides, evenly spaced down the chest, with jitter."""
    count = rng.integers(8, 11)
    tops = numpy.linspace(0.2, 0.74, count) + rng.uniform(-0.01, 0.01, count)
    offset = numpy.abs(u - 0.5)[None] - rng.uniform(0.15, 0.22)
    curvature = rng.uniform(0.9, 1.6)
    slope = rng.uniform(0.08, 0.2)
    centre = tops[:, None, None] + curvature * offset ** 2 + slope * offset
    thickness = rng.uniform(0.010, 0.018)
    bands = numpy.exp(-((v[None] - centre) / thickness) ** 2).max(axis=0)
    lateral = numpy.abs(u - 0.5)
    return bands * ((lateral > 0.035) & (lateral < 0.43))


def _clavicles(u, v, rng):
    """Two bone bands from the sternal notch rising towards the shoulders."""
    height = rng.uniform(0.17, 0.23)
    rise = rng.uniform(0.05, 0.12)
    lateral = numpy.abs(u - 0.5)
    centre = height - rise * (lateral - 0.05) / 0.3
    thickness = rng.uniform(0.012, 0.02)
    band = numpy.exp(-((v - centre) / thickness) ** 2)
    return band * ((lateral > 0.04) & (lateral < 0.38))


def _filtered_noise(shape, sigma_pixels, rng):
    """White noise low-passed with a Gaussian of ``sigma_pixels``, scaled to unit standard deviation."""
    return _gaussian_blur(rng.standard_normal(shape), sigma_pixels, normalise=True)


def _gaussian_blur(image, sigma_pixels, normalise=False):
    """Gaussian blur through the FFT (periodic borders), optionally rescaled to unit standard deviation."""
    rows, cols = image.shape
    frequency_rows = numpy.fft.fftfreq(rows)[:, None]
    frequency_cols = numpy.fft.rfftfreq(cols)[None, :]
    transfer = numpy.exp(-2.0 * (numpy.pi * sigma_pixels) ** 2 * (frequency_rows ** 2 + frequency_cols ** 2))
    blurred = numpy.fft.irfft2(numpy.fft.rfft2(image) * transfer, s=image.shape)
    if normalise:
        blurred /= max(float(blurred.std()), 1e-12)
    return blurred


def make_chest_xray(rng, size=128):
    """One synthetic radiograph and its lung mask: (size, size) float32 in [0, 1] and (size, size) bool."""
    coordinates = (numpy.arange(size) + 0.5) / size
    v, u = numpy.meshgrid(coordinates, coordinates, indexing="ij")
    softness = LUNG_SOFTNESS

    body_u, body_half_width = 0.5 + rng.uniform(-0.02, 0.02), rng.uniform(0.42, 0.49)
    body = _smooth_step(numpy.hypot((u - body_u) / body_half_width, (v - 0.62) / 0.62) - 1.0, 0.02)
    right_lung, right_dome = _lung_field(u, v, -1.0, rng)
    left_lung, left_dome = _lung_field(u, v, +1.0, rng)
    heart = _heart(u, v, rng)
    lung_distance = numpy.maximum(numpy.minimum(right_lung, left_lung), -heart)
    mask = lung_distance < 0
    lungs = _smooth_step(lung_distance, softness)
    abdomen = _smooth_step(numpy.minimum(v - numpy.where(u < 0.5, right_dome, left_dome), 0.0) * -1.0, 0.02)

    attenuation = rng.uniform(0.5, 0.65) * body + 0.08 * abdomen * body
    lung_depth = rng.uniform(0.3, 0.42) * (1.0 - 0.35 * (v - 0.25))
    attenuation -= lungs * lung_depth
    attenuation += lungs * rng.uniform(0.015, 0.04) * _filtered_noise(u.shape, size / 110.0, rng)
    spine_width = rng.uniform(0.03, 0.045)
    attenuation += rng.uniform(0.08, 0.16) * numpy.exp(-((u - 0.5) / spine_width) ** 4) * body
    attenuation += rng.uniform(0.07, 0.14) * _ribs(u, v, rng) * body
    attenuation += rng.uniform(0.1, 0.18) * _clavicles(u, v, rng)

    image = _gaussian_blur(attenuation, rng.uniform(0.4, 1.2) * size / 128.0)
    image = numpy.clip(image, 0.0, 1.0) ** rng.uniform(0.7, 1.4)
    low, high = rng.uniform(0.0, 0.12), rng.uniform(0.75, 1.0)
    gradient = rng.uniform(-0.08, 0.08) * (u - 0.5) + rng.uniform(-0.08, 0.08) * (v - 0.5)
    image = low + (high - low) * image + gradient
    image += rng.uniform(0.01, 0.04) * rng.standard_normal(image.shape)
    return numpy.clip(image, 0.0, 1.0).astype(numpy.float32), mask


def synthetic_dataset(count, size=128, seed=0):
    """``count`` radiographs and masks, reproducible from ``seed``: (count, size, size) float32 and bool."""
    if count < 1 or size < 8:
        raise ValueError(f"synthetic_dataset: need count >= 1 and size >= 8, got count={count}, size={size}")
    images = numpy.empty((count, size, size), numpy.float32)
    masks = numpy.empty((count, size, size), bool)
    for index, child in enumerate(numpy.random.SeedSequence(seed).spawn(count)):
        images[index], masks[index] = make_chest_xray(numpy.random.default_rng(child), size)
    return images, masks
