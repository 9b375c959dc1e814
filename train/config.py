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
from hashsdk.encoder.contract import (
    DEFAULT_INTERPOLATION,
    DEFAULT_SIZE,
    INTERPOLATIONS,
    InputContract,
)
from hashsdk.errors import HashsdkError
from hashsdk.train.edited import DEFAULT_TRAINING_EDITS, TRAINING_EDITS
from hashsdk.train.losses import CODEWORD_RULES, DEFAULT_CODEWORDS, FAKE_LOSSES, REAL_LOSSES

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
    image_size, resize_size, interpolation: the network's input contract (size, resize_size
        and interpolation of hashsdk.encoder.contract; ``input_contract`` makes it). Images
        are fitted as the Encoder fits them (Fashion-MNIST's 28 pads to 32). None: the
        pretrained backbone's (its input size, resize and interpolation, train/backbones.py),
        else the contract's defaults.
    trim: cut a border of one colour off each image before fitting it (the contract's
        ``trim``), in training and in the Encoder: a copy with a frame added fits as its
        original. None: on for a run without labels (copy detection:
        benchmarks/results/copydetect-blur.md), else off.
    """

    dataset: str = "cifar10"
    root: str | None = None
    download: bool = False
    queries_per_class: int = 100
    train_per_class: int = 500
    database: str = "all-but-queries"
    image_size: int | None = None
    resize_size: int | None = None
    interpolation: str | None = None
    seed: int = 0
    cache_dir: str | None = None  # None: $HASHSDK_CACHE, else the user cache (~/.cache/hashsdk)
    # "auto": a folder of images without class folders trains without labels, anything else
    # with them; "none": train without labels on any data (they still score the model where
    # the data has them); "folders": the class folders are required
    labels: str = "auto"
    trim: bool | None = None


@dataclass
class GanConfig:
    """Stage 1: a DCGAN on the training split only (Radford et al.)."""

    steps: int = 5000
    batch_size: int = 64
    z_dim: int = 100
    width: int = 64           # channels of the generator's last hidden layer
    image_size: int | None = None  # 32 or 64; None: 64 where the run's images are >= 64 px
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

    # cnn, timm/<name>, torchvision/<name> (train/backbones.py); "auto": for a folder of
    # photos (imagefolder, filelist) EfficientNet-Lite0 fine-tuned from its offline ImageNet
    # weights at PHOTO_SIZE px, else cnn
    backbone: str = "auto"
    bits: int = 48
    pretrained: str | None = None  # "imagenet" (downloaded once), or a local weights file
    backbone_lr: float | None = None   # the backbone's learning rate over lr; None: 0.1 when
    #                                    pretrained, else 1
    freeze_backbone_epochs: int = 0    # epochs with the backbone's learning rate at 0
    # frozen-feature mode (train/frozen.py): the backbone never trains; its features of every
    # image and fake are computed once and cached, and only the hash layer trains, in seconds.
    # None: frozen for a run without labels (the better measured there: docs/dedup.md), else
    # fine-tuned; false fine-tunes a label-free loss that can (contrastive)
    frozen: bool | None = None
    width: int = 32                # cnn: channels of its first stage (then 2x and 4x)
    stem32: bool = True            # torchvision ResNets at <= 64 px: 3x3 stride-1 stem, no pool
    # a registered loss (train/losses): pairwise (DPSH), ...; "auto": pairwise with labels,
    # LABEL_FREE_LOSS without them
    loss: str = "auto"
    quantization: float = 0.1      # weight of mean((h - sign(h))^2)
    margin: float = 8.0            # triplet margin, in relaxed Hamming units (h in [-1, 1])
    pairwise_memory: bool = False  # DPSH against the codes of the whole training set
    # csq's and orthohash's class codewords (train/losses/codewords.py): "hadamard" (Sylvester
    # and Paley orders, every pair bits / 2 apart at 12, 24, 48 bits) or "sylvester" (random
    # rows where bits is no power of two: the rule of runs made before 2026-12-06)
    codewords: str = DEFAULT_CODEWORDS
    fakes: str | None = None       # a fakes.npz from stage 1; None trains without fakes
    fake_loss: str = "entropy"     # a registered fake loss: entropy (KL(p || 1/2)), uniform-ce
    # weight of the fake-image loss, and BatchNorm: the best measured setting (README: the demo
    # run on Fashion-MNIST; lambda 1 with shared BatchNorm cost 8.8 mAP points there)
    lam: float = 0.03
    fake_ratio: float = 0.5        # fakes per real image in each minibatch
    # "shared": reals and fakes in one forward pass, sharing BatchNorm statistics; "separate":
    # fakes in a pass of their own, which leaves the running statistics to the real images
    fake_bn: str = "separate"
    epochs: int | None = None      # None: by the training split's size (train/schedule.py)
    batch_size: int | None = None  # None: by the training split's size (train/schedule.py)
    optimizer: str = "adamw"       # "adamw" or "sgd"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    augment: bool = True           # a random crop and a horizontal flip
    # the crop: "pad" (4 pixels, then a random crop of the input size, for small inputs),
    # "resized" (a random-resized crop, scale 0.25 to 1, as ImageNet training does), or
    # "auto": pad up to 64 pixels, resized above
    crop: str = "auto"
    # more augmentation after the crop and flip: "none", or "trivial" (TrivialAugment, Muller
    # and Hutter 2021: one operation of random strength an image, torchvision's
    # TrivialAugmentWide), against a fine-tuned network memorising its training images
    augment_policy: str = "none"
    # the decay of an exponential moving average of the weights (Polyak averaging; torch's
    # swa_utils), updated after every step; the average is the network the run evaluates
    # and saves at its end. 0: off
    ema: float = 0.0
    # Mixup and CutMix (train/mix.py): each batch's images mixed with its mirrored rows, lam
    # drawn from Beta(alpha, alpha); the alphas, 0: off (both on: one of the two a batch). For
    # the losses that score each image against its own label (ce, csq, orthohash)
    mixup: float = 0.0
    cutmix: float = 0.0
    # the cross-entropy's target (1 - eps) one-hot + eps / classes, for the losses over class
    # logits (ce, orthohash); 0: off
    label_smoothing: float = 0.0
    # test-time flip averaging (train/model.py): the trained network's outputs of each image
    # averaged with its mirror image's, in evaluation, export and the Encoder; twice the
    # encoding's cost. For images whose mirror is as likely as they are (photos, not text).
    # None: on for the recipe of a labelled photo folder (backbone "auto", fine-tuned), the
    # best measured there (docs/training.md), else off
    flip_average: bool | None = None
    # mirror-invariant features (train/model.py): the backbone's features of each image
    # averaged with its mirror image's, in training and encoding alike, so that a mirrored copy
    # gets its original's code; twice the backbone's cost. None: on for a run without labels
    # (copy detection: benchmarks/results/copydetect.md), else off
    mirror_invariant: bool | None = None
    # a fixed Gaussian low-pass filter of this sigma (pixels of the network's input) before the
    # backbone (train/model.py), in training and encoding alike: a copy's added noise and text
    # fade before the features see them. 0: off. None: LABEL_FREE_BLUR for a run without
    # labels (copy detection: benchmarks/results/copydetect-blur.md), else 0
    input_blur: float | None = None
    # the features of one block of the backbone (a timm network built of blocks, such as
    # EfficientNet; train/backbones.py), average-pooled, instead of its head's; -1: the whole
    # backbone. None: LABEL_FREE_BLOCK for a run without labels on PHOTO_BACKBONE, where it
    # was chosen (copy detection: benchmarks/results/copydetect-blocks.md), else -1
    feature_block: int | None = None
    # a median filter of this window (pixels; 0: off) before the low-pass filter: it removes
    # thin strokes (a text overlay's) that a blur only spreads. Off by default, also without
    # labels: it did not pay on copy detection's validation split (copydetect-pool.md)
    input_median: int = 0
    # how a timm backbone's features are pooled over positions: "avg", or "gem" (a generalized
    # mean, train/backbones.py); "avg" also without labels, as measured (copydetect-pool.md)
    feature_pool: str = "avg"
    # how the edits of the training copies (label-free losses that learn from edited copies)
    # are drawn: "uniform", or "weighted" (noise, gamma and captions three times as often,
    # train/edited.py TRAINING_EDITS); uniform, as measured (copydetect-seeds-weighted.md)
    training_edits: str = DEFAULT_TRAINING_EDITS
    # pHash's look appended to the features: the n x n lowest frequencies of the image's DCT
    # (train/model.py DctFeatures), 0: none. Off by default, also without labels: its gain on
    # copy detection's validation split stayed within 2 standard errors (copydetect-dct.md)
    dct_features: int = 0
    # the weight of a KoLeo term (Sablayrolles et al. 2019, as SSCD, Pizzi et al. 2022) beside
    # the contrastive loss: minus the mean log distance from each image's normalized output to
    # its nearest other image's in the batch, which spreads the codes apart. 0: off. None:
    # LABEL_FREE_KOLEO for the contrastive loss on frozen features (copy detection:
    # benchmarks/results/copydetect-seeds-koleo1.md), else 0
    koleo: float | None = None
    amp: str = "auto"              # CUDA only: "auto" (bf16 where supported, else fp16), "off"
    # channels-last memory, on CUDA and on the CPU: 1.25x a training step of cnn at 32 px and
    # 1.4x to 2.2x of EfficientNet-Lite0 at 64 to 128 px on 2 cores (cpu-speed.md)
    channels_last: bool = True
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
    ("data", "interpolation"): tuple(INTERPOLATIONS),
    ("data", "labels"): ("auto", "folders", "none"),
    ("hash", "loss"): tuple(REAL_LOSSES),
    ("hash", "codewords"): CODEWORD_RULES,
    ("hash", "fake_loss"): tuple(FAKE_LOSSES),
    ("hash", "fake_bn"): ("shared", "separate"),
    ("hash", "optimizer"): ("adamw", "sgd"),
    ("hash", "amp"): ("auto", "bf16", "fp16", "off"),
    ("hash", "crop"): ("pad", "resized"),
    ("hash", "augment_policy"): ("none", "trivial"),
    ("hash", "feature_pool"): ("avg", "gem"),  # "avg" and train/backbones.py POOLINGS
    ("hash", "training_edits"): tuple(TRAINING_EDITS),
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
    """Resolves the settings left to the backbone, then checks every value; returns the
    resolved config."""
    cfg = resolve(cfg)
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise HashsdkError(f"{section}.{key}: expected one of {allowed}, got {value!r}")
    try:
        check_bits(cfg.hash.bits)
    except HashsdkError as exc:
        raise HashsdkError(f"hash.bits: {exc}") from None
    for section, key in (("hash", "epochs"), ("hash", "batch_size"), ("hash", "width"),
                         ("gan", "steps"), ("gan", "batch_size")):
        value = getattr(getattr(cfg, section), key)
        if value is not None and value < 1:  # None: decided by the data (schedule.py)
            raise HashsdkError(f"{section}.{key}: expected >= 1")
    if not 0 <= cfg.hash.ema < 1:
        raise HashsdkError(f"hash.ema: expected a decay in [0, 1), got {cfg.hash.ema}")
    _check_mixing(cfg.hash)
    _check_blur(cfg.hash.input_blur)
    block = cfg.hash.feature_block
    if isinstance(block, bool) or not isinstance(block, int) or block < -1:
        raise HashsdkError(f"hash.feature_block: expected -1 (the whole backbone) or a block "
                           f"number from 0, got {block!r}")
    from hashsdk.train.model import check_median_dct

    check_median_dct(cfg.hash.input_median, cfg.hash.dct_features, "hash.")
    if cfg.hash.lam < 0 or cfg.hash.fake_ratio < 0:
        raise HashsdkError("hash.lam and hash.fake_ratio must be >= 0")
    if cfg.hash.backbone_lr < 0 or cfg.hash.freeze_backbone_epochs < 0:
        raise HashsdkError("hash.backbone_lr and hash.freeze_backbone_epochs must be >= 0")
    d = cfg.data
    for key in ("image_size", "resize_size"):
        if not isinstance(getattr(d, key), int) or isinstance(getattr(d, key), bool) \
                or getattr(d, key) < 1:
            raise HashsdkError(f"data.{key}: expected a positive integer, got "
                               f"{getattr(d, key)!r}")
    try:
        input_contract(d, 3)  # the contract checks its fields when made
    except HashsdkError as exc:
        raise HashsdkError(f"data: {exc}") from None
    return cfg


def _check_blur(sigma: Any) -> None:
    from hashsdk.train.model import MAX_BLUR

    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or \
            not 0 <= sigma <= MAX_BLUR:
        raise HashsdkError(f"hash.input_blur: expected a sigma in pixels from 0 (off) to "
                           f"{MAX_BLUR}, got {sigma!r}")


def _check_mixing(h: HashConfig) -> None:
    """hash.mixup, hash.cutmix, hash.label_smoothing and hash.koleo: their ranges, and a loss
    (and mode) that takes them."""
    from hashsdk.train.losses import lookup

    if h.mixup < 0 or h.cutmix < 0:
        raise HashsdkError(f"hash.mixup and hash.cutmix: expected an alpha >= 0 (0: off), got "
                           f"{h.mixup} and {h.cutmix}")
    if not 0 <= h.label_smoothing < 1:
        raise HashsdkError(f"hash.label_smoothing: expected a value in [0, 1), got "
                           f"{h.label_smoothing}")
    entry = lookup(h.loss)
    if (h.mixup or h.cutmix) and not entry.mixes:
        raise HashsdkError("hash.mixup and hash.cutmix need a loss that scores each image "
                           "against its own label (" + ", ".join(
                               n for n, e in REAL_LOSSES.items() if e.mixes) +
                           f"), not {h.loss!r}")
    if (h.mixup or h.cutmix) and h.frozen:
        raise HashsdkError("hash.mixup and hash.cutmix mix images; frozen-feature mode "
                           "(hash.frozen) trains on cached features: leave it off")
    if h.koleo < 0 or (h.koleo and h.loss != "contrastive"):
        raise HashsdkError(f"hash.koleo: expected a weight >= 0 (0: off) beside the contrastive "
                           f"loss, got {h.koleo} with {h.loss!r}")
    if h.label_smoothing and not entry.smooths:
        raise HashsdkError("hash.label_smoothing needs a loss over class logits (" + ", ".join(
            n for n, e in REAL_LOSSES.items() if e.smooths) + f"), not {h.loss!r}")


# backbone "auto" on a folder of photos: the best recipe measured for small folders on a CPU
# (docs/training.md): EfficientNet-Lite0 from its offline weights, fine-tuned at PHOTO_SIZE px
PHOTO_DATASETS = ("imagefolder", "filelist")
PHOTO_BACKBONE = "timm/tf_efficientnet_lite0"
PHOTO_SIZE = 96  # chosen on a held-out folder: docs/training.md, "Train on your own images"
LABEL_FREE_LOSS = "contrastive"  # the best label-free loss on validation: copydetect-blur.md
LABEL_FREE_BLUR = 1.5  # input_blur without labels, chosen on validation: copydetect-blur.md
LABEL_FREE_BLOCK = 4  # feature_block without labels, chosen on validation: copydetect-blocks.md
# koleo of the contrastive loss on frozen features, chosen on validation over 4 seeds a weight:
# copydetect-seeds-koleo*.md (docs/dedup.md, "Spreading the codes")
LABEL_FREE_KOLEO = 1.0


def is_flat_folder(path: str | Path | None) -> bool:
    """A folder holding image files and no folders: images without class labels."""
    from hashsdk.encoder.preprocess import IMAGE_SUFFIXES

    if path is None or not Path(path).is_dir():
        return False
    entries = list(Path(path).iterdir())
    return not any(e.is_dir() for e in entries) and \
        any(e.suffix.lower() in IMAGE_SUFFIXES for e in entries)


def label_free(d: DataConfig) -> bool:
    """Whether the run trains without labels (``data.labels``, and "auto" on a flat folder)."""
    flat = d.dataset == "imagefolder" and is_flat_folder(d.root)
    if d.labels == "folders" and flat:
        raise HashsdkError(f"data.labels 'folders': {d.root} holds images and no class "
                           "folders; use --labels none (or auto) to train without labels")
    return d.labels == "none" or (d.labels == "auto" and flat)


def _resolve_loss(d: DataConfig, h: HashConfig, free: bool) -> HashConfig:
    """The loss for "auto", and frozen-feature mode where the loss reads features; refuses a
    loss that needs labels on a run without them (``free``: label_free(d), the run has none)."""
    from hashsdk.train.losses import lookup

    loss = h.loss if h.loss != "auto" else (LABEL_FREE_LOSS if free else "pairwise")
    entry = lookup(loss)
    if free and entry.needs_labels:
        raise HashsdkError(f"hash.loss {loss!r} needs labels, and this run has none (data.labels"
                           f" {d.labels!r}); the label-free losses: " + ", ".join(
                               n for n, e in REAL_LOSSES.items() if not e.needs_labels))
    frozen = free if h.frozen is None else h.frozen
    if entry.needs_features and not frozen:
        raise HashsdkError(f"hash.loss {loss!r} trains on frozen features: add --frozen "
                           "(hash.frozen = true), or leave it out on a run without labels")
    if h.flip_average and frozen:  # its evaluation reads the cached features of the images
        raise HashsdkError("hash.flip_average averages a fine-tuned network's outputs; "
                           "frozen-feature mode (hash.frozen, the default without labels) "
                           "scores cached features: set hash.frozen = false or leave "
                           "flip_average off")
    return dataclasses.replace(h, loss=loss, frozen=frozen)


def resolve(cfg: RunConfig) -> RunConfig:
    """Fills what was left to the backbone (None or "auto") from its row of the table: the
    input contract of a pretrained backbone (its size, resize, interpolation), or 32 pixels,
    no resize and bilinear; the backbone's learning rate (0.1 when pretrained, else 1); the
    crop; and flip averaging. Unknown backbones are refused here, before any stage runs."""
    from hashsdk.train.backbones import lookup_backbone

    d, h = cfg.data, cfg.hash
    photos = d.dataset in PHOTO_DATASETS
    photo_recipe = photos and h.backbone == "auto"
    if h.backbone == "auto":  # the recipe for the data users have
        h = dataclasses.replace(h, backbone=PHOTO_BACKBONE if photos else "cnn",
                                pretrained=h.pretrained or ("imagenet" if photos else None))
        if photos and d.image_size is None:
            d = dataclasses.replace(d, image_size=PHOTO_SIZE)
    try:
        pretrained = lookup_backbone(h.backbone).contract(h.pretrained)
    except HashsdkError as exc:
        raise HashsdkError(f"hash.backbone: {exc}") from None
    size = d.image_size or (pretrained.size if pretrained else DEFAULT_SIZE)
    resize = d.resize_size
    if resize is None:  # the pretrained crop ratio, at this size
        resize = pretrained.at_size(size).resize_size if pretrained else size
    data = dataclasses.replace(d, image_size=size, resize_size=resize,
                               interpolation=d.interpolation or (pretrained.interpolation if
                                                                 pretrained else
                                                                 DEFAULT_INTERPOLATION))
    free = label_free(d)  # looks at the folder: once
    h = _resolve_loss(d, h, free)
    if data.trim is None:  # as measured: copy detection without labels
        data = dataclasses.replace(data, trim=free)
    if h.flip_average is None:  # as measured: a labelled photo folder, fine-tuned
        h = dataclasses.replace(h, flip_average=photo_recipe and not h.frozen and not free
                                and not h.mirror_invariant)
    if h.mirror_invariant is None:  # as measured: copy detection without labels
        h = dataclasses.replace(h, mirror_invariant=free and not h.flip_average)
    if h.input_blur is None:  # as measured: copy detection without labels
        h = dataclasses.replace(h, input_blur=LABEL_FREE_BLUR if free else 0.0)
    if h.koleo is None:  # as measured: copy detection without labels, frozen features
        h = dataclasses.replace(h, koleo=LABEL_FREE_KOLEO if h.loss == "contrastive" and
                                h.frozen else 0.0)
    if h.feature_block is None:  # as measured: copy detection without labels, on Lite0
        h = dataclasses.replace(h, feature_block=LABEL_FREE_BLOCK if free and
                                h.backbone == PHOTO_BACKBONE else -1)
    if h.flip_average and h.mirror_invariant:
        raise HashsdkError("hash.flip_average and hash.mirror_invariant: give one (mirror-"
                           "invariant features already give an image and its mirror one code)")
    hash_ = dataclasses.replace(
        h, backbone_lr=h.backbone_lr if h.backbone_lr is not None else
        (0.1 if h.pretrained else 1.0),
        crop=h.crop if h.crop != "auto" else ("pad" if size <= 64 else "resized"))
    return dataclasses.replace(cfg, data=data, hash=hash_)


def input_contract(d: DataConfig, channels: int, mean: Any = None, std: Any = None
                   ) -> InputContract:
    """The resolved ``[data]`` settings as the network's input contract (hashsdk.encoder.
    contract); ``mean`` and ``std`` None: its defaults."""
    return InputContract(d.image_size or DEFAULT_SIZE, channels, d.resize_size,
                         d.interpolation or DEFAULT_INTERPOLATION, mean, std, bool(d.trim))


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


# Keys added since whose default is decided by the data, and which a config saved before them
# holds as off: a run saved then was trained without them, whatever today's default
ADDED_OFF = {"data": {"trim": False}, "hash": {"input_blur": 0.0, "feature_block": -1,
                                                "koleo": 0.0}}


def saved_tables(tables: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's saved config (a dict of sections) less the retired keys, with the keys
    of ``ADDED_OFF`` it lacks at off."""
    return {name: ADDED_OFF.get(name, {}) | {k: v for k, v in values.items()
                                             if k not in RETIRED.get(name, ())}
            for name, values in tables.items()}


