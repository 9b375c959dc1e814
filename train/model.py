"""The hashing network: a backbone (train/backbones.py), then a hash layer (Linear, then tanh).
With ``flip_average``, the network in eval mode averages each image's outputs with its mirror
image's (test-time flip averaging: twice the encoding's cost, inside the graph that exports).
With ``mirror_invariant``, the backbone's features are the mean of the image's and its mirror
image's, in training and in evaluation alike: an image and its mirror get one code (twice the
backbone's cost), and frozen-feature mode caches the averaged features.
With ``feature_block``, the features are one block's of the backbone (train/backbones.py
``truncate_blocks``; -1: the whole backbone's).
With ``input_blur`` (sigma, pixels of the input), a fixed Gaussian low-pass filter comes first,
before the backbone (``LowPass``): a copy's added noise and thin text strokes fade before the
features see them (benchmarks/results/copydetect.md), in training, export and the Encoder alike.
With ``input_median`` (a window's side, pixels), a median filter comes before that
(``MedianFilter``): it removes thin strokes, such as a text overlay's, that a blur only spreads.
With ``feature_pool`` "gem", the features are pooled over positions by a generalized mean
(train/backbones.py ``set_pool``) instead of the average. With ``dct_features`` n, the image's
n x n lowest DCT frequencies as pHash takes them (``DctFeatures``) join the backbone's features.

    model = create_model("timm/resnet18", bits=48, contract=InputContract(32))
    h = model(x)            # float (B, bits) in (-1, 1); bit i = h[:, i] > 0
    model.contract          # the input contract (hashsdk.encoder.contract) the export carries
    model.model_args        # plain data; HashNet(**model_args) rebuilds the same network
    model, ckpt = HashNet.from_checkpoint("runs/x/hash-fakes/checkpoint.pt")

``model_args`` holds the contract's fields flat (image_size, in_channels, resize_size,
interpolation, mean, std, trim), as every checkpoint since the first has (those it knew);
``contract_of`` reads them back, those of checkpoints from before a field was recorded
included. Checkpoints of this network are of kind ``KIND`` (train/checkpoint.py).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from hashsdk.codes import check_bits
from hashsdk.encoder.contract import DEFAULT_INTERPOLATION, DEFAULT_SIZE, SQUASH, InputContract
from hashsdk.errors import HashsdkError
from hashsdk.train.backbones import ALIASES, lookup_backbone, set_pool, truncate_blocks
from hashsdk.train.checkpoint import HASHNET_KIND

KIND = HASHNET_KIND  # the checkpoint kind of a HashNet
MAX_BLUR = 8.0  # input_blur's largest sigma, pixels: beyond it a 32 to 224 px input is a blot
DCT_SIDE = 32  # the side DctFeatures shrink the image to before its DCT, as pHash does
MAX_DCT = 16  # dct_features' largest n
MEDIAN_SIZES = (0, 3, 5)  # input_median's choices: 0 off, else the window's side in pixels


class LowPass(nn.Module):
    """A fixed Gaussian blur of standard deviation ``sigma`` pixels, per channel: float (B, C,
    H, W) -> float (B, C, H, W). The kernel spans 3 sigma each side and sums to 1 (a flat image
    stays as it is, and so the contract's normalization commutes with it); edges are repeated.
    Separable: a column pass, then a row pass (2k taps a pixel, not k squared). A buffer, not a
    parameter, and left out of the state dict: it follows from ``sigma``."""

    def __init__(self, sigma: float, channels: int):
        super().__init__()
        radius = max(1, math.ceil(3 * sigma))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        g = torch.exp(-t ** 2 / (2 * sigma ** 2))
        g = (g / g.sum()).expand(channels, 1, -1).contiguous()  # (C, 1, k)
        self.register_buffer("kernel", g, persistent=False)
        self.radius = radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, k, c = self.radius, self.kernel.to(x.dtype), x.shape[1]
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k[..., None], groups=c)
        return F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k[:, :, None, :], groups=c)


def check_median_dct(input_median: object, dct_features: object, prefix: str = "") -> None:
    """Raises HashsdkError naming the key (after ``prefix``, such as "hash.") where
    ``input_median`` is not one of MEDIAN_SIZES or ``dct_features`` not 0 or 2 to MAX_DCT."""
    if isinstance(input_median, bool) or input_median not in MEDIAN_SIZES:
        raise HashsdkError(f"{prefix}input_median: expected one of {MEDIAN_SIZES} (a window's "
                           f"side in pixels; 0: off), got {input_median!r}")
    d = dct_features
    if isinstance(d, bool) or not isinstance(d, int) or not (d == 0 or 2 <= d <= MAX_DCT):
        raise HashsdkError(f"{prefix}dct_features: expected 0 (none) or n from 2 to {MAX_DCT} "
                           f"(the n x n lowest frequencies), got {d!r}")


class MedianFilter(nn.Module):
    """The median of each pixel's ``size`` x ``size`` window, per channel: float (B, C, H, W) ->
    float (B, C, H, W); edges repeated. Thin strokes (a text overlay's letters and outline,
    narrower than half the window) and outlying noisy pixels go, while edges wider than that
    stay where they were. Monotone per channel, so it commutes with the contract's
    normalization. Made of slices and a TopK, which ONNX has (it has no median)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, (h, w) = self.size, x.shape[-2:]
        r = k // 2
        padded = F.pad(x, (r, r, r, r), mode="replicate")
        window = torch.stack([padded[..., i:i + h, j:j + w] for i in range(k) for j in range(k)])
        # the (k*k + 1) / 2-th largest of k*k values is their median
        return torch.topk(window, (k * k + 1) // 2, dim=0).values[-1]


class DctFeatures(nn.Module):
    """pHash's look at an image, as features: float (B, C, size, size) -> float (B, n * n - 1).
    The channels' mean, shrunk to DCT_SIDE x DCT_SIDE by area averaging (adaptive average
    pooling's windows), its n x n lowest frequencies of the orthonormal 2-D DCT-II but the
    constant one, divided by their root mean square (so that a change of contrast leaves them
    as they are). Low frequencies barely move under added noise, JPEG, a gamma curve or a line
    of text, which a network's features do; they do move under a crop, a pad or a mirror image,
    which the network's do less. The shrinking and the DCT are one fixed (n, size) matrix M
    applied to each side, M @ grey @ M.T: two MatMuls in ONNX."""

    def __init__(self, n: int, size: int):
        super().__init__()
        k = torch.arange(DCT_SIDE, dtype=torch.float64)
        dct = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:n, None] / (2 * DCT_SIDE))
        dct[0] /= math.sqrt(2)
        dct *= math.sqrt(2 / DCT_SIDE)  # (n, side): rows of the orthonormal DCT-II matrix
        area = torch.zeros(DCT_SIDE, size, dtype=torch.float64)
        for i in range(DCT_SIDE):  # adaptive average pooling's window of output i
            start, end = (i * size) // DCT_SIDE, -((-(i + 1) * size) // DCT_SIDE)
            area[i, start:end] = 1.0 / (end - start)
        self.register_buffer("matrix", (dct @ area).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.matrix
        coef = (m @ x.mean(1) @ m.T).flatten(1)[:, 1:]  # the constant one left out
        return coef / coef.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-6)


