"""Backbones: one table of names, how each is built, and the pixels each expects.

Names (``hashsdk-train backbones [PATTERN]`` lists them):
    cnn                   ours: a small residual CNN (about 0.3M parameters) that trains on a CPU
    timm/<name>           any timm model, ``timm.create_model(name, num_classes=0)``
    torchvision/<name>    any torchvision classification model
                          (``torchvision.models.get_model``), its last Linear layer removed
    resnet18, alexnet, vgg11_bn
                          the names of earlier versions: torchvision's models, built as then, so
                          that their checkpoints still load

Weights (``pretrained``):
    None                  random initialization
    "imagenet"            the library's default pretrained weights of that model: from an
                          installed weight package where train/weights.py has one
                          (timm/tf_efficientnet_lite0 to lite2, the ``pretrained`` extra),
                          else downloaded on first use into the library's cache (timm: the
                          Hugging Face cache; torchvision: torch hub's)
    a file path           a state dict (.pth, .pt or .safetensors), read with weights_only=True

Features: the backbone's pooled output; or, with ``feature_block`` (``truncate_blocks``), the
pooled output of one of the blocks of a timm network built of blocks (EfficientNet, MobileNet):
the later blocks and the head convolution are dropped. An earlier block's features tell one
picture from another better than the head's, which tell classes apart
(benchmarks/results/copydetect-blocks.md). With ``feature_pool`` "gem" (``set_pool``), a
timm network's features are pooled by a generalized mean (``GeMPool``) instead of the average.

Input contract (hashsdk.encoder.contract): a pretrained backbone expects its own input size, the
shorter side images are resized to before the centre crop, interpolation, mean and std (timm's
``pretrained_cfg``, torchvision's ``weights.transforms()``). Training, evaluation, export and
the Encoder all use it (train/config.py resolves it into the run's settings). A backbone
trained from scratch has none: the data decide.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hashsdk.encoder.contract import InputContract
from hashsdk.errors import HashsdkError
from hashsdk.train import weights
from hashsdk.train.cnn import cnn_backbone

LIST_HINT = "`hashsdk-train backbones [PATTERN]` lists the names"


@dataclass(frozen=True)
class Backbone:
    """One row of the table. ``build(in_channels, stem32, pretrained, width)`` returns (module
    mapping (B, C, H, W) to (B, features), number of features); ``width`` is cnn's (the
    others take their own). ``contract(pretrained)`` is its input contract, or None; inputs
    smaller than ``min_size`` pixels are refused."""

    name: str
    min_size: int
    about: str
    build: Callable[[int, bool, str | None, int], tuple[nn.Module, int]]
    contract: Callable[[str | None], InputContract | None]


# ---- torchvision --------------------------------------------------------------------------------


def _torchvision(name: str) -> Backbone:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise HashsdkError(f"torchvision has no classification model {name!r}; {LIST_HINT}")

    def default_weights():
        try:
            return torchvision.models.get_model_weights(name).DEFAULT
        except (ValueError, AttributeError):
            return None

    def build(in_channels: int, stem32: bool, pretrained: str | None,
              width: int = 32) -> tuple[nn.Module, int]:
        if pretrained == "imagenet":
            net = weights.download(f"torchvision/{name}", torch.hub.get_dir(),
                            lambda: torchvision.models.get_model(name, weights="DEFAULT"))
        else:
            net = torchvision.models.get_model(name)
            weights.load_weights(net, pretrained)
        if stem32 and hasattr(net, "conv1") and hasattr(net, "maxpool"):  # the ResNets
            net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        return _grey_to_rgb(net, in_channels), _drop_last_linear(net, name)

    def contract(pretrained: str | None) -> InputContract | None:
        if pretrained is None or default_weights() is None:
            return None
        t = default_weights().transforms()
        return InputContract(t.crop_size[0], 3, t.resize_size[0], t.interpolation.value,
                             tuple(t.mean), tuple(t.std))

    known = default_weights()
    min_size = max(known.meta.get("min_size", (1, 1))) if known is not None else 1
    return Backbone(f"torchvision/{name}", max(min_size, 8), f"torchvision's {name}", build,
                    contract)


def _drop_last_linear(net: nn.Module, name: str) -> int:
    """Replaces the network's last Linear layer (its classifier) by the identity; returns the
    number of features it took."""
    last = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise HashsdkError(f"torchvision/{name}: no Linear classifier to replace")
    path, layer = last[-1]
    parent = net.get_submodule(path.rpartition(".")[0]) if "." in path else net
    setattr(parent, path.rpartition(".")[2], nn.Identity())
    return layer.in_features


# ---- timm ---------------------------------------------------------------------------------------


def _timm(name: str) -> Backbone:
    import timm

    if not timm.is_model(name):
        raise HashsdkError(f"timm has no model {name!r}; {LIST_HINT}")

    def build(in_channels: int, stem32: bool, pretrained: str | None,
              width: int = 32) -> tuple[nn.Module, int]:
        if pretrained == "imagenet" and weights.available(name):
            net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels)
            weights.load_offline(name, net)
        elif pretrained == "imagenet":
            from huggingface_hub.constants import HF_HUB_CACHE

            net = weights.download(f"timm/{name}", HF_HUB_CACHE, lambda: timm.create_model(
                name, pretrained=True, num_classes=0, in_chans=in_channels))
        else:
            net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels)
            weights.load_weights(net, pretrained)
        return net, net.num_features

    def contract(pretrained: str | None) -> InputContract | None:
        if pretrained is None:
            return None
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None:
            return None
        size = cfg.input_size[-1]
        return InputContract(size, 3, math.floor(size / cfg.crop_pct), cfg.interpolation,
                             tuple(cfg.mean), tuple(cfg.std))

    cfg = timm.models.get_pretrained_cfg(name)
    min_size = (cfg.min_input_size or (3, 16, 16))[-1] if cfg is not None else 16
    return Backbone(f"timm/{name}", min_size, f"timm's {name}", build, contract)


# ---- the table ----------------------------------------------------------------------------------


CNN = Backbone("cnn", 8, "a small residual CNN (about 0.3M parameters) that trains on a CPU",
               cnn_backbone, lambda pretrained: None)
# earlier versions' names: torchvision's models, built as then, so their checkpoints load
ALIASES = {"resnet18": "torchvision/resnet18", "alexnet": "torchvision/alexnet",
           "vgg11_bn": "torchvision/vgg11_bn"}
BACKBONES = ("cnn", *ALIASES)  # the names without a family prefix


def lookup_backbone(name: str) -> Backbone:
    """The table's row for ``name``, or an error that says how to list the names."""
    if name == "cnn":
        return CNN
    if name in ALIASES:
        row = _torchvision(name)
        return Backbone(name, row.min_size, f"{row.about} (as {ALIASES[name]})", row.build,
                        row.contract)
    family, _, model = name.partition("/")
    if family == "timm" and model:
        return _timm(model)
    if family == "torchvision" and model:
        return _torchvision(model)
    raise HashsdkError(f"unknown backbone {name!r}: expected cnn, timm/<name> or "
                       f"torchvision/<name>; {LIST_HINT}")


