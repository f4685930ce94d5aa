"""A deterministic synthetic PA chest radiograph generator with lung masks drawn as radiologists draw them.

The lung fields, mediastinum, heart and domes come from the shape model in
``anatomy``; this module renders the rest of a radiograph around them: the body
outline (neck, shoulders, arms when more of the body is in view), soft tissue
and breast shadows, the abdomen under the domes (with the lungs' recesses
dipping behind them and a gastric bubble), the spine, trachea, heart and aortic
knob, curved posterior ribs running down and outward from the spine with the
anterior ribs faintly crossing them, clavicles over the apices, scapulae,
humeral heads, hila and vessels fanning out from them. Brightness is
attenuation (air dark, bone bright), passed through a random exposure and
contrast curve, dynamic-range processing, blur and noise, then burned-in
markers and collimation edges. Framing, pose and inspiration depth vary widely
(lung area from about 0.12 to 0.42 of the image).

The mask is ``anatomy``'s lung field. Everything is drawn from
``numpy.random.default_rng(seed)``; the anatomy does not depend on the image size.

``make_chest_xray(rng, size)`` -> image (size, size) float32 in [0, 1], mask (size, size) bool.
``synthetic_dataset(count, size, seed)`` -> images (count, size, size) float32, masks (count, size, size) bool.
"""
import numpy

from .anatomy import chest_coordinates, dome, draw_framing, draw_lungs, lung_depth, medial_border

EDGE_SOFTNESS = 0.004  # width of the soft tissue edges, as a fraction of the image side


def _inside(depth, softness=EDGE_SOFTNESS):
    """A soft indicator of ``depth > 0``: 1 well inside, 0 well outside."""
    return 0.5 + 0.5 * numpy.tanh(depth / (2.0 * softness))


def _band(distance, half_width):
    """A flat-topped band profile, 1 on the centre line falling to 0 beyond ``half_width``."""
    squared = (distance / half_width) ** 2
    return numpy.exp(-squared * squared)


def _gaussian_blur(image, sigma_pixels):
    """Gaussian blur through the FFT (periodic borders)."""
    rows, cols = image.shape
    frequency_rows = numpy.fft.fftfreq(rows)[:, None]
    frequency_cols = numpy.fft.rfftfreq(cols)[None, :]
    transfer = numpy.exp(-2.0 * (numpy.pi * sigma_pixels) ** 2 * (frequency_rows ** 2 + frequency_cols ** 2))
    return numpy.fft.irfft2(numpy.fft.rfft2(image) * transfer, s=image.shape)


def _smooth_noise(shape, sigma_pixels, rng):
    """White noise low-passed with a Gaussian of ``sigma_pixels``, scaled to unit standard deviation."""
    noise = _gaussian_blur(rng.standard_normal(shape), sigma_pixels)
    return noise / max(float(noise.std()), 1e-12)


def _body(x, y, rng, framing):
    """Soft-tissue thickness of the neck, shoulders, torso and (in wide views) arms: (H, W) in [0, 1]."""
    across = numpy.abs(x)
    torso_width = rng.uniform(1.12, 1.28)
    shoulder_width = rng.uniform(1.55, 1.9)
    widening = numpy.clip((0.25 - y) / 0.4, 0.0, 1.0) ** 0.7
    torso_edge = torso_width + (shoulder_width - torso_width) * widening
    shoulder_line = rng.uniform(-0.5, -0.3) + rng.uniform(0.15, 0.3) * numpy.clip(across - 0.35, 0.0, None)
    scale = framing.half_width
    torso = _inside((torso_edge - across) * scale) * _inside((y - shoulder_line) * framing.height)
    neck = _inside((rng.uniform(0.3, 0.42) - across) * scale)
    body = numpy.maximum(torso, neck)
    if framing.wide:
        arm_start = torso_width + rng.uniform(0.04, 0.15)
        arm = _inside((across - arm_start) * scale) * _inside((arm_start + rng.uniform(0.3, 0.45) - across) * scale)
        body = numpy.maximum(body, arm * _inside((y + 0.1) * framing.height))
    thickness = 0.75 + 0.25 * numpy.sqrt(numpy.clip(1.0 - (across / torso_edge) ** 2, 0.0, 1.0))
    return body * thickness