def from_saved(tables: dict[str, Any], where: str = "checkpoint config") -> RunConfig:
    """The RunConfig of a checkpoint's saved ``data`` and ``hash`` sections."""
    return from_dict(saved_tables({k: tables[k] for k in ("data", "hash") if k in tables}), where)


def normalized(tables: dict[str, Any]) -> dict[str, Any]:
    """A saved config (a dict of sections) as this version reads it: retired keys dropped,
    keys added since at their defaults, and what the backbone decides resolved, so that a run
    saved before a key existed compares equal to the same run today. Sections that are not
    the config's are kept as they are."""
    clean = saved_tables(tables)
    ours = {k: v for k, v in clean.items() if k in ("data", "gan", "hash")}
    try:
        resolved = from_dict(ours, where="saved config").to_dict()
    except HashsdkError:
        return clean  # not a config this version reads: compared as it is
    return clean | {k: resolved[k] for k in ours}


def differences(saved: dict[str, Any], cfg: RunConfig,
                sections: tuple[str, ...] = ("data", "hash")) -> list[str]:
    """``section.key`` for each setting of ``sections`` where a saved config (a checkpoint's
    or a run's config.json) differs from ``cfg``, a key on one side only included; retired
    keys and keys added since (at their defaults) do not count."""
    saved, wanted = normalized(saved), cfg.to_dict()
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
