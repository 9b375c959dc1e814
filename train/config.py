"""Configuration as plain typed data: one dataclass per component, and unknown keys raise.

A run's config comes from defaults, then a TOML file (``--config run.toml``, one table per
component: ``[data]``, ``[gan]``, ``[hash]``), then command-line flags. The resolved config is
written into the run directory as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashsdk.codes import check_bits
from hashsdk.errors import HashsdkError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class DataConfig:
    """Where images come from, and the retrieval protocol.

    dataset: "cifar10" (the JPEG archive or ImageFolder tree, or torchvision's pickle batches),
        "fashion-mnist" (IDX files), "imagefolder" (any class-per-folder tree) or "filelist"
        (DeepHash-pytorch's multi-label ``path l1 l2 ...`` lists).
    root: the archive, folder or file list; None looks in the usual places (see data.py).
    download: let torchvision download cifar10 or fashion-mnist where the files are missing.
    queries_per_class, train_per_class: the protocol; 100 and 500 for CIFAR-10.
    database: "all-but-queries" (59,000 for CIFAR-10, training images included) or
        "exclude-train" (DeepHash-pytorch's variant, the training images left out).
    image_size: side of the square images the network sees (28 pads to 32).
    """

    dataset: str = "cifar10"
    root: str | None = None
    download: bool = False
    queries_per_class: int = 100
    train_per_class: int = 500
    database: str = "all-but-queries"
    image_size: int = 32
    seed: int = 0
    cache_dir: str | None = None  # None: $HASHSDK_CACHE, else the user cache (~/.cache/hashsdk)


@dataclass
class GanConfig:
    """Stage 1: a DCGAN on the training split only (Radford et al.)."""

    steps: int = 5000
    batch_size: int = 64
    z_dim: int = 100
    width: int = 64           # channels of the generator's last hidden layer
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    label_smoothing: float = 0.1  # one-sided: real targets become 1 - this (Salimans et al.)
    sample_every: int = 500
    num_fakes: int | None = None  # None: the training split's size
    seed: int = 0
    device: str = "auto"


@dataclass
class HashConfig:
    """Stage 2: the hashing network, trained with a real-image loss plus the fake-image loss."""

    backbone: str = "cnn"
    bits: int = 48
    pretrained: str | None = None  # a local weights file for the backbone
    stem32: bool = True            # resnet18: 3x3 stride-1 stem, no max-pool, for 32x32 inputs
    loss: str = "pairwise"         # "pairwise" (DPSH), "triplet" (DNNH) or "ce"
    quantization: float = 0.1      # weight of mean((h - sign(h))^2)
    margin: float = 8.0            # triplet margin, in relaxed Hamming units (h in [-1, 1])
    pairwise_memory: bool = False  # DPSH against the codes of the whole training set
    fakes: str | None = None       # a fakes.npz from stage 1; None trains without fakes
    fake_loss: str = "entropy"     # "entropy" (KL(p || 1/2)) or "uniform-ce" (KL(1/2 || p))
    lam: float = 1.0               # weight of the fake-image loss
    fake_ratio: float = 0.5        # fakes per real image in each minibatch
    # "shared": reals and fakes in one forward pass, sharing BatchNorm statistics; "separate":
    # fakes in a pass of their own, which leaves the running statistics to the real images
    fake_bn: str = "shared"
    epochs: int = 60
    batch_size: int = 128
    optimizer: str = "adamw"       # "adamw" or "sgd"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    augment: bool = True           # random crop (pad 4) and horizontal flip
    amp: str = "auto"              # CUDA only: "auto" (bf16 where supported, else fp16), "off"
    channels_last: bool = True     # CUDA only
    seed: int = 0
    device: str = "auto"
    eval_every: int = 0            # epochs between evaluations during training; 0: at the end


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    hash: HashConfig = field(default_factory=HashConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES = {
    ("data", "dataset"): ("cifar10", "fashion-mnist", "imagefolder", "filelist"),
    ("data", "database"): ("all-but-queries", "exclude-train"),
    ("hash", "loss"): ("pairwise", "triplet", "ce"),
    ("hash", "fake_loss"): ("entropy", "uniform-ce"),
    ("hash", "fake_bn"): ("shared", "separate"),
    ("hash", "optimizer"): ("adamw", "sgd"),
    ("hash", "amp"): ("auto", "bf16", "fp16", "off"),
}


def build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Makes a dataclass from a dict; unknown keys and wrong types raise, naming the key."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise HashsdkError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    out = cls()
    for key, value in values.items():
        default = getattr(out, key)
        if default is not None and value is not None and not _same_kind(default, value):
            raise HashsdkError(f"{where}.{key}: expected {type(default).__name__}, got "
                               f"{value!r}")
        setattr(out, key, value)
    return out


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def validate(cfg: RunConfig) -> RunConfig:
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise HashsdkError(f"{section}.{key}: expected one of {allowed}, got {value!r}")
    try:
        check_bits(cfg.hash.bits)
    except HashsdkError as exc:
        raise HashsdkError(f"hash.bits: {exc}") from None
    for section, key in (("hash", "epochs"), ("hash", "batch_size"), ("gan", "steps"),
                         ("gan", "batch_size")):
        if getattr(getattr(cfg, section), key) < 1:
            raise HashsdkError(f"{section}.{key}: expected >= 1")
    _check_backbone(cfg.hash.backbone)
    if cfg.hash.lam < 0 or cfg.hash.fake_ratio < 0:
        raise HashsdkError("hash.lam and hash.fake_ratio must be >= 0")
    return cfg


def _check_backbone(name: str) -> None:
    """hash.backbone must name a row of the backbone table (imports torch: every command that
    reads a config trains or loads a network anyway)."""
    from hashsdk.train.model import lookup_backbone

    try:
        lookup_backbone(name)
    except HashsdkError as exc:
        raise HashsdkError(f"hash.backbone: {exc}") from None


def load(path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None
         ) -> RunConfig:
    """Defaults, then the TOML file, then ``overrides`` ({section: {key: value}})."""
    tables: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            tables = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise HashsdkError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise HashsdkError(f"{path}: not valid TOML ({exc})") from None
    for section, values in (overrides or {}).items():
        tables.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return from_dict(tables, where=str(path or "config"))


def from_dict(tables: dict[str, Any], where: str = "config") -> RunConfig:
    sections = {f.name: f for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(tables) - set(sections))
    if unknown:
        raise HashsdkError(f"{where}: unknown section(s) {unknown}; known: {sorted(sections)}")
    kinds = {"data": DataConfig, "gan": GanConfig, "hash": HashConfig}
    parts = {name: build(kinds[name], tables.get(name, {}), f"{where}:[{name}]")
             for name in sections}
    return validate(RunConfig(**parts))


# Keys that earlier versions wrote into checkpoints and no longer have. A user's config with
# one still raises; a checkpoint's saved config drops them, so old runs evaluate and resume.
RETIRED = {"hash": ("num_workers",)}


def saved_tables(tables: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's saved config (a dict of sections) less the retired keys."""
    return {name: {k: v for k, v in values.items() if k not in RETIRED.get(name, ())}
            for name, values in tables.items()}


def from_saved(tables: dict[str, Any], where: str = "checkpoint config") -> RunConfig:
    """The RunConfig of a checkpoint's saved ``data`` and ``hash`` sections."""
    return from_dict(saved_tables({k: tables[k] for k in ("data", "hash") if k in tables}), where)


def differences(saved: dict[str, Any], cfg: RunConfig,
                sections: tuple[str, ...] = ("data", "hash")) -> list[str]:
    """``section.key`` for each setting of ``sections`` where a saved config (a checkpoint's
    or a run's config.json) differs from ``cfg``, a key on one side only included; retired
    keys do not count."""
    saved, wanted = saved_tables(saved), cfg.to_dict()
    missing = object()
    out = []
    for section in sections:
        have, want = saved.get(section, {}), wanted[section]
        out += [f"{section}.{k}" for k in sorted(set(have) | set(want))
                if have.get(k, missing) != want.get(k, missing)]
    return out


def write(cfg: RunConfig, path: Path) -> None:
    from hashsdk._atomic import atomic_write

    with atomic_write(path) as f:
        f.write((json.dumps(cfg.to_dict(), indent=1, sort_keys=True) + "\n").encode())