def _rib_distance(y, centre_line, first, spacing, count):
    """Signed distance (in y) from each pixel to the nearest of ``count`` ribs whose centre lines are
    ``centre_line + first + k * spacing``, and that rib's index: two (H, W) arrays."""
    phase = (y - centre_line - first) / spacing
    index = numpy.clip(numpy.rint(phase), 0, count - 1)
    return (phase - index) * spacing, index.astype(numpy.intp)


def _posterior_ribs(x, y, rng):
    """Posterior ribs: arcs leaving the spine slightly upwards, then curving down and outward to the chest
    wall, widening laterally."""
    count = int(rng.integers(10, 13))
    spacing = rng.uniform(0.085, 0.105)
    across = numpy.abs(x)
    rise, fall, curl = rng.uniform(-0.2, -0.1), rng.uniform(0.2, 0.3), rng.uniform(0.1, 0.25)
    centre_line = rise * across + fall * across ** 2 + curl * across ** 3
    distance, index = _rib_distance(y, centre_line, rng.uniform(-0.16, -0.08), spacing, count)
    thickness = rng.uniform(0.018, 0.026) * rng.uniform(0.85, 1.15, count)
    bands = _band(distance, thickness[index] * (1.0 + 0.5 * across))
    return bands * _inside((across - 0.1) * 0.5) * _inside((1.12 - across) * 0.5)


def _anterior_ribs(x, y, rng):
    """Anterior ribs: fainter, wider bands running down and inward from the chest wall to the costal cartilage."""
    count = int(rng.integers(5, 8))
    across = numpy.abs(x)
    centre_line = rng.uniform(0.15, 0.25) * (1.05 - across)
    distance, _ = _rib_distance(y, centre_line, rng.uniform(0.02, 0.1), rng.uniform(0.12, 0.16), count)
    bands = _band(distance, rng.uniform(0.025, 0.035))
    return bands * _inside((across - 0.35) * 0.5) * _inside((1.1 - across) * 0.5)


def _clavicles(x, y, rng):
    """Clavicles: from the sternal notch across the apices towards the shoulders, with a gentle S curve."""
    across = numpy.abs(x)
    centre = rng.uniform(0.06, 0.14) - rng.uniform(0.04, 0.12) * across + 0.03 * numpy.sin(numpy.pi * across)
    band = _band(y - centre, rng.uniform(0.022, 0.032))
    return band * _inside((across - 0.12) * 0.5) * _inside((1.35 - across) * 0.5)


def _scapulae_and_shoulders(x, y, rng, framing):
    """The scapulae's medial borders over the upper lateral lungs and the humeral heads at the shoulders."""
    across = numpy.abs(x)
    border = rng.uniform(0.8, 1.0) + rng.uniform(0.1, 0.3) * y
    scapula = _inside((across - border) * framing.half_width, 0.006) * _inside((0.55 - y) * framing.height, 0.02)
    head = numpy.hypot((across - rng.uniform(1.45, 1.7)) / 0.17, (y + 0.02) / 0.14)
    return rng.uniform(0.0, 0.08) * scapula + rng.uniform(0.12, 0.2) * _inside(1.0 - head, 0.05)


def _spine(x, y, rng):
    """The spine: a band of vertebral bodies with darker disc spaces."""
    spacing = rng.uniform(0.075, 0.09)
    discs = 0.8 + 0.2 * numpy.cos(2 * numpy.pi * (y / spacing + rng.uniform(0, 1))) ** 2
    return _band(x - rng.uniform(-0.02, 0.02), rng.uniform(0.09, 0.13)) * discs