class HashNet(nn.Module):
    """Backbone, then Linear(features, bits), then tanh; an optional classifier on the codes.

    Args mirror ``model_args`` exactly, so a checkpoint rebuilds the model from plain data;
    ``contract`` (new code) gives in_channels, image_size, mean, std, resize_size,
    interpolation and trim in one object instead. Input: float (B, C, H, W), normalized by the
    contract. Output: float (B, bits) in (-1, 1).
    """

    def __init__(self, backbone: str, bits: int, in_channels: int = 3,
                 image_size: int = DEFAULT_SIZE, num_classes: int = 0, stem32: bool = True,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 pretrained: str | None = None, resize_size: int | None = None,
                 interpolation: str = DEFAULT_INTERPOLATION, width: int = 32,
                 contract: InputContract | None = None, flip_average: bool = False,
                 mirror_invariant: bool = False, input_blur: float = 0.0,
                 trim: bool = False, feature_block: int = -1, input_median: int = 0,
                 feature_pool: str = "avg", dct_features: int = 0):
        super().__init__()
        check_bits(bits)
        if contract is None:
            contract = InputContract(image_size, in_channels, resize_size or image_size,
                                     interpolation, mean, std, trim)
        self.contract = contract
        in_channels, image_size = contract.channels, contract.size
        row = lookup_backbone(backbone)
        if image_size < row.min_size:
            raise HashsdkError(f"backbone {backbone!r} needs images of at least "
                               f"{row.min_size} pixels, got {image_size}")
        # stem32 (a 3x3 stride-1 stem, no max-pool, on torchvision's ResNets) is for small
        # inputs; the resnet18 of earlier versions took it at any size, and still does
        small_stem = stem32 and (backbone in ALIASES or image_size <= 64)
        if width != 32 and backbone != "cnn":
            raise HashsdkError(f"width sets cnn's channels; {backbone!r} has its own")
        check_median_dct(input_median, dct_features)
        self._set_filters(input_blur, input_median, in_channels)
        self.features, dim = row.build(in_channels, small_stem, pretrained, width)
        dim = self._set_feature_options(feature_block, feature_pool, dct_features, in_channels,
                                        image_size, dim)
        self.hash = nn.Linear(dim, bits)
        self.classifier = nn.Linear(bits, num_classes) if num_classes else None
        self.flip_average = bool(flip_average)
        self.mirror_invariant = bool(mirror_invariant)
        # pretrained is not kept: a rebuilt network takes its weights from the checkpoint
        self.model_args = dict(backbone=backbone, bits=bits, in_channels=in_channels,
                               image_size=image_size, num_classes=num_classes, stem32=stem32,
                               mean=list(contract.mean), std=list(contract.std),
                               resize_size=contract.resize_size,
                               interpolation=contract.interpolation, trim=contract.trim,
                               width=width,
                               flip_average=self.flip_average,
                               mirror_invariant=self.mirror_invariant,
                               input_blur=self.input_blur, feature_block=self.feature_block,
                               input_median=self.input_median, feature_pool=self.feature_pool,
                               dct_features=self.dct_features)

    def _set_filters(self, input_blur: float, input_median: int, in_channels: int) -> None:
        """The filters before the backbone: the median filter's window (0: none), then the
        low-pass filter's sigma in pixels (0: none)."""
        if not (isinstance(input_blur, (int, float)) and 0 <= input_blur <= MAX_BLUR):
            raise HashsdkError(f"input_blur: expected a sigma in pixels from 0 (off) to "
                               f"{MAX_BLUR}, got {input_blur!r}")
        self.input_blur = float(input_blur)
        self.low_pass = LowPass(self.input_blur, in_channels) if self.input_blur else None
        self.input_median = int(input_median)
        self.median = MedianFilter(self.input_median) if self.input_median else None

    def _set_feature_options(self, feature_block: int, feature_pool: str, dct_features: int,
                             in_channels: int, image_size: int, dim: int) -> int:
        """What the hash layer reads from the built backbone (``dim`` features): one block's
        features (-1: the whole backbone's), pooled by ``feature_pool``, with the n x n DCT
        frequencies appended (0: none). Returns the features' new dimension."""
        if feature_block != -1:  # one block's features (train/backbones.py)
            self.features, dim = truncate_blocks(self.features, feature_block, in_channels)
        self.feature_block = int(feature_block)
        if feature_pool != "avg":  # how the features are pooled over positions
            self.features = set_pool(self.features, feature_pool)
        self.feature_pool = feature_pool
        self.dct_features = dct_features
        self.dct = DctFeatures(dct_features, image_size) if dct_features else None
        return dim + (dct_features ** 2 - 1 if dct_features else 0)

    def forward(self, x: torch.Tensor, with_logits: bool = False):
        """Codes h (B, bits); with ``with_logits``, (h, classifier logits (B, classes)).

        The classifier runs inside forward so that DistributedDataParallel syncs its
        gradients too. With ``flip_average`` and in eval mode, h is the mean of the outputs
        of x and of x mirrored left to right (one pass over both, so BatchNorm's running
        statistics, not the batch's, normalize each); training sees single images.
        """
        if self.flip_average and not self.training:
            # (2, B, bits): each image's two looks, then their mean
            h = torch.tanh(self.hash(self.embed(torch.cat([x, x.flip(-1)]))))
            h = h.unflatten(0, (2, -1)).mean(0)
        else:
            h = torch.tanh(self.hash(self.embed(x)))
        if with_logits:
            return h, self.classifier(h)
        return h

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features (B, features): what the hash layer reads, and what the
        baselines and frozen-feature mode take. With ``mirror_invariant``, the mean of the
        features of x and of x mirrored left to right (one pass over both). With
        ``input_median`` and ``input_blur``, x is median-filtered, then low-passed, first."""
        if self.median is not None:
            x = self.median(x)
        if self.low_pass is not None:
            x = self.low_pass(x)
        if self.mirror_invariant:
            return self._features(torch.cat([x, x.flip(-1)])).unflatten(0, (2, -1)).mean(0)
        return self._features(x)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features, with ``dct_features`` the DCT's appended: (B, features)."""
        f = self.features(x)
        return f if self.dct is None else torch.cat([f, self.dct(x)], 1)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, flip_average: bool = False
                        ) -> tuple[HashNet, dict]:
        """The network of a hashing checkpoint, rebuilt from its ``model_args`` with its
        weights, on the CPU and in eval mode; and the checkpoint (a dict, train/checkpoint.py).
        ``flip_average``: turned on whatever the run trained with (``with_flip_average``).
        """
        from hashsdk.train import checkpoint

        ckpt = checkpoint.load(path, KIND)
        if flip_average:
            ckpt = with_flip_average(ckpt, path)
        model = cls(**ckpt["model_args"])
        model.contract = contract_of(ckpt["model_args"])
        model.load_state_dict(ckpt["state_dict"])
        return model.eval(), ckpt


