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
                          installed weight package where train/offline_weights.py has one
                          (timm/tf_efficientnet_lite0 to lite2, the ``pretrained`` extra),
                          else downloaded on first use into the library's cache (timm: the
                          Hugging Face cache; torchvision: torch hub's)
    a file path           a state dict (.pth, .pt or .safetensors), read with weights_only=True

Input contract (``InputSpec``): a pretrained backbone expects its own input size, the shorter
side images are resized to before the centre crop, interpolation, mean and std (timm's
``pretrained_cfg``, torchvision's ``weights.transforms()``). Training, evaluation, export and
the Encoder all use it (train/config.py resolves it into the run's settings). A backbone
trained from scratch has none: the data decide.
"""

from __future__ import annotations

import fnmatch
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hashsdk.errors import HashsdkError
from hashsdk.train import offline_weights

FAMILIES = ("timm", "torchvision")
LIST_HINT = "`hashsdk-train backbones [PATTERN]` lists the names"


@dataclass(frozen=True)
class InputSpec:
    """What a pretrained backbone was trained on: square ``size`` inputs, cut from images whose
    shorter side was resized to ``resize_size`` with ``interpolation``, normalized with
    ``mean`` and ``std`` (per channel, in [0, 1] pixel units)."""

    size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class Backbone:
    """One row of the table. ``build(in_channels, stem32, pretrained, width)`` returns (module
    mapping (B, C, H, W) to (B, features), number of features); ``width`` is cnn's (the
    others take their own). ``spec(pretrained)`` is the input contract, or None; inputs
    smaller than ``min_size`` pixels are refused."""

    name: str
    min_size: int
    about: str
    build: Callable[[int, bool, str | None, int], tuple[nn.Module, int]]
    spec: Callable[[str | None], InputSpec | None]


# ---- ours ---------------------------------------------------------------------------------------


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


def _cnn(in_channels: int, stem32: bool, pretrained: str | None,
         width: int = 32) -> tuple[nn.Module, int]:
    if pretrained == "imagenet":
        raise HashsdkError("backbone 'cnn' has no ImageNet weights; pass a local weights file "
                           "or choose a timm/ or torchvision/ backbone")
    net = SmallCNN(in_channels, width)
    load_weights(net, pretrained)
    return net, net.out_features


# ---- torchvision --------------------------------------------------------------------------------


def _torchvision(name: str) -> Backbone:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise HashsdkError(f"torchvision has no classification model {name!r}; {LIST_HINT}")

    def weights():
        try:
            return torchvision.models.get_model_weights(name).DEFAULT
        except (ValueError, AttributeError):
            return None

    def build(in_channels: int, stem32: bool, pretrained: str | None,
              width: int = 32) -> tuple[nn.Module, int]:
        if pretrained == "imagenet":
            net = _download(f"torchvision/{name}", torch.hub.get_dir(),
                            lambda: torchvision.models.get_model(name, weights="DEFAULT"))
        else:
            net = torchvision.models.get_model(name)
            load_weights(net, pretrained)
        if stem32 and hasattr(net, "conv1") and hasattr(net, "maxpool"):  # the ResNets
            net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        return _grey_to_rgb(net, in_channels), _drop_last_linear(net, name)

    def spec(pretrained: str | None) -> InputSpec | None:
        if pretrained is None or weights() is None:
            return None
        t = weights().transforms()
        return InputSpec(t.crop_size[0], t.resize_size[0], t.interpolation.value,
                         tuple(t.mean), tuple(t.std))

    min_size = max(weights().meta.get("min_size", (1, 1))) if weights() is not None else 1
    return Backbone(f"torchvision/{name}", max(min_size, 8), f"torchvision's {name}", build,
                    spec)


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
        if pretrained == "imagenet" and offline_weights.available(name):
            net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels)
            offline_weights.load_offline(name, net)
        elif pretrained == "imagenet":
            from huggingface_hub.constants import HF_HUB_CACHE

            net = _download(f"timm/{name}", HF_HUB_CACHE, lambda: timm.create_model(
                name, pretrained=True, num_classes=0, in_chans=in_channels))
        else:
            net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels)
            load_weights(net, pretrained)
        return net, net.num_features

    def spec(pretrained: str | None) -> InputSpec | None:
        if pretrained is None:
            return None
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None:
            return None
        size = cfg.input_size[-1]
        return InputSpec(size, math.floor(size / cfg.crop_pct), cfg.interpolation,
                         tuple(cfg.mean), tuple(cfg.std))

    cfg = timm.models.get_pretrained_cfg(name)
    min_size = (cfg.min_input_size or (3, 16, 16))[-1] if cfg is not None else 16
    return Backbone(f"timm/{name}", min_size, f"timm's {name}", build, spec)


# ---- the table ----------------------------------------------------------------------------------


CNN = Backbone("cnn", 8, "a small residual CNN (about 0.3M parameters) that trains on a CPU",
               _cnn, lambda pretrained: None)
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
                        row.spec)
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
    if family == "timm" and offline_weights.available(model):
        return (f"from ImageNet weights of the pip package "
                f"{offline_weights.PACKAGES[model][2]} (offline)")
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


# ---- weights ------------------------------------------------------------------------------------


def _download(name: str, cache: str, fetch: Callable[[], nn.Module]) -> nn.Module:
    """``fetch()``, which downloads; a failure becomes one line that names the ways out."""
    try:
        return fetch()
    except Exception as exc:  # noqa: BLE001  (no network raises many types)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HashsdkError(
            f"{name}: could not get its ImageNet weights ({reason}). Without network and "
            f"without a cached copy in {cache}, either pass --pretrained PATH (a local "
            ".pth, .pt or .safetensors file of its weights) or run once on a machine with "
            "network, which fills that cache") from None


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: safetensors, or a torch file read with weights_only=True
    (a ``state_dict`` or ``model`` entry inside a checkpoint dict is taken)."""
    if not os.path.exists(path):
        raise HashsdkError(f"pretrained weights file not found: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch and safetensors raise several types)
        raise HashsdkError(f"{path}: not a loadable weights file ({exc})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise HashsdkError(f"{path}: expected a state dict of tensors")
    return state


def load_weights(net: nn.Module, path: str | None) -> None:
    """Loads the tensors of ``path`` that fit ``net`` by name and shape. None fitting is an
    error; a partial fit warns with how many were loaded and which prefixes were missing."""
    if path is None:
        return
    state = read_state_dict(path)
    own = net.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise HashsdkError(f"{path}: none of its {len(state)} tensors fit this backbone "
                           f"(names and shapes differ)")
    net.load_state_dict(fits, strict=False)
    missing = sorted(k for k in own if k not in fits)
    if missing:
        prefixes = sorted({k.rsplit(".", 1)[0] for k in missing})
        warnings.warn(f"{path}: loaded {len(fits)} of the backbone's {len(own)} tensors; "
                      f"missing: {', '.join(prefixes[:8])}"
                      + (f" and {len(prefixes) - 8} more" if len(prefixes) > 8 else ""),
                      stacklevel=2)


class _Repeat(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.channels, -1, -1)


def _grey_to_rgb(net: nn.Module, in_channels: int) -> nn.Module:
    # grey images: repeat the channel, so that pretrained RGB filters still apply
    return net if in_channels == 3 else nn.Sequential(_Repeat(3), net)