def _trachea(x, y, rng):
    """The trachea's air column, down to the carina."""
    carina = rng.uniform(0.22, 0.32)
    return _band(x - rng.uniform(-0.03, 0.03), rng.uniform(0.04, 0.06)) * _inside((carina - y) * 0.5, 0.01)


def _heart(x, y, lungs):
    """Heart and great-vessel thickness between the mediastinal borders: thicker at the heart's centre."""
    right, left = lungs
    right_edge, left_edge = -medial_border(right, y), medial_border(left, y)
    centre, half = (right_edge + left_edge) / 2, numpy.maximum((left_edge - right_edge) / 2, 1e-3)
    profile = numpy.sqrt(numpy.clip(1.0 - ((x - centre) / half) ** 2, 0.0, 1.0))
    return profile * numpy.clip((y - 0.3) / 0.4, 0.0, 1.0)


def _reach_window(across, down, reach):
    """The (rows, cols) slices bounding the pixels within ``reach`` of the origin of ``across``/``down``."""
    near = across ** 2 + down ** 2 < reach ** 2
    rows, cols = numpy.nonzero(near.any(axis=1))[0], numpy.nonzero(near.any(axis=0))[0]
    if len(rows) == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _vessels(x, y, lung, rng, framing):
    """Vessel markings: the hilum, and branches fanning out from it (some starting along the way, as side
    branches do), tapering and fading towards the periphery."""
    hilum_x, hilum_y = lung.side * rng.uniform(0.25, 0.35), rng.uniform(0.38, 0.5)
    across = (x - hilum_x) * framing.half_width * lung.side  # outward positive, in image sides
    down = (y - hilum_y) * framing.height
    count = 20
    angles = numpy.radians(rng.uniform(-70.0, 95.0, count))  # 0 lateral, 90 straight down
    reach = rng.uniform(0.12, 0.3, count) * framing.height
    bend = rng.uniform(-3.0, 3.0, count)
    start = rng.uniform(0.0, 0.4, count) * reach  # how far out along its direction a branch leaves the tree
    start_angle = angles + numpy.radians(rng.uniform(-25.0, 25.0, count))
    texture = numpy.exp(-(across ** 2 + down ** 2) / (0.035 * framing.height) ** 2) * 0.6
    window = _reach_window(across, down, (start + reach).max())
    across, down = across[window][None], down[window][None]
    angles, reach, bend, start, start_angle = (value.astype(numpy.float32)[:, None, None]
                                               for value in (angles, reach, bend, start, start_angle))
    right, below = across - start * numpy.cos(start_angle), down - start * numpy.sin(start_angle)
    along = right * numpy.cos(angles) + below * numpy.sin(angles)
    offset = -right * numpy.sin(angles) + below * numpy.cos(angles) + bend * along ** 2
    fraction = numpy.clip((along + start) / (reach + start), 0.0, 1.0)
    width = 0.009 * framing.height * (1.0 - 0.7 * fraction) + 1e-4
    branches = numpy.exp(-(offset / width) ** 2) * (1.0 - fraction) * (along > 0)
    texture[window] += branches.max(axis=0, initial=0.0)
    return texture


def _breasts(x, y, rng, framing):
    """Breast shadows over the lower lungs: brighter below a curved lower edge, fading upwards."""
    centre_x, centre_y = rng.uniform(0.55, 0.8), rng.uniform(0.8, 1.0)
    radius_x, radius_y = rng.uniform(0.35, 0.55), rng.uniform(0.2, 0.32)
    distance = numpy.hypot((numpy.abs(x) - centre_x) / radius_x, (y - centre_y) / radius_y)
    fade = numpy.clip((y - centre_y + radius_y) / radius_y, 0.0, 1.0)
    return _inside((1.0 - distance) * radius_y * framing.height, 0.006) * fade


