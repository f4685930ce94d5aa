"""A parametric shape model of the chest on a PA radiograph: framing, lung fields, mediastinum, heart, domes.

Anatomy is described in chest coordinates: ``x`` across (0 on the midline, the
patient's right lung at negative x, drawn on the image's left; 1 at the widest
lateral border of the lungs), ``y`` down (0 at the apices, 1 at the lowest
costophrenic angle). ``Framing`` maps them to the image, so the anatomy and the
field of view vary independently.

Each lung is bounded by four curves of its own parameters: the lateral border
(rounded at the apex, following the ribcage down to the costophrenic angle),
the medial border (the mediastinum: the aortic knob and the heart's left border,
which cuts the cardiac notch, on the left; the right atrium on the right) and
the diaphragm dome below (highest near the middle of the lung, deepest at the
costophrenic angle; the right dome higher than the left). The lung mask is the
region inside all four: the lung field as radiologists outline it, excluding
the heart and everything below the domes, down to the costophrenic angles and
up to the apex.
"""
from dataclasses import dataclass

import numpy


@dataclass
class Framing:
    """Where the chest lies in the image, as fractions of its side: the lungs' horizontal centre and half
    width, the apices' row, the lungs' height (apex to lowest costophrenic angle), a rotation (radians)
    and whether more of the body (shoulders, arms) is in view."""
    centre: float
    half_width: float
    top: float
    height: float
    angle: float
    wide: bool


@dataclass
class Lung:
    """One lung's shape parameters, in chest coordinates (``side`` -1: the patient's right, +1: the left)."""
    side: float
    width: float            # lateral border at its widest (|x|)
    apex_x: float           # |x| of the apex
    apex_y: float
    widest_at: float        # fraction of the height where the lateral border is widest
    roundness: float        # exponent of the apex's curve: smaller is rounder
    taper: float            # how far the lateral border comes in towards the costophrenic angle
    mediastinum: float      # |x| of the medial border below the apex
    medial_drop: float      # fraction of the height where the medial border reaches the mediastinum
    bulge: float            # |x| of the heart border (left) or right atrium (right) at its widest
    bulge_from: float       # fraction of the height where that border starts
    bulge_peak: float       # fraction of the height where it is widest
    knob: float             # extra |x| of the aortic knob (left lung only, 0 on the right)
    knob_at: float
    dome_top: float         # y of the dome's highest point
    angle_y: float          # y of the costophrenic angle
    dome_peak: float        # fraction of the lung's width (from the midline) where the dome is highest
    dome_power: float       # how steeply the dome falls to the costophrenic angle
    medial_fall: float      # how far the dome falls towards the cardiophrenic angle


FRAMINGS = {  # name: (probability, lung width range, apex row range), fractions of the image side
    "wide": (0.07, (0.56, 0.74), (0.08, 0.15)),    # more of the body and the arms (Shenzhen)
    "close": (0.05, (0.83, 0.9), (0.04, 0.07)),    # cropped close to the ribcage
    "chest": (0.88, (0.77, 0.83), (0.055, 0.1)),   # framed on the chest (JSRT, Montgomery)
}


def draw_framing(rng):
    """A field of view of one of ``FRAMINGS``' kinds, with the lungs' height set by the inspiration depth
    through their aspect ratio, a small offset and a small rotation."""
    names = list(FRAMINGS)
    name = names[rng.choice(len(names), p=[FRAMINGS[kind][0] for kind in names])]
    _, widths, tops = FRAMINGS[name]
    lung_width, top = rng.uniform(*widths), rng.uniform(*tops)
    height = min(lung_width * rng.uniform(0.74, 1.08), 0.965 - top)
    return Framing(centre=0.508 + rng.uniform(-0.01, 0.01), half_width=lung_width / 2, top=top, height=height,
                   angle=numpy.radians(rng.uniform(-2.5, 2.5)), wide=name == "wide")


def draw_lung(rng, side, dome_top, angle_y):
    """One lung's parameters; ``side`` -1 for the patient's right (no cardiac notch), +1 for the left."""
    left = side > 0
    return Lung(
        side=side, width=rng.uniform(0.98, 1.0), apex_x=rng.uniform(0.4, 0.56), apex_y=rng.uniform(0.0, 0.03),
        widest_at=rng.uniform(0.68, 0.9), roundness=rng.uniform(0.5, 0.8), taper=rng.uniform(0.0, 0.06),
        mediastinum=rng.uniform(0.14, 0.21), medial_drop=rng.uniform(0.12, 0.25),
        bulge=rng.uniform(0.48, 0.68) if left else rng.uniform(0.18, 0.3),
        bulge_from=rng.uniform(0.35, 0.48) if left else rng.uniform(0.45, 0.6),
        bulge_peak=rng.uniform(0.82, 0.95), knob=rng.uniform(0.05, 0.12) if left else 0.0,
        knob_at=rng.uniform(0.2, 0.3), dome_top=dome_top, angle_y=angle_y, dome_peak=rng.uniform(0.35, 0.55),
        dome_power=rng.uniform(1.6, 2.6), medial_fall=rng.uniform(0.02, 0.1))


