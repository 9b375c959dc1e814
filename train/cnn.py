"""``cnn``: our small residual CNN (about 0.3M parameters), which trains on a CPU from scratch.

Built through the backbone table (train/backbones.py) as ``create_model("cnn", bits)``;
``width`` sets the channels of its first stage (then 2x and 4x).
"""

from __future__ import annotations

import torch
from torch import nn

from hashsdk.errors import HashsdkError
from hashsdk.train.weights import load_weights


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class SmallCNN(nn.Module):
    """A ResNet-like CNN for 32x32 inputs: widths 32, 64, 128, one block each stage."""

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(_Block(width, width, 1), _Block(width, 2 * width, 2),
                                    _Block(2 * width, 4 * width, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


def cnn_backbone(in_channels: int, stem32: bool, pretrained: str | None,
                 width: int = 32) -> tuple[nn.Module, int]:
    if pretrained == "imagenet":
        raise HashsdkError("backbone 'cnn' has no ImageNet weights; pass a local weights file "
                           "or choose a timm/ or torchvision/ backbone")
    net = SmallCNN(in_channels, width)
    load_weights(net, pretrained)
    return net, net.out_features