def describe_weights(name: str, pretrained: str | None) -> str:
    """Where a backbone's starting weights come from, in words, for reports."""
    if pretrained is None:
        return "from scratch (random weights)"
    if pretrained != "imagenet":
        return f"from the weights file {pretrained}"
    family, _, model = name.partition("/")
    if family == "timm" and weights.available(model):
        return (f"from ImageNet weights of the pip package "
                f"{weights.PACKAGES[model][2]} (offline)")
    hub = "torch hub" if family == "torchvision" or name in ALIASES else "the Hugging Face hub"
    return f"from ImageNet weights downloaded from {hub}"


def list_backbones(pattern: str = "*") -> list[str]:
    """Every backbone name that matches ``pattern``: shell-style on the whole name or on the
    part after the family prefix; a pattern without wildcards matches as a substring, as
    people type it ("vit" finds timm/vit_base_patch16_224)."""
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    import timm
    import torchvision

    names = list(BACKBONES)
    names += [f"timm/{n}" for n in timm.list_models()]
    names += [f"torchvision/{n}" for n in torchvision.models.list_models(module=torchvision.models)]
    return [n for n in names if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(
        n.partition("/")[2], pattern)]


GEM_POWER = 3.0  # the generalized mean's exponent: between the average (1) and the maximum


