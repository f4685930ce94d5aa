"""VGG building blocks shared by SegNet and the FCNs, and the import of torchvision VGG16 weights.

``ConvBlock`` is conv -> [BatchNorm2d] -> [ReLU]; ``VGGBlock`` is a stack of
them followed by a 2x2 max-pool that keeps its indices, so a SegNet decoder
can unpool and an FCN can take the pooled output as a skip connection.
"""
from collections import namedtuple

import numpy

from minidl import backend, load
from minidl.nn import BatchNorm2d, Conv2d, MaxPool2d, Module, ReLU, Sequential

VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_DEPTHS = (2, 2, 3, 3, 3)

Pooled = namedtuple("Pooled", ["output", "indices", "input_size"])
Pooled.__doc__ = """A VGGBlock's result: the pooled output, its int64 max-pool indices, and the (H, W) of the
pool's input (the ``output_size`` that unpools them back, odd sizes included)."""


class ConvBlock(Module):
    """conv k x k (padding k // 2) -> [BatchNorm2d] -> [ReLU]: (N, C_in, H, W) -> (N, C_out, H, W)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, batch_norm=False, relu=True):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.bn = BatchNorm2d(out_channels) if batch_norm else None
        self.relu = ReLU(inplace=True) if relu else None  # on the conv's or BN's fresh output

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x

    def backward(self, dy):
        if self.relu is not None:
            dy = self.relu.backward(dy)
        if self.bn is not None:
            dy = self.bn.backward(dy)
        return self.conv.backward(dy)


class VGGBlock(Module):
    """``depth`` ConvBlocks (k x k, [BN], ReLU), then a 2x2 max-pool that keeps its indices.

    forward: x (N, C_in, H, W) -> Pooled(output (N, C_out, H//2, W//2), indices (like output, int64), (H, W)).
    backward: d_output (N, C_out, H//2, W//2) -> dx (N, C_in, H, W).
    """

    def __init__(self, in_channels, out_channels, depth, batch_norm=False, kernel_size=3):
        super().__init__()
        self.convs = Sequential(*[ConvBlock(in_channels if k == 0 else out_channels, out_channels, kernel_size,
                                            batch_norm) for k in range(depth)])
        self.pool = MaxPool2d(2, 2, return_indices=True)

    def forward(self, x):
        features = self.convs(x)
        output, indices = self.pool(features)
        return Pooled(output, indices, tuple(features.shape[2:]))

    def backward(self, d_output):
        d_features = self.pool.backward(d_output)
        return self.convs.backward(d_features)


def vgg_blocks(in_channels, widths=VGG16_WIDTHS, depths=VGG16_DEPTHS, batch_norm=False, kernel_size=3):
    """The encoder's VGGBlocks, in order: block k maps widths[k-1] to widths[k] channels with depths[k] convs."""
    inputs = (in_channels,) + tuple(widths[:-1])
    return [VGGBlock(c_in, c_out, depth, batch_norm, kernel_size) for c_in, c_out, depth in zip(inputs, widths, depths)]


def check_divisible(model, x, factor):
    """ValueError unless H and W of x are multiples of ``factor`` (the model's total downsampling)."""
    height, width = x.shape[2:]
    if height % factor or width % factor:
        raise ValueError(f"{model}: input height and width must be multiples of {factor}, "
                         f"got input of shape {tuple(int(s) for s in x.shape)}")


def check_at_least(model, x, size):
    """ValueError unless H and W of x are at least ``size`` (every pool still has a window)."""
    if min(x.shape[2:]) < size:
        raise ValueError(f"{model}: input height and width must be at least {size}, "
                         f"got input of shape {tuple(int(s) for s in x.shape)}")


# ------------------------------------------------------------------ VGG16 weights
def torchvision_vgg16_names(batch_norm):
    """For each of VGG16's 13 convs, torchvision's ``features.<i>`` prefixes: (conv, batch norm or None)."""
    names, index = [], 0
    for depth in VGG16_DEPTHS:
        for _ in range(depth):
            names.append((f"features.{index}", f"features.{index + 1}" if batch_norm else None))
            index += 3 if batch_norm else 2  # conv [bn] relu
        index += 1  # max-pool
    return names


def encoder_conv_blocks(model):
    """The ConvBlocks of a model's VGGBlocks, in forward order (registration order)."""
    return [block for module in model.modules() if isinstance(module, VGGBlock) for block in module.convs]


def _vgg16_assignments(model, weights):
    """[(key, target array)] pairing each npz key with the model array it fills; raises on any mismatch."""
    owner = f"load_vgg16_weights({type(model).__name__})"
    blocks = encoder_conv_blocks(model)
    depths = tuple(len(module.convs) for module in model.modules() if isinstance(module, VGGBlock))
    if depths != VGG16_DEPTHS:
        raise ValueError(f"{owner}: the model's encoder has conv blocks of depths {depths}, "
                         f"VGG16 has {VGG16_DEPTHS}")
    file_has_bn = "features.1.running_mean" in weights
    if file_has_bn and blocks[0].bn is None:
        raise ValueError(f"{owner}: the file holds VGG16-BN weights but the model's encoder has no batch norm")
    assignments = []
    for block, (conv_name, bn_name) in zip(blocks, torchvision_vgg16_names(file_has_bn)):
        assignments += [(f"{conv_name}.weight", block.conv.weight.data), (f"{conv_name}.bias", block.conv.bias.data)]
        if bn_name is not None:
            bn = block.bn
            assignments += [(f"{bn_name}.weight", bn.weight.data), (f"{bn_name}.bias", bn.bias.data),
                            (f"{bn_name}.running_mean", bn.running_mean), (f"{bn_name}.running_var", bn.running_var)]
            if f"{bn_name}.num_batches_tracked" in weights:
                assignments.append((f"{bn_name}.num_batches_tracked", bn.num_batches_tracked))
    expected = {key for key, _ in assignments}
    missing = [key for key, _ in assignments if key not in weights]
    unexpected = sorted(key for key in weights if key.startswith("features.") and key not in expected)
    if missing or unexpected:
        raise KeyError(f"{owner}: missing keys {missing}, unexpected keys {unexpected}")
    for key, target in assignments:
        if tuple(weights[key].shape) != tuple(target.shape):
            raise ValueError(f"{owner}: key '{key}' has shape {tuple(weights[key].shape)}, "
                             f"the model expects {tuple(target.shape)}")
    return assignments


def load_vgg16_weights(model, path):
    """Fill a model's 13 encoder convs (and their batch norms) from an npz of torchvision VGG16 weights.

    The npz holds torchvision's names (``features.0.weight`` ... ``features.28.bias`` for VGG16,
    ``features.0`` ... ``features.41`` with ``features.1.running_mean`` etc. for VGG16-BN), as written by
    ``tools/convert_vgg16.py``. Plain VGG16 weights fill only the convs of a model with batch norm.
    ``classifier.*`` keys are ignored. Every name and shape is checked before anything is copied.
    Returns the list of keys loaded.
    """
    weights = load(path)
    assignments = _vgg16_assignments(model, weights)
    for key, target in assignments:
        value = numpy.asarray(weights[key]).astype(target.dtype, copy=False)
        target[...] = backend.get_array_module(target).asarray(value)
    return [key for key, _ in assignments]