def _lung_air(depth, rng):
    """How much air each pixel's ray crosses in a lung ``depth`` deep: a sharp step at the border, then a
    gradual rise over the lung's thin rim (lungs are thinner near their borders), so the edge is faint."""
    rim = rng.uniform(0.02, 0.05)
    return _inside(depth) * (rng.uniform(0.4, 0.7) + rng.uniform(0.3, 0.6) * numpy.clip(depth / rim, 0.0, 1.0))


def _soft_tissue(x, y, lungs, lung_air, body, framing, rng):
    """Attenuation of the soft tissue and air: body, abdomen under the domes (with a gastric bubble), heart,
    lungs, trachea and, for some, breast shadows."""
    right, left = lungs
    below_dome = numpy.where(x < 0, y - dome(right, numpy.abs(x)), y - dome(left, numpy.abs(x)))
    abdomen = _inside(below_dome * framing.height) * (0.55 + 0.45 * numpy.clip(below_dome / 0.12, 0.0, 1.0))
    attenuation = (rng.uniform(0.45, 0.6) + rng.uniform(0.04, 0.1) * abdomen) * body
    attenuation += rng.uniform(0.05, 0.12) * _heart(x, y, lungs) * (1.0 - abdomen)
    attenuation -= rng.uniform(0.28, 0.4) * lung_air * (0.8 + 0.2 * numpy.clip(y / 0.5, 0.0, 1.0))
    attenuation -= rng.uniform(0.05, 0.12) * _trachea(x, y, rng)
    gastric = numpy.hypot((x - rng.uniform(0.35, 0.6)) / 0.16, (below_dome - 0.07) / 0.05)
    attenuation -= rng.uniform(0.0, 0.15) * _inside((1.0 - gastric) * 0.05, 0.005) * (below_dome > 0)
    if rng.random() < 0.4:
        attenuation += rng.uniform(0.03, 0.1) * _breasts(x, y, rng, framing) * body
    return attenuation


def _bones(x, y, lung_air, body, framing, rng):
    """Attenuation of the bones: spine, posterior and anterior ribs, clavicles, scapulae and humeral heads."""
    attenuation = rng.uniform(0.04, 0.1) * _spine(x, y, rng) * (0.4 + 0.6 * (1.0 - lung_air))
    attenuation += rng.uniform(0.04, 0.1) * _posterior_ribs(x, y, rng) * (0.45 + 0.55 * lung_air)
    attenuation += rng.uniform(0.015, 0.045) * _anterior_ribs(x, y, rng)
    attenuation += rng.uniform(0.1, 0.18) * _clavicles(x, y, rng)
    return (attenuation + _scapulae_and_shoulders(x, y, rng, framing)) * body


def _lung_markings(x, y, lungs, depths, lung_air, framing, rng):
    """Attenuation of the vessels and the parenchyma's fine texture inside the lungs."""
    vessels = sum(_vessels(x, y, lung, rng, framing) * _inside(depth, 0.02) for lung, depth in zip(lungs, depths))
    texture = _smooth_noise(x.shape, x.shape[0] / 90.0, rng)
    return rng.uniform(0.1, 0.2) * vessels + rng.uniform(0.01, 0.03) * texture * lung_air


def _attenuation(x, y, lungs, framing, rng):
    """The radiograph before imaging: (H, W) attenuation, and the lung mask."""
    depths = [lung_depth(lung, x, y, framing) for lung in lungs]
    mask = numpy.maximum(*depths) > 0
    lung_air = numpy.maximum(*[_lung_air(depth, rng) for depth in depths])
    body = _body(x, y, rng, framing)
    attenuation = _soft_tissue(x, y, lungs, lung_air, body, framing, rng)
    attenuation += _bones(x, y, lung_air, body, framing, rng)
    attenuation += _lung_markings(x, y, lungs, depths, lung_air, framing, rng)
    return attenuation, mask