def with_flip_average(ckpt: dict, path: str | os.PathLike) -> dict:
    """A hashing checkpoint (a dict) with ``flip_average`` on in its model arguments and its
    config, the weights as they are: a run trained without test-time flip averaging gets it
    at export (hashsdk-export --flip-average). Refused where the features are mirror-invariant
    already: averaging would change nothing but double the cost."""
    if ckpt["model_args"].get("mirror_invariant"):
        raise HashsdkError(f"{path}: its features are already mirror-invariant; flip averaging "
                           "would change nothing")
    config = ckpt.get("config") or {}
    return {**ckpt, "model_args": {**ckpt["model_args"], "flip_average": True},
            "config": {**config, "hash": {**config.get("hash", {}), "flip_average": True}}}


def contract_of(model_args: dict) -> InputContract:
    """The input contract of a checkpoint's ``model_args``. Checkpoints from before the
    contract was recorded lack resize_size and interpolation: they were trained on images
    squashed to the input size, bilinear."""
    return InputContract(model_args["image_size"], model_args["in_channels"],
                         model_args.get("resize_size", SQUASH),
                         model_args.get("interpolation", DEFAULT_INTERPOLATION),
                         model_args["mean"], model_args["std"],
                         model_args.get("trim", False))


def create_model(name: str, bits: int, **kwargs) -> HashNet:
    """The one factory: ``create_model(backbone, bits, contract=InputContract(...), ...)``."""
    return HashNet(name, bits, **kwargs)
