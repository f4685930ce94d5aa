"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, arXiv 1411.4038) on a VGG16 encoder.

Differences from the paper, so that any H, W that are multiples of 32 give
logits of exactly H x W with no crop: fc6 is a 7x7 conv with padding 3 (the
paper pads the input by 100 pixels and crops the upsampled scores), and the
upsampling transposed convs use padding (32s: k=64, s=32, p=16; upscore2 and
upscore_pool4: k=4, s=2, p=1; 16s: k=32, s=16, p=8; 8s: k=16, s=8, p=4). The
dropout after fc6 and fc7 is left out (no dropout layer in minidl), so training
and evaluation compute the same function. Other input sizes raise ValueError.
The upscore layers have no bias and start as bilinear interpolation.
"""
import numpy

from minidl.functional import checks
from minidl.nn import Conv2d, ConvTranspose2d, Module, ReLU

from .vgg import VGG16_DEPTHS, VGG16_WIDTHS, check_divisible, vgg_blocks


def bilinear_kernel(channels, kernel_size):
    """ConvTranspose2d weight (channels, channels, k, k) that upsamples each channel bilinearly (float32).

    w[c, c, i, j] = (1 - |i - center| / f) * (1 - |j - center| / f), f = ceil(k / 2), zero off the diagonal.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - numpy.abs(numpy.arange(kernel_size) - center) / factor
    weight = numpy.zeros((channels, channels, kernel_size, kernel_size), dtype=numpy.float32)
    weight[numpy.arange(channels), numpy.arange(channels)] = numpy.outer(taps, taps)
    return weight


