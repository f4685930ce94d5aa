"""``Upsample``: a thin shell over the engine's ``upsample`` ops (``minidl.functional.upsample``)."""
import math
import numbers

from ..functional import checks
from ..engines import get_engine, op
from .module import Module

MODES = ("nearest", "bilinear")


def _number_pair(value, name, kind):
    """A number or a pair of numbers -> a tuple (for_height, for_width) of ``kind``."""
    values = (value, value) if isinstance(value, numbers.Number) else tuple(value)
    if len(values) != 2 or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise ValueError(f"Upsample: {name} must be a number or a pair, got {value!r}")
    if not all(0 < v < math.inf for v in values):  # also refuses NaN, which every comparison fails
        raise ValueError(f"Upsample: {name} must be positive and finite, got {value!r}")
    return values


class Upsample(Module):
    """Resize every plane. x (N, C, H, W) -> y (N, C, Ho, Wo).

    Exactly one of ``size`` (Ho, Wo) and ``scale_factor`` (then Ho = floor(H * scale), and the
    source positions use 1 / scale, as PyTorch's default) is given; either is a number or a
    pair. ``mode`` is ``"nearest"`` or ``"bilinear"``; ``align_corners`` (bilinear only, None
    means False) maps the corner pixels' centres onto each other.
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"Upsample: mode must be one of {MODES}, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError(f"Upsample: give exactly one of size and scale_factor, got size={size!r}, "
                             f"scale_factor={scale_factor!r}")
        if mode == "nearest" and align_corners is not None:
            raise ValueError("Upsample: align_corners can only be set with mode='bilinear' (as PyTorch), "
                             f"got align_corners={align_corners!r} with mode='nearest'")
        self.size = None if size is None else _number_pair(size, "size", numbers.Integral)
        self.scale_factor = None if scale_factor is None else tuple(
            float(s) for s in _number_pair(scale_factor, "scale_factor", numbers.Real))
        self.mode = mode
        self.align_corners = align_corners

    def output_hw(self, x):
        """(Ho, Wo) for input x."""
        if self.size is not None:
            return tuple(int(s) for s in self.size)
        return tuple(int(math.floor(x.shape[2 + a] * self.scale_factor[a])) for a in range(2))

    def forward(self, x):
        checks.check_input_4d("Upsample", x)
        size = self.output_hw(x)
        if min(size) < 1 or min(x.shape[2:]) < 1:
            raise ValueError(f"Upsample: input of shape {checks.shape_text(x)} gives output size {size}; both "
                             f"must be positive")
        scales = self.scale_factor or (None, None)
        if self.mode == "nearest":
            y, cache = op("upsample", "upsample_nearest2d_forward")(x, size, scales)
        else:
            y, cache = op("upsample", "upsample_bilinear2d_forward")(x, size, bool(self.align_corners), scales)
        self.keep((get_engine(), cache), y)
        return y

    def backward(self, dy):
        """dy (N, C, Ho, Wo) -> dx (N, C, H, W)."""
        engine, cache = self.take_cache(dy)
        return op("upsample", f"upsample_{self.mode}2d_backward", engine)(dy, cache)

    def extra_repr(self):
        target = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        corners = f", align_corners={self.align_corners}" if self.mode == "bilinear" else ""
        return f"{target}, mode={self.mode!r}{corners}"
