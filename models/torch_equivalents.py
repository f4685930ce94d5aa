"""PyTorch equivalents of the networks in ``models/``, with the same parameter names, for parity checks
(the tests, ``python -m minidl.gradcheck --all`` and the benchmarks).

``torch_models(torch)`` builds the classes from the ``torch`` module it is given (so importing this file
needs no PyTorch) and returns them in a namespace. They are written the ordinary PyTorch way,
independently of the minidl models, with autograd doing the backward.
"""
import functools
import types


@functools.lru_cache(maxsize=None)
def torch_models(torch):
    nn = torch.nn

    class ConvBlock(nn.Module):
        def __init__(self, in_channels, out_channels, kernel_size=3, batch_norm=False, relu=True):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
            self.bn = nn.BatchNorm2d(out_channels) if batch_norm else None
            self.relu = nn.ReLU() if relu else None

        def forward(self, x):
            x = self.conv(x)
            x = self.bn(x) if self.bn is not None else x
            return self.relu(x) if self.relu is not None else x

    class VGGBlock(nn.Module):
        def __init__(self, in_channels, out_channels, depth, batch_norm=False, kernel_size=3):
            super().__init__()
            self.convs = nn.Sequential(*[ConvBlock(in_channels if k == 0 else out_channels, out_channels,
                                                   kernel_size, batch_norm) for k in range(depth)])
            self.pool = nn.MaxPool2d(2, 2, return_indices=True)

        def forward(self, x):
            features = self.convs(x)
            pooled, indices = self.pool(features)
            return pooled, indices, features.shape[2:]

    def vgg_blocks(in_channels, widths, depths, batch_norm=False, kernel_size=3):
        inputs = [in_channels] + list(widths[:-1])
        return nn.ModuleList([VGGBlock(i, o, d, batch_norm, kernel_size) for i, o, d in zip(inputs, widths, depths)])

    class UnpoolDecoder(nn.Module):
        def __init__(self, blocks):
            super().__init__()
            self.unpool = nn.MaxUnpool2d(2, 2)
            self.convs = nn.Sequential(*blocks)

        def forward(self, x, indices, size):
            return self.convs(self.unpool(x, indices, output_size=size))

    class SegNet(nn.Module):
        def __init__(self, in_channels, num_classes, widths, depths):
            super().__init__()
            for k, block in enumerate(vgg_blocks(in_channels, widths, depths, batch_norm=True), start=1):
                setattr(self, f"enc{k}", block)
            outputs = [num_classes] + list(widths[:-1])
            for k in range(5, 0, -1):
                width, depth, last = widths[k - 1], depths[k - 1], k == 1
                blocks = [ConvBlock(width, width, 3, True) for _ in range(depth - 1)]
                blocks.append(ConvBlock(width, outputs[k - 1], 3, batch_norm=not last, relu=not last))
                setattr(self, f"dec{k}", UnpoolDecoder(blocks))

        def forward(self, x):
            encoded = []
            for k in range(1, 6):
                x, indices, size = getattr(self, f"enc{k}")(x)
                encoded.append((indices, size))
            for k in range(5, 0, -1):
                x = getattr(self, f"dec{k}")(x, *encoded[k - 1])
            return x

    class SegNetBasic(nn.Module):
        def __init__(self, in_channels, num_classes, width):
            super().__init__()
            for k, block in enumerate(vgg_blocks(in_channels, [width] * 4, [1] * 4, True, 7), start=1):
                setattr(self, f"enc{k}", block)
            for k in range(4, 0, -1):
                setattr(self, f"dec{k}", UnpoolDecoder([ConvBlock(width, width, 7, batch_norm=True, relu=False)]))
            self.classifier = nn.Conv2d(width, num_classes, 1)

        def forward(self, x):
            encoded = []
            for k in range(1, 5):
                x, indices, size = getattr(self, f"enc{k}")(x)
                encoded.append((indices, size))
            for k in range(4, 0, -1):
                x = getattr(self, f"dec{k}")(x, *encoded[k - 1])
            return self.classifier(x)

    class UpsampleConv(nn.Module):
        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x, indices, size):
            return self.relu(self.conv(self.up(x)))

    class ConvUnpool(nn.Module):
        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            self.relu = nn.ReLU()
            self.unpool = nn.MaxUnpool2d(2, 2)

        def forward(self, x, indices, size):
            return self.unpool(self.relu(self.conv(x)), indices, output_size=size)

    class SegNetSmall(nn.Module):
        def __init__(self, in_channels, num_classes, init_features, upsample):
            super().__init__()
            widths = [init_features * 2 ** k for k in range(5)]
            inputs = [in_channels] + widths[:-1]
            for k in range(1, 6):
                setattr(self, f"enc{k}", ConvBlock(inputs[k - 1], widths[k - 1]))
            self.pool = nn.MaxPool2d(2, 2, return_indices=True)
            decoder = UpsampleConv if upsample == "bilinear" else ConvUnpool
            for k in range(4, 0, -1):
                setattr(self, f"dec{k}", decoder(widths[k], widths[k - 1]))
            self.out = nn.Conv2d(init_features, num_classes, 3, padding=1)

        def forward(self, x):
            skips = []
            for k in range(1, 5):
                x = getattr(self, f"enc{k}")(x)
                size = x.shape[2:]
                x, indices = self.pool(x)
                skips.append((indices, size))
            x = self.enc5(x)
            for k in range(4, 0, -1):
                x = getattr(self, f"dec{k}")(x, *skips[k - 1])
            return self.out(x)

    def deconv(in_channels, out_channels):
        return nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)

    class FCN(nn.Module):
        def __init__(self, in_channels, num_classes, widths):
            super().__init__()
            for k, block in enumerate(vgg_blocks(in_channels, widths, [2] * 5), start=1):
                setattr(self, f"block{k}", block)
            chain = [widths[4], widths[3], widths[2], widths[1], widths[0], widths[0] // 2]
            for k in range(1, 6):
                setattr(self, f"deconv{k}", deconv(chain[k - 1], chain[k]))
                setattr(self, f"relu{k}", nn.ReLU())
                setattr(self, f"bn{k}", nn.BatchNorm2d(chain[k]))
            self.classifier = nn.Conv2d(chain[5], num_classes, 1)

        def forward(self, x):
            pools = []
            for k in range(1, 6):
                x = getattr(self, f"block{k}")(x)[0]
                pools.append(x)
            for k in range(1, 6):
                x = getattr(self, f"bn{k}")(getattr(self, f"relu{k}")(getattr(self, f"deconv{k}")(x)))
                if k < 5:
                    x = x + pools[4 - k]
            return self.classifier(x)

    def upscore(channels, scale):
        return nn.ConvTranspose2d(channels, channels, 2 * scale, stride=scale, padding=scale // 2, bias=False)

    class FCNSkip(nn.Module):
        """FCN32s / 16s / 8s by ``stride``."""

        def __init__(self, stride, in_channels, num_classes, fc_channels, widths):
            super().__init__()
            self.stride = stride
            for k, block in enumerate(vgg_blocks(in_channels, widths, [2, 2, 3, 3, 3]), start=1):
                setattr(self, f"block{k}", block)
            self.fc6, self.relu6 = nn.Conv2d(widths[4], fc_channels, 7, padding=3), nn.ReLU()
            self.fc7, self.relu7 = nn.Conv2d(fc_channels, fc_channels, 1), nn.ReLU()
            self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
            if stride == 32:
                self.upscore = upscore(num_classes, 32)
            else:
                self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
                self.upscore2 = upscore(num_classes, 2)
            if stride == 16:
                self.upscore16 = upscore(num_classes, 16)
            if stride == 8:
                self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
                self.upscore_pool4 = upscore(num_classes, 2)
                self.upscore8 = upscore(num_classes, 8)

        def forward(self, x):
            pools = []
            for k in range(1, 6):
                x = getattr(self, f"block{k}")(x)[0]
                pools.append(x)
            score = self.score_fr(self.relu7(self.fc7(self.relu6(self.fc6(x)))))
            if self.stride == 32:
                return self.upscore(score)
            score = self.upscore2(score) + self.score_pool4(pools[3])
            if self.stride == 16:
                return self.upscore16(score)
            score = self.upscore_pool4(score) + self.score_pool3(pools[2])
            return self.upscore8(score)

    return types.SimpleNamespace(SegNet=SegNet, SegNetBasic=SegNetBasic, SegNetSmall=SegNetSmall, FCN=FCN,
                                 FCNSkip=FCNSkip, ConvBlock=ConvBlock)