def _upscore(channels, scale):
    """Bias-free ConvTranspose2d(k=2s, s, p=s/2), bilinear at start: (N, C, h, w) -> (N, C, s*h, s*w)."""
    layer = ConvTranspose2d(channels, channels, 2 * scale, stride=scale, padding=scale // 2, bias=False)
    layer.weight.data[...] = bilinear_kernel(channels, 2 * scale)
    return layer


class _VGG16Scorer(Module):
    """VGG16 encoder (13 conv + ReLU, 5 pools), fc6 (7x7 conv) + ReLU, fc7 (1x1) + ReLU, score_fr (1x1).

    ``encode``: x (N, C, H, W) -> pool3 (N, w3, H/8, W/8), pool4 (N, w4, H/16, W/16),
    score (N, num_classes, H/32, W/32); ``encode_backward`` is its adjoint.
    """

    def __init__(self, in_channels, num_classes, fc_channels, widths):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.block1, self.block2, self.block3, self.block4, self.block5 = vgg_blocks(in_channels, widths,
                                                                                     VGG16_DEPTHS)
        self.fc6, self.relu6 = Conv2d(widths[4], fc_channels, 7, padding=3), ReLU(inplace=True)
        self.fc7, self.relu7 = Conv2d(fc_channels, fc_channels, 1), ReLU(inplace=True)
        self.score_fr = Conv2d(fc_channels, num_classes, 1)

    def encode(self, x):
        model = type(self).__name__
        checks.check_input_4d(model, x, self.in_channels)
        check_divisible(model, x, 32)
        pool1 = self.block1(x).output                   # (N, w1, H/2, W/2)
        pool2 = self.block2(pool1).output               # (N, w2, H/4, W/4)
        pool3 = self.block3(pool2).output               # (N, w3, H/8, W/8)
        pool4 = self.block4(pool3).output               # (N, w4, H/16, W/16)
        pool5 = self.block5(pool4).output               # (N, w5, H/32, W/32)
        fc6 = self.relu6(self.fc6(pool5))               # (N, fc, H/32, W/32)
        fc7 = self.relu7(self.fc7(fc6))                 # (N, fc, H/32, W/32)
        return pool3, pool4, self.score_fr(fc7)         # score (N, num_classes, H/32, W/32)

    def encode_backward(self, d_score, d_pool4_skip, d_pool3_skip):
        """Gradients of score, and of the skip branches' uses of pool4 and pool3 (0 where unused) -> dx."""
        d_fc7 = self.score_fr.backward(d_score)
        d_fc6 = self.fc7.backward(self.relu7.backward(d_fc7))
        d_pool5 = self.fc6.backward(self.relu6.backward(d_fc6))
        d_pool4 = d_pool4_skip + self.block5.backward(d_pool5)
        d_pool3 = d_pool3_skip + self.block4.backward(d_pool4)
        d_pool2 = self.block3.backward(d_pool3)
        d_pool1 = self.block2.backward(d_pool2)
        return self.block1.backward(d_pool1)


class FCN32s(_VGG16Scorer):
    """score (H/32) -> upscore x32 (k=64, s=32, p=16) -> logits (N, num_classes, H, W)."""

    def __init__(self, in_channels=3, num_classes=21, fc_channels=4096, *, widths=VGG16_WIDTHS):
        super().__init__(in_channels, num_classes, fc_channels, widths)
        self.upscore = _upscore(num_classes, 32)

    def forward(self, x):
        _, _, score = self.encode(x)                    # (N, K, H/32, W/32)
        return self.upscore(score)                      # (N, K, H, W)

    def backward(self, dlogits):
        d_score = self.upscore.backward(dlogits)
        return self.encode_backward(d_score, 0, 0)


class FCN16s(_VGG16Scorer):
    """upscore2(score) + score_pool4(pool4) at H/16 -> upscore16 (k=32, s=16, p=8) -> logits (N, K, H, W)."""

    def __init__(self, in_channels=3, num_classes=21, fc_channels=4096, *, widths=VGG16_WIDTHS):
        super().__init__(in_channels, num_classes, fc_channels, widths)
        self.score_pool4 = Conv2d(widths[3], num_classes, 1)
        self.upscore2 = _upscore(num_classes, 2)
        self.upscore16 = _upscore(num_classes, 16)

    def forward(self, x):
        _, pool4, score = self.encode(x)                                # score (N, K, H/32, W/32)
        fuse_pool4 = self.upscore2(score) + self.score_pool4(pool4)     # (N, K, H/16, W/16)
        return self.upscore16(fuse_pool4)                               # (N, K, H, W)

    def backward(self, dlogits):
        d_fuse_pool4 = self.upscore16.backward(dlogits)
        # fuse_pool4 = upscore2(score) + score_pool4(pool4): both branches receive d_fuse_pool4
        d_pool4_skip = self.score_pool4.backward(d_fuse_pool4)
        d_score = self.upscore2.backward(d_fuse_pool4)
        return self.encode_backward(d_score, d_pool4_skip, 0)


class FCN8s(_VGG16Scorer):
    """As FCN16s, then upscore_pool4 (x2) + score_pool3(pool3) at H/8 -> upscore8 (k=16, s=8, p=4) -> logits."""

    def __init__(self, in_channels=3, num_classes=21, fc_channels=4096, *, widths=VGG16_WIDTHS):
        super().__init__(in_channels, num_classes, fc_channels, widths)
        self.score_pool4 = Conv2d(widths[3], num_classes, 1)
        self.score_pool3 = Conv2d(widths[2], num_classes, 1)
        self.upscore2 = _upscore(num_classes, 2)
        self.upscore_pool4 = _upscore(num_classes, 2)
        self.upscore8 = _upscore(num_classes, 8)

    def forward(self, x):
        pool3, pool4, score = self.encode(x)                                        # score (N, K, H/32, W/32)
        fuse_pool4 = self.upscore2(score) + self.score_pool4(pool4)                 # (N, K, H/16, W/16)
        fuse_pool3 = self.upscore_pool4(fuse_pool4) + self.score_pool3(pool3)       # (N, K, H/8, W/8)
        return self.upscore8(fuse_pool3)                                            # (N, K, H, W)

    def backward(self, dlogits):
        d_fuse_pool3 = self.upscore8.backward(dlogits)
        # fuse_pool3 = upscore_pool4(fuse_pool4) + score_pool3(pool3): both branches receive d_fuse_pool3
        d_pool3_skip = self.score_pool3.backward(d_fuse_pool3)
        d_fuse_pool4 = self.upscore_pool4.backward(d_fuse_pool3)
        # fuse_pool4 = upscore2(score) + score_pool4(pool4): both branches receive d_fuse_pool4
        d_pool4_skip = self.score_pool4.backward(d_fuse_pool4)
        d_score = self.upscore2.backward(d_fuse_pool4)
        return self.encode_backward(d_score, d_pool4_skip, d_pool3_skip)