def draw_lungs(rng):
    """The patient's (right, left) lungs: the right dome higher than the left; the lower costophrenic angle
    (usually the left one) at y = 1."""
    lower_left = rng.random() < 0.75
    right_angle = 1.0 - rng.uniform(0.0, 0.05) if lower_left else 1.0
    left_angle = 1.0 if lower_left else 1.0 - rng.uniform(0.0, 0.03)
    left_top = left_angle - rng.uniform(0.15, 0.27)
    right_top = min(left_top - rng.uniform(0.02, 0.07), right_angle - 0.08)
    return draw_lung(rng, -1.0, right_top, right_angle), draw_lung(rng, +1.0, left_top, left_angle)


def chest_coordinates(size, framing):
    """(x, y) chest coordinates of every pixel centre of a (size, size) image: two (size, size) arrays."""
    pixel = (numpy.arange(size) + 0.5) / size
    du = pixel[None, :] - framing.centre
    dv = pixel[:, None] - (framing.top + framing.height / 2)
    cosine, sine = numpy.cos(framing.angle), numpy.sin(framing.angle)
    across = cosine * du + sine * dv
    down = -sine * du + cosine * dv
    return ((across / framing.half_width).astype(numpy.float32),
            (down / framing.height + 0.5).astype(numpy.float32))


def _round_rise(fraction, power):
    """0 at 0, rising steeply (a rounded corner) to 1 at 1; ``fraction`` clipped to [0, 1]."""
    fraction = numpy.clip(fraction, 0.0, 1.0)
    return (1.0 - (1.0 - fraction) ** 2) ** power


def lateral_border(lung, y):
    """|x| of the lung's lateral border at rows ``y``: rounded at the apex, widest at ``widest_at``."""
    t = (y - lung.apex_y) / (lung.angle_y - lung.apex_y)
    border = lung.apex_x + (lung.width - lung.apex_x) * _round_rise(t / lung.widest_at, lung.roundness)
    below = numpy.clip((t - lung.widest_at) / (1.0 - lung.widest_at), 0.0, 1.0)
    return border - lung.taper * below ** 2


def heart_border(lung, t):
    """|x| of the heart's border (the right atrium on the right) at height fractions ``t``: rises from
    ``bulge_from`` to ``bulge_peak`` in a rounded arc, then turns in towards the cardiophrenic angle."""
    rise = (t - lung.bulge_from) / (lung.bulge_peak - lung.bulge_from)
    arc = _round_rise(rise, 0.5) * (t >= lung.bulge_from)
    turn = numpy.clip((t - lung.bulge_peak) / (1.0 - lung.bulge_peak), 0.0, 1.0)
    return lung.bulge * arc * (1.0 - 0.25 * turn ** 2)


def medial_border(lung, y):
    """|x| of the lung's medial border at rows ``y``: the mediastinum, with the aortic knob and the heart."""
    t = (y - lung.apex_y) / (lung.angle_y - lung.apex_y)
    border = lung.apex_x - (lung.apex_x - lung.mediastinum) * _round_rise(t / lung.medial_drop, 0.5)
    border = border + lung.knob * numpy.exp(-((t - lung.knob_at) / 0.06) ** 2)
    return numpy.maximum(border, heart_border(lung, t))


def dome(lung, x):
    """y of the lung's diaphragm dome under ``|x| = x``: highest at ``dome_peak``, down to the costophrenic
    angle laterally and a little towards the cardiophrenic angle medially."""
    across = x / lung.width
    lateral = numpy.clip((across - lung.dome_peak) / (1.0 - lung.dome_peak), 0.0, None) ** lung.dome_power
    medial = numpy.clip((lung.dome_peak - across) / lung.dome_peak, 0.0, 1.0) ** 2
    return lung.dome_top + (lung.angle_y - lung.dome_top) * lateral + lung.medial_fall * medial


def lung_depth(lung, x, y, framing):
    """How far inside the lung each pixel is, as a fraction of the image side (negative outside)."""
    across = x * lung.side
    inside_across = numpy.minimum(across - medial_border(lung, y), lateral_border(lung, y) - across)
    inside_down = numpy.minimum(dome(lung, across) - y, y - lung.apex_y)
    return numpy.minimum(inside_across * framing.half_width, inside_down * framing.height)
