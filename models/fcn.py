"""FCN: a VGG-style encoder and a decoder of five stride-2 transposed convs with skip sums (13,334,050 parameters).

The popular "FCNs" variant of Long et al.'s idea: each transposed conv doubles
H and W and is followed by ReLU then BatchNorm2d, and the outputs of pool4,
pool3, pool2 and pool1 are added after the first four.
"""
from minidl.functional import checks
from minidl.nn import BatchNorm2d, Conv2d, ConvTranspose2d, Module, ReLU

from .vgg import VGG16_WIDTHS, check_divisible, vgg_blocks


def _deconv(in_channels, out_channels):
    """ConvTranspose2d(k=3, s=2, p=1, output_padding=1): (N, C_in, h, w) -> (N, C_out, 2h, 2w)."""
    return ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)


class FCN(Module):
    """x (N, in_channels, H, W) -> logits (N, num_classes, H, W); H and W multiples of 32.

    Encoder: five blocks of two 3x3 conv + ReLU and a 2x2 max-pool (widths 64, 128, 256, 512, 512).
    Decoder: deconv k -> ReLU -> BatchNorm2d for k = 1..5 (512->512, 512->256, 256->128, 128->64, 64->32),
    plus pool4, pool3, pool2, pool1 after the first four; then a 1x1 classifier (32 -> num_classes).
    ``widths`` (keyword-only) shrinks it for tests; the decoder ends at widths[0] // 2 channels.
    """

    def __init__(self, in_channels=3, num_classes=2, *, widths=VGG16_WIDTHS):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"FCN: widths needs 5 entries, got {widths}")
        self.in_channels, self.num_classes = in_channels, num_classes
        w1, w2, w3, w4, w5 = widths
        self.block1, self.block2, self.block3, self.block4, self.block5 = vgg_blocks(in_channels, widths, (2,) * 5)
        self.deconv1, self.relu1, self.bn1 = _deconv(w5, w4), ReLU(inplace=True), BatchNorm2d(w4)
        self.deconv2, self.relu2, self.bn2 = _deconv(w4, w3), ReLU(inplace=True), BatchNorm2d(w3)
        self.deconv3, self.relu3, self.bn3 = _deconv(w3, w2), ReLU(inplace=True), BatchNorm2d(w2)
        self.deconv4, self.relu4, self.bn4 = _deconv(w2, w1), ReLU(inplace=True), BatchNorm2d(w1)
        self.deconv5, self.relu5, self.bn5 = _deconv(w1, w1 // 2), ReLU(inplace=True), BatchNorm2d(w1 // 2)
        self.classifier = Conv2d(w1 // 2, num_classes, 1)

    def forward(self, x):
        checks.check_input_4d("FCN", x, self.in_channels)
        check_divisible("FCN", x, 32)
        pool1 = self.block1(x).output                                   # (N, 64, H/2, W/2)
        pool2 = self.block2(pool1).output                               # (N, 128, H/4, W/4)
        pool3 = self.block3(pool2).output                               # (N, 256, H/8, W/8)
        pool4 = self.block4(pool3).output                               # (N, 512, H/16, W/16)
        pool5 = self.block5(pool4).output                               # (N, 512, H/32, W/32)
        fuse4 = self.bn1(self.relu1(self.deconv1(pool5))) + pool4       # (N, 512, H/16, W/16)
        fuse3 = self.bn2(self.relu2(self.deconv2(fuse4))) + pool3       # (N, 256, H/8, W/8)
        fuse2 = self.bn3(self.relu3(self.deconv3(fuse3))) + pool2       # (N, 128, H/4, W/4)
        fuse1 = self.bn4(self.relu4(self.deconv4(fuse2))) + pool1       # (N, 64, H/2, W/2)
        features = self.bn5(self.relu5(self.deconv5(fuse1)))            # (N, 32, H, W)
        return self.classifier(features)                                # (N, num_classes, H, W)

    def backward(self, dlogits):
        d_features = self.classifier.backward(dlogits)
        # fuseK = decoder(...) + poolK: d_fuseK flows into the decoder branch and, unchanged, into poolK
        d_fuse1 = self.deconv5.backward(self.relu5.backward(self.bn5.backward(d_features)))
        d_fuse2 = self.deconv4.backward(self.relu4.backward(self.bn4.backward(d_fuse1)))
        d_fuse3 = self.deconv3.backward(self.relu3.backward(self.bn3.backward(d_fuse2)))
        d_fuse4 = self.deconv2.backward(self.relu2.backward(self.bn2.backward(d_fuse3)))
        d_pool5 = self.deconv1.backward(self.relu1.backward(self.bn1.backward(d_fuse4)))
        d_pool4 = d_fuse4 + self.block5.backward(d_pool5)
        d_pool3 = d_fuse3 + self.block4.backward(d_pool4)
        d_pool2 = d_fuse2 + self.block3.backward(d_pool3)
        d_pool1 = d_fuse1 + self.block2.backward(d_pool2)
        return self.block1.backward(d_pool1)