class GeMPool(nn.Module):
    """The generalized mean over positions of each channel's positive part: float (B, C, H, W)
    -> float (B, C), (mean of max(x, eps) ** p) ** (1 / p) with p = GEM_POWER. Led by a
    channel's strongest responses, as the maximum is, but by more than one position: a few
    positions that an edit changes (added noise, a line of text) move it less than they move
    the average, and a crop less than it moves the maximum (copydetect-pool.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=1e-6).pow(GEM_POWER).mean((2, 3)).pow(1.0 / GEM_POWER)


# the poolings besides timm's average, by name (train/config.py CHOICES lists "avg" and these;
# a test keeps the two in step)
POOLINGS = {"gem": GeMPool}


def set_pool(net: nn.Module, pool: str) -> nn.Module:
    """``net`` (a timm network, or one behind the grey-image adapter) with its global pooling
    replaced by ``pool`` ("avg": left as it is, or one of POOLINGS); its features keep their
    number."""
    if pool != "avg" and pool not in POOLINGS:
        raise HashsdkError(f"hash.feature_pool: expected one of avg, {', '.join(POOLINGS)}, "
                           f"got {pool!r}")
    inner = net[-1] if isinstance(net, nn.Sequential) else net
    if not hasattr(inner, "global_pool"):
        raise HashsdkError("hash.feature_pool takes a timm backbone (its global pooling is "
                           "replaced); this backbone pools its own way: leave it at avg")
    if pool != "avg":
        inner.global_pool = POOLINGS[pool]()
    return net


def truncate_blocks(net: nn.Module, block: int, in_channels: int) -> tuple[nn.Module, int]:
    """``net`` (a timm network with ``blocks``, ``conv_head`` and ``bn2``: the EfficientNet and
    MobileNet families; or one behind the grey-image adapter) cut after block ``block``, so
    that its pooled output is that block's (average-pooled, (B, channels)); and the number of
    channels. The weights kept are the loaded ones."""
    inner = net[-1] if isinstance(net, nn.Sequential) else net
    if not all(hasattr(inner, a) for a in ("blocks", "conv_head", "bn2")):
        raise HashsdkError("hash.feature_block takes the features of one block of a timm "
                           "network built of blocks (EfficientNet, MobileNet); this backbone "
                           "has none: leave it at -1")
    if not 0 <= block < len(inner.blocks):
        raise HashsdkError(f"hash.feature_block: expected -1 (the whole backbone) or 0 to "
                           f"{len(inner.blocks) - 1} for this backbone, got {block}")
    inner.blocks = inner.blocks[:block + 1]
    inner.conv_head, inner.bn2 = nn.Identity(), nn.Identity()
    was_training = net.training
    with torch.no_grad():
        dim = int(net.eval()(torch.zeros(1, in_channels, 64, 64)).shape[1])
    inner.num_features = dim
    return net.train(was_training), dim


class _Repeat(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.channels, -1, -1)


def _grey_to_rgb(net: nn.Module, in_channels: int) -> nn.Module:
    # grey images: repeat the channel, so that pretrained RGB filters still apply
    return net if in_channels == 3 else nn.Sequential(_Repeat(3), net)
