"""SegNetSmall: a compact five-conv encoder-decoder for 1-channel masks (784,385 parameters by default)."""
from minidl.functional import checks
from minidl.nn import Conv2d, MaxPool2d, MaxUnpool2d, Module, ReLU, Upsample

from .vgg import ConvBlock, check_at_least, check_divisible

UPSAMPLE_MODES = ("bilinear", "unpool")


class UpsampleConvBlock(Module):
    """Bilinear x2 (align_corners=True) -> conv 3x3 -> ReLU: (N, C_in, h, w) -> (N, C_out, 2h, 2w).

    ``indices`` and ``output_size`` are accepted so both decoder kinds are called alike; bilinear
    upsampling needs neither (which is why this mode needs H and W divisible by 16).
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.up = Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = Conv2d(in_channels, out_channels, 3, padding=1)
        self.relu = ReLU(inplace=True)  # on the conv's fresh output

    def forward(self, x, indices, output_size):
        return self.relu(self.conv(self.up(x)))

    def backward(self, dy):
        """dy (N, C_out, 2h, 2w) -> dx (N, C_in, h, w): the forward's three steps undone in reverse order."""
        # BEGIN SOLUTION
        return self.up.backward(self.conv.backward(self.relu.backward(dy)))
        # END SOLUTION


class ConvUnpoolBlock(Module):
    """conv 3x3 -> ReLU -> MaxUnpool2d(2, 2) with an encoder pool's indices.

    forward: x (N, C_in, h, w), indices (N, C_out, h, w), output_size (H, W) -> (N, C_out, H, W).
    backward: dy (N, C_out, H, W) -> dx (N, C_in, h, w).
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, 3, padding=1)
        self.relu = ReLU(inplace=True)  # on the conv's fresh output
        self.unpool = MaxUnpool2d(2, 2)

    def forward(self, x, indices, output_size):
        return self.unpool(self.relu(self.conv(x)), indices, output_size=output_size)

    def backward(self, dy):
        """dy (N, C_out, H, W) -> dx (N, C_in, h, w): the forward's three steps undone in reverse order."""
        # BEGIN SOLUTION
        return self.conv.backward(self.relu.backward(self.unpool.backward(dy)))
        # END SOLUTION


class SegNetSmall(Module):
    """Five 3x3 conv+ReLU encoders (F, 2F, 4F, 8F, 16F), four 2x2 pools, four decoder blocks, a 3x3 output conv.

    x (N, in_channels, H, W) -> logits (N, num_classes, H, W). F = ``init_features``.
    ``upsample="bilinear"``: decoder block = bilinear x2 -> conv -> ReLU; H and W must be multiples of 16.
    ``upsample="unpool"``: decoder block = conv -> ReLU -> max-unpool with the matching pool's indices and
    that pool's input size, so any H, W >= 16 work (odd ones too).
    Parameters are named ``enc1.conv.weight`` ... ``dec4.conv.weight`` ... ``out.weight``.
    """

    def __init__(self, in_channels=1, num_classes=1, init_features=16, upsample="bilinear"):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"SegNetSmall: upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.in_channels, self.num_classes, self.upsample = in_channels, num_classes, upsample
        f = init_features
        self.enc1 = ConvBlock(in_channels, f)
        self.pool1 = MaxPool2d(2, 2, return_indices=True)
        self.enc2 = ConvBlock(f, 2 * f)
        self.pool2 = MaxPool2d(2, 2, return_indices=True)
        self.enc3 = ConvBlock(2 * f, 4 * f)
        self.pool3 = MaxPool2d(2, 2, return_indices=True)
        self.enc4 = ConvBlock(4 * f, 8 * f)
        self.pool4 = MaxPool2d(2, 2, return_indices=True)
        self.enc5 = ConvBlock(8 * f, 16 * f)
        decoder_block = UpsampleConvBlock if upsample == "bilinear" else ConvUnpoolBlock
        self.dec4 = decoder_block(16 * f, 8 * f)
        self.dec3 = decoder_block(8 * f, 4 * f)
        self.dec2 = decoder_block(4 * f, 2 * f)
        self.dec1 = decoder_block(2 * f, f)
        self.out = Conv2d(f, num_classes, 3, padding=1)

    def extra_repr(self):
        return f"upsample={self.upsample!r}"

    def forward(self, x):
        checks.check_input_4d("SegNetSmall", x, self.in_channels)
        if self.upsample == "bilinear":
            check_divisible("SegNetSmall", x, 16)
        check_at_least("SegNetSmall", x, 16)
        e1 = self.enc1(x)                           # (N, F, H, W)
        p1, i1 = self.pool1(e1)                     # (N, F, H/2, W/2)
        e2 = self.enc2(p1)                          # (N, 2F, H/2, W/2)
        p2, i2 = self.pool2(e2)                     # (N, 2F, H/4, W/4)
        e3 = self.enc3(p2)                          # (N, 4F, H/4, W/4)
        p3, i3 = self.pool3(e3)                     # (N, 4F, H/8, W/8)
        e4 = self.enc4(p3)                          # (N, 8F, H/8, W/8)
        p4, i4 = self.pool4(e4)                     # (N, 8F, H/16, W/16)
        e5 = self.enc5(p4)                          # (N, 16F, H/16, W/16)
        d4 = self.dec4(e5, i4, e4.shape[2:])        # (N, 8F, H/8, W/8)
        d3 = self.dec3(d4, i3, e3.shape[2:])        # (N, 4F, H/4, W/4)
        d2 = self.dec2(d3, i2, e2.shape[2:])        # (N, 2F, H/2, W/2)
        d1 = self.dec1(d2, i1, e1.shape[2:])        # (N, F, H, W)
        return self.out(d1)                         # (N, num_classes, H, W)

    def backward(self, dlogits):
        """dlogits (N, num_classes, H, W) -> dx (N, in_channels, H, W); every parameter's gradient is added to
        its ``.grad``. Each module's backward in the reverse order of forward; the pools' indices are only
        used by the decoders' unpooling, so no gradient flows along them."""
        # BEGIN SOLUTION
        d_d1 = self.out.backward(dlogits)
        d_d2 = self.dec1.backward(d_d1)
        d_d3 = self.dec2.backward(d_d2)
        d_d4 = self.dec3.backward(d_d3)
        d_e5 = self.dec4.backward(d_d4)
        d_p4 = self.enc5.backward(d_e5)
        d_e4 = self.pool4.backward(d_p4)
        d_p3 = self.enc4.backward(d_e4)
        d_e3 = self.pool3.backward(d_p3)
        d_p2 = self.enc3.backward(d_e3)
        d_e2 = self.pool2.backward(d_p2)
        d_p1 = self.enc2.backward(d_e2)
        d_e1 = self.pool1.backward(d_p1)
        return self.enc1.backward(d_e1)
        # END SOLUTION
