"""The product-photo classifier used by the INT8 benchmark (--arch benchmarks/photo_cnn.py:photo_resnet)."""

import torch
from torch import nn


def _conv_bn(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout))


class Residual(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = _conv_bn(cin, cout, stride)
        self.b = _conv_bn(cout, cout, 1)
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return torch.relu(self.skip(x) + self.b(torch.relu(self.a(x))))


class PhotoResNet(nn.Module):
    """ResNet-style: stem, four stages of residual blocks (32-64-128-256 channels, two blocks each),
    linear head."""

    def __init__(self, num_classes=20, widths=(32, 64, 128, 256), blocks=(2, 2, 2, 2)):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, widths[0], 2), nn.ReLU())
        layers, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            layers += [Residual(cin, w, 1 if i == 0 else 2)] + [Residual(w, w, 1) for _ in range(n - 1)]
            cin = w
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def photo_resnet(num_classes=20, widths=(32, 64, 128, 256), blocks=(2, 2, 2, 2)):
    return PhotoResNet(num_classes, tuple(widths), tuple(blocks))
