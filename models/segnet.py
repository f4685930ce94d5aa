"""SegNet (Badrinarayanan et al., arXiv 1511.00561) and its small variant SegNet-Basic.

The encoder max-pools with indices; each decoder block unpools its input into
the positions those indices name (``output_size`` = the pool's input size, so
odd sizes come back exactly) and then convolves. Gradients flow back through
the same indices.
"""
from minidl.functional import checks
from minidl.nn import Conv2d, MaxUnpool2d, Module, Sequential

from .vgg import VGG16_DEPTHS, VGG16_WIDTHS, ConvBlock, check_at_least, vgg_blocks


class UnpoolDecoderBlock(Module):
    """MaxUnpool2d(2, 2) with an encoder pool's indices, then ConvBlocks.

    forward: x (N, C, h, w), indices (N, C, h, w), output_size (H, W) -> (N, C_out, H, W).
    backward: dy (N, C_out, H, W) -> dx (N, C, h, w).
    """

    def __init__(self, conv_blocks):
        super().__init__()
        self.unpool = MaxUnpool2d(2, 2)
        self.convs = Sequential(*conv_blocks)

    def forward(self, x, indices, output_size):
        unpooled = self.unpool(x, indices, output_size=output_size)
        return self.convs(unpooled)

    def backward(self, dy):
        d_unpooled = self.convs.backward(dy)
        return self.unpool.backward(d_unpooled)


def _segnet_decoder_convs(width, next_width, depth, last_plain):
    """A SegNet decoder's convs: depth-1 of width -> width, then width -> next_width (bare if last_plain)."""
    blocks = [ConvBlock(width, width, 3, batch_norm=True) for _ in range(depth - 1)]
    blocks.append(ConvBlock(width, next_width, 3, batch_norm=not last_plain, relu=not last_plain))
    return blocks


class SegNet(Module):
    """SegNet: the 13 convs of VGG16 (3x3, BN, ReLU) with five 2x2 index-keeping pools, a mirrored decoder.

    x (N, in_channels, H, W) -> logits (N, num_classes, H, W), any H, W >= 32 (odd sizes unpool back
    exactly). Decoder block k unpools with encoder block k's indices and has as many convs as encoder
    block k; its last conv maps to the next (shallower) width, and the very last conv maps to
    ``num_classes`` with no BN or ReLU. ``widths`` and ``depths`` (keyword-only) shrink it for tests.
    """

    def __init__(self, in_channels=1, num_classes=1, *, widths=VGG16_WIDTHS, depths=VGG16_DEPTHS):
        super().__init__()
        if len(widths) != 5 or len(depths) != 5:
            raise ValueError(f"SegNet: widths and depths need 5 entries each, got {widths} and {depths}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.enc1, self.enc2, self.enc3, self.enc4, self.enc5 = vgg_blocks(in_channels, widths, depths,
                                                                           batch_norm=True)
        next_widths = (num_classes,) + tuple(widths[:-1])
        decoders = [UnpoolDecoderBlock(_segnet_decoder_convs(w, n, d, last_plain=(k == 0)))
                    for k, (w, n, d) in enumerate(zip(widths, next_widths, depths))]
        self.dec5, self.dec4, self.dec3, self.dec2, self.dec1 = decoders[::-1]

    def forward(self, x):
        checks.check_input_4d("SegNet", x, self.in_channels)
        check_at_least("SegNet", x, 32)
        e1 = self.enc1(x)                                        # (N, w1, H/2, W/2)
        e2 = self.enc2(e1.output)                                # (N, w2, H/4, W/4)
        e3 = self.enc3(e2.output)                                # (N, w3, H/8, W/8)
        e4 = self.enc4(e3.output)                                # (N, w4, H/16, W/16)
        e5 = self.enc5(e4.output)                                # (N, w5, H/32, W/32)
        d5 = self.dec5(e5.output, e5.indices, e5.input_size)     # (N, w4, H/16, W/16)
        d4 = self.dec4(d5, e4.indices, e4.input_size)           # (N, w3, H/8, W/8)
        d3 = self.dec3(d4, e3.indices, e3.input_size)           # (N, w2, H/4, W/4)
        d2 = self.dec2(d3, e2.indices, e2.input_size)           # (N, w1, H/2, W/2)
        return self.dec1(d2, e1.indices, e1.input_size)         # (N, num_classes, H, W)

    def backward(self, dlogits):
        d_d2 = self.dec1.backward(dlogits)
        d_d3 = self.dec2.backward(d_d2)
        d_d4 = self.dec3.backward(d_d3)
        d_d5 = self.dec4.backward(d_d4)
        d_e5 = self.dec5.backward(d_d5)
        d_e4 = self.enc5.backward(d_e5)
        d_e3 = self.enc4.backward(d_e4)
        d_e2 = self.enc3.backward(d_e3)
        d_e1 = self.enc2.backward(d_e2)
        return self.enc1.backward(d_e1)


class SegNetBasic(Module):
    """SegNet-Basic: 4 encoders (7x7 conv, BN, ReLU, 2x2 pool keeping indices), 4 decoders, 1x1 classifier.

    x (N, in_channels, H, W) -> logits (N, num_classes, H, W), any H, W >= 16. Each decoder unpools
    with the matching encoder's indices, then 7x7 conv + BN and no ReLU, as in the paper's Section 3.1
    and the authors' segnet_basic Caffe model (whose input LRN layer is left out here). Convs keep
    their biases, as in that model. ``width`` (keyword-only, 64 in the paper) shrinks it for tests.
    """

    def __init__(self, in_channels=1, num_classes=1, *, width=64):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        widths, depths = (width,) * 4, (1,) * 4
        self.enc1, self.enc2, self.enc3, self.enc4 = vgg_blocks(in_channels, widths, depths, batch_norm=True,
                                                                kernel_size=7)
        decoders = [UnpoolDecoderBlock([ConvBlock(width, width, 7, batch_norm=True, relu=False)]) for _ in range(4)]
        self.dec4, self.dec3, self.dec2, self.dec1 = decoders
        self.classifier = Conv2d(width, num_classes, 1)

    def forward(self, x):
        checks.check_input_4d("SegNetBasic", x, self.in_channels)
        check_at_least("SegNetBasic", x, 16)
        e1 = self.enc1(x)                                        # (N, width, H/2, W/2)
        e2 = self.enc2(e1.output)                                # (N, width, H/4, W/4)
        e3 = self.enc3(e2.output)                                # (N, width, H/8, W/8)
        e4 = self.enc4(e3.output)                                # (N, width, H/16, W/16)
        d4 = self.dec4(e4.output, e4.indices, e4.input_size)     # (N, width, H/8, W/8)
        d3 = self.dec3(d4, e3.indices, e3.input_size)           # (N, width, H/4, W/4)
        d2 = self.dec2(d3, e2.indices, e2.input_size)           # (N, width, H/2, W/2)
        d1 = self.dec1(d2, e1.indices, e1.input_size)           # (N, width, H, W)
        return self.classifier(d1)                              # (N, num_classes, H, W)

    def backward(self, dlogits):
        d_d1 = self.classifier.backward(dlogits)
        d_d2 = self.dec1.backward(d_d1)
        d_d3 = self.dec2.backward(d_d2)
        d_d4 = self.dec3.backward(d_d3)
        d_e4 = self.dec4.backward(d_d4)
        d_e3 = self.enc4.backward(d_e4)
        d_e2 = self.enc3.backward(d_e3)
        d_e1 = self.enc2.backward(d_e2)
        return self.enc1.backward(d_e1)