def _contrast_curve(attenuation, rng):
    """Exposure and display: a random window, then a gamma and an S-shaped curve mixed in: (H, W) in [0, 1]."""
    low = rng.uniform(-0.1, 0.05) + numpy.percentile(attenuation, 1)
    high = rng.uniform(-0.05, 0.1) + numpy.percentile(attenuation, 99)
    level = numpy.clip((attenuation - low) / (high - low), 0.0, 1.0) ** rng.uniform(0.6, 1.6)
    s_curve = 0.5 + 0.5 * numpy.tanh(rng.uniform(2.0, 5.0) * (level - rng.uniform(0.35, 0.65)))
    return level + rng.uniform(0.0, 0.7) * (s_curve - level)


def _imaging(attenuation, rng):
    """Blur, dynamic-range processing, the contrast curve and detector noise: (H, W) in [0, 1]."""
    size = attenuation.shape[0]
    image = _gaussian_blur(attenuation, rng.uniform(0.3, 1.3) * size / 128.0)
    image -= rng.uniform(0.0, 0.6) * (_gaussian_blur(image, size / 10.0) - image.mean())
    image = _contrast_curve(image, rng)
    grain = rng.uniform(0.0, 0.03) * _smooth_noise(image.shape, 0.8 * size / 128.0, rng)
    image = image + grain + rng.uniform(0.004, 0.03) * numpy.sqrt(image + 0.05) * rng.standard_normal(image.shape)
    gradient = numpy.linspace(-0.5, 0.5, size)
    return image + rng.uniform(-0.12, 0.12) * gradient[:, None] + rng.uniform(-0.1, 0.1) * gradient[None, :]


def _collimation(image, mask, rng):
    """Collimation edges or scanner padding along some sides: white (unexposed) or black bands that stop
    short of the lungs."""
    size = image.shape[0]
    for side in range(4):
        if rng.random() < 0.3:
            rotated, rotated_mask = numpy.rot90(image, side).copy(), numpy.rot90(mask, side)
            free_rows = int(numpy.argmax(rotated_mask.any(axis=1))) if mask.any() else size
            width = min(int(round(rng.uniform(0.01, 0.08) * size)), max(free_rows - 1, 0))
            rotated[:width] = 1.0 if rng.random() < 0.5 else rng.uniform(0.0, 0.05)
            image = numpy.rot90(rotated, -side)
    return numpy.ascontiguousarray(image)


def _marker(image, mask, rng):
    """A burned-in side marker (an "L"/"R"-like glyph of bright strokes) and a text strip, off the lungs."""
    size = image.shape[0]
    glyph = max(2, int(round(rng.uniform(0.03, 0.06) * size)))
    stroke = max(1, glyph // 4)
    row = int(rng.uniform(0.02, 0.2) * size)
    col = int(rng.uniform(0.02, 0.15) * size) if rng.random() < 0.5 else int(rng.uniform(0.8, 0.93) * size)
    value = rng.uniform(0.85, 1.0)
    if mask[row:row + glyph, col:col + glyph].any():
        return image
    image[row:row + glyph, col:col + stroke] = value
    image[row + glyph - stroke:row + glyph, col:col + glyph * 2 // 3] = value
    if rng.random() < 0.5:
        text_row = int(rng.uniform(0.9, 0.96) * size)
        strip = (slice(text_row, text_row + stroke), slice(col, col + 4 * glyph, 2 * stroke))
        image[strip] = numpy.where(mask[strip], image[strip], value)
    return image


def make_chest_xray(rng, size=128):
    """One synthetic radiograph and its lung mask: (size, size) float32 in [0, 1] and (size, size) bool."""
    framing = draw_framing(rng)
    lungs = draw_lungs(rng)
    x, y = chest_coordinates(size, framing)
    attenuation, mask = _attenuation(x, y, lungs, framing, rng)
    image = _imaging(attenuation, rng)
    image = _collimation(image, mask, rng)
    if rng.random() < 0.7:
        image = _marker(image, mask, rng)
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
