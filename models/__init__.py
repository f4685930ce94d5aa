"""The segmentation networks built on minidl, each with a hand-written forward and backward."""
from .fcn import FCN
from .fcn_skip import FCN8s, FCN16s, FCN32s
from .segnet import SegNet, SegNetBasic
from .segnet_small import SegNetSmall
from .vgg import load_vgg16_weights

__all__ = ["SegNet", "SegNetBasic", "SegNetSmall", "FCN", "FCN32s", "FCN16s", "FCN8s", "load_vgg16_weights"]
