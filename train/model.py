"""The hashing network: a backbone from one table, then a hash layer (Linear, then tanh).

    model = create_model("resnet18", bits=48, in_channels=3, image_size=32, num_classes=10)
    h = model(x)            # float (B, bits) in (-1, 1); bit i = h[:, i] > 0
    model.model_args        # plain data; HashNet(**model_args) rebuilds the same network
    model, ckpt = HashNet.from_checkpoint("runs/x/hash-fakes/checkpoint.pt")

``BACKBONES`` is the one table of backbones: each name, the smallest input it takes, and its
builder. A local pretrained weights file (a torchvision state dict) is loaded with
weights_only=True. Checkpoints of this network are of kind ``KIND`` (train/checkpoint.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hashsdk.codes import check_bits
from hashsdk.errors import HashsdkError

KIND = "hashsdk.hashnet"  # the checkpoint kind of a HashNet


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


@dataclass(frozen=True)
class Backbone:
    """One row of the table: ``build(in_channels, stem32, pretrained)`` returns (module mapping
    (B, C, H, W) to (B, features), number of features); inputs smaller than ``min_size``
    pixels are refused."""

    min_size: int
    about: str
    build: Callable[[int, bool, str | None], tuple[nn.Module, int]]


def _cnn(in_channels: int, stem32: bool, pretrained: str | None) -> tuple[nn.Module, int]:
    net = SmallCNN(in_channels)
    _load_weights(net, pretrained)
    return net, net.out_features


def _resnet18(in_channels: int, stem32: bool, pretrained: str | None) -> tuple[nn.Module, int]:
    import torchvision

    net = torchvision.models.resnet18()
    _load_weights(net, pretrained)
    if stem32:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    features = net.fc.in_features
    net.fc = nn.Identity()
    return _grey_to_rgb(net, in_channels), features


def _classifier_backbone(name: str) -> Callable[[int, bool, str | None], tuple[nn.Module, int]]:
    """torchvision's ``name`` with the last layer of its ``classifier`` removed."""
    def build(in_channels: int, stem32: bool, pretrained: str | None) -> tuple[nn.Module, int]:
        import torchvision

        net = getattr(torchvision.models, name)()
        _load_weights(net, pretrained)
        features = net.classifier[-1].in_features
        net.classifier[-1] = nn.Identity()
        return _grey_to_rgb(net, in_channels), features
    return build


BACKBONES: dict[str, Backbone] = {
    "cnn": Backbone(8, "a small residual CNN (about 0.3M parameters) that trains on a CPU", _cnn),
    "resnet18": Backbone(8, "torchvision's ResNet-18; stem32: a 3x3 stride-1 stem, no max-pool",
                         _resnet18),
    "alexnet": Backbone(63, "torchvision's AlexNet, for GPUs", _classifier_backbone("alexnet")),
    "vgg11_bn": Backbone(32, "torchvision's VGG-11 with BatchNorm, for GPUs",
                         _classifier_backbone("vgg11_bn")),
}


def lookup_backbone(name: str) -> Backbone:
    """The table's row for ``name``, or an error that lists the names."""
    if name not in BACKBONES:
        raise HashsdkError(f"backbone must be one of {tuple(BACKBONES)}, got {name!r}")
    return BACKBONES[name]


def create_backbone(name: str, in_channels: int = 3, stem32: bool = True,
                    pretrained: str | None = None) -> tuple[nn.Module, int]:
    """Returns (module mapping (B, C, H, W) to (B, features), number of features)."""
    return lookup_backbone(name).build(in_channels, stem32, pretrained)


def _grey_to_rgb(net: nn.Module, in_channels: int) -> nn.Module:
    # grey images: repeat the channel, so that pretrained RGB filters still apply
    return net if in_channels == 3 else nn.Sequential(_Repeat(3), net)


class _Repeat(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.channels, -1, -1)


def _load_weights(net: nn.Module, path: str | None) -> None:
    if path is None:
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HashsdkError(f"pretrained weights file not found: {path}") from None
    except Exception as exc:  # torch raises several types for a corrupt file
        raise HashsdkError(f"{path}: not a loadable weights file ({exc})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    missing, unexpected = net.load_state_dict(state, strict=False)
    loaded = len(net.state_dict()) - len(missing)
    if loaded == 0:
        raise HashsdkError(f"{path}: none of its {len(state)} tensors fit this backbone")


class HashNet(nn.Module):
    """Backbone, then Linear(features, bits), then tanh; an optional classifier on the codes.

    Args mirror ``model_args`` exactly, so a checkpoint rebuilds the model from plain data.
    Input: float (B, C, H, W), normalized with ``mean`` and ``std`` (in [0, 1] pixel units).
    Output: float (B, bits) in (-1, 1).
    """

    def __init__(self, backbone: str, bits: int, in_channels: int = 3, image_size: int = 32,
                 num_classes: int = 0, stem32: bool = True, mean: list[float] | None = None,
                 std: list[float] | None = None, pretrained: str | None = None):
        super().__init__()
        check_bits(bits)
        row = lookup_backbone(backbone)
        if image_size < row.min_size:
            raise HashsdkError(f"backbone {backbone!r} needs images of at least "
                               f"{row.min_size} pixels, got {image_size}")
        self.features, dim = create_backbone(backbone, in_channels, stem32, pretrained)
        self.hash = nn.Linear(dim, bits)
        self.classifier = nn.Linear(bits, num_classes) if num_classes else None
        self.model_args = dict(backbone=backbone, bits=bits, in_channels=in_channels,
                               image_size=image_size, num_classes=num_classes, stem32=stem32,
                               mean=list(mean or [0.5] * in_channels),
                               std=list(std or [0.5] * in_channels))

    def forward(self, x: torch.Tensor, with_logits: bool = False):
        """Codes h (B, bits); with ``with_logits``, (h, classifier logits (B, classes)).

        The classifier runs inside forward so that DistributedDataParallel syncs its
        gradients too.
        """
        h = torch.tanh(self.hash(self.features(x)))
        if with_logits:
            return h, self.classifier(h)
        return h

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features (B, features), for baselines on learned features."""
        return self.features(x)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> tuple[HashNet, dict]:
        """The network of a hashing checkpoint, rebuilt from its ``model_args`` with its
        weights, on the CPU and in eval mode; and the checkpoint (a dict, train/checkpoint.py).
        """
        from hashsdk.train import checkpoint

        ckpt = checkpoint.load(path, KIND)
        model = cls(**ckpt["model_args"])
        model.load_state_dict(ckpt["state_dict"])
        return model.eval(), ckpt


def create_model(name: str, bits: int, **kwargs) -> HashNet:
    """The one factory: ``create_model(backbone, bits, in_channels=, image_size=, ...)``."""
    return HashNet(name, bits, **kwargs)
