"""The hashing network: a backbone (train/backbones.py), then a hash layer (Linear, then tanh).

    model = create_model("timm/resnet18", bits=48, in_channels=3, image_size=32)
    h = model(x)            # float (B, bits) in (-1, 1); bit i = h[:, i] > 0
    model.model_args        # plain data; HashNet(**model_args) rebuilds the same network
    model, ckpt = HashNet.from_checkpoint("runs/x/hash-fakes/checkpoint.pt")

``model_args`` also holds the input contract the exported model carries (image_size,
resize_size, interpolation, mean, std). Checkpoints of this network are of kind ``KIND``
(train/checkpoint.py).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from hashsdk.codes import check_bits
from hashsdk.errors import HashsdkError
from hashsdk.train.backbones import ALIASES, lookup_backbone

KIND = "hashsdk.hashnet"  # the checkpoint kind of a HashNet


class HashNet(nn.Module):
    """Backbone, then Linear(features, bits), then tanh; an optional classifier on the codes.

    Args mirror ``model_args`` exactly, so a checkpoint rebuilds the model from plain data.
    Input: float (B, C, H, W), normalized with ``mean`` and ``std`` (in [0, 1] pixel units).
    Output: float (B, bits) in (-1, 1).
    """

    def __init__(self, backbone: str, bits: int, in_channels: int = 3, image_size: int = 32,
                 num_classes: int = 0, stem32: bool = True, mean: list[float] | None = None,
                 std: list[float] | None = None, pretrained: str | None = None,
                 resize_size: int | None = None, interpolation: str = "bilinear",
                 width: int = 32):
        super().__init__()
        check_bits(bits)
        row = lookup_backbone(backbone)
        if image_size < row.min_size:
            raise HashsdkError(f"backbone {backbone!r} needs images of at least "
                               f"{row.min_size} pixels, got {image_size}")
        # stem32 (a 3x3 stride-1 stem, no max-pool, on torchvision's ResNets) is for small
        # inputs; the resnet18 of earlier versions took it at any size, and still does
        small_stem = stem32 and (backbone in ALIASES or image_size <= 64)
        if width != 32 and backbone != "cnn":
            raise HashsdkError(f"width sets cnn's channels; {backbone!r} has its own")
        self.features, dim = row.build(in_channels, small_stem, pretrained, width)
        self.hash = nn.Linear(dim, bits)
        self.classifier = nn.Linear(bits, num_classes) if num_classes else None
        # pretrained is not kept: a rebuilt network takes its weights from the checkpoint
        self.model_args = dict(backbone=backbone, bits=bits, in_channels=in_channels,
                               image_size=image_size, num_classes=num_classes, stem32=stem32,
                               mean=list(mean or [0.5] * in_channels),
                               std=list(std or [0.5] * in_channels),
                               resize_size=resize_size or image_size,
                               interpolation=interpolation, width=width)

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
