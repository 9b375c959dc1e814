"""The input contract: how an image becomes a network's input, stated once (no torch).

Training, evaluation, the fake bank, export and the Encoder all fit and normalize images
through one ``InputContract``, so that an exported model meets the pixels its network was
trained on. Where it lives: a pretrained backbone's row (train/backbones.py) gives one, the
run's ``[data]`` settings resolve into one (train/config.py), ``HashNet.contract`` holds it,
the ONNX metadata carries its fields (hashsdk.encoder.metadata) and the Encoder reads it back.

Fields, with their defaults; the ONNX metadata key where it differs from the field's name:

    size           32     side of the square input, pixels (metadata: ``input_size``)
    channels       3      1 (grey, PIL mode "L") or 3 (RGB)
    resize_size    size   the shorter side is resized to this, then the centre size x size
                          crop is cut (torchvision's ``Resize(int)`` then ``CenterCrop``, with
                          its rounding); 0 (``SQUASH``) resizes the whole image to size x size,
                          the transform of models exported before the contract was recorded
    interpolation  "bilinear"   or "bicubic", PIL's filters
    mean, std      0.5 each     per channel, in [0, 1] pixel units
    trim           False  before fitting, a border of one colour is cut off (``trim_border``):
                          a copy with a frame added (padding, letterboxing) fits as its
                          original does. A file whose contract trims is written as metadata
                          version 2, which readers of version 1 refuse rather than ignore

The network's input is float32 (N, C, H, W) with x' = (x / 255 - mean) / std, computed as
x * scale - offset with scale = 1 / (255 std) and offset = mean / std (``scale_offset``): one
multiply and one subtract per pixel, the same arithmetic in numpy and in torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from hashsdk.errors import HashsdkError

DEFAULT_SIZE = 32        # a backbone trained from scratch, without a size of its own
DEFAULT_MEAN_STD = 0.5   # per channel, where nothing else is known
SQUASH = 0               # resize_size of models exported before the contract
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
DEFAULT_INTERPOLATION = "bilinear"
CHANNELS = {1: "L", 3: "RGB"}  # channels -> PIL mode
# The longest side over the shortest that fit takes. Resizing the shorter side to resize_size
# makes the longer one resize_size x this at most (256 x 25,600 px): a 1 x 250,000 strip, legal
# by its pixel count, would otherwise become 64 x 16,000,000 (1 GB) before the crop.
MAX_ASPECT = 100
# the fields whose ONNX metadata key is another name
METADATA_KEYS = {"size": "input_size"}
# trim_border: how far (of 255, in any channel) a pixel may lie from the top-left pixel's colour
# and still be border (JPEG's ringing on a flat frame stays within it), and the least part of
# each side the cut must keep (else nothing is cut: an image mostly of one colour stays whole)
TRIM_TOLERANCE = 16
TRIM_KEEP = 0.5


def trim_border(image: Image.Image) -> Image.Image:
    """``image`` (mode L or RGB) cut to the bounding box of its pixels that differ from the
    top-left pixel by more than TRIM_TOLERANCE in some channel; the image itself where that
    box is the whole image, or keeps less than TRIM_KEEP of its width or height."""
    a = np.asarray(image)
    a = a[..., None] if a.ndim == 2 else a
    ref = a[0, 0].astype(np.int16)

    def border(line: np.ndarray) -> bool:  # (n, C): every pixel within the tolerance
        return bool((np.abs(line.astype(np.int16) - ref) <= TRIM_TOLERANCE).all())

    # the usual case, read from the four edges alone: where none of them is all border, the
    # box of the other pixels touches every side and nothing is cut
    if not (border(a[0]) or border(a[-1]) or border(a[:, 0]) or border(a[:, -1])):
        return image
    far = (np.abs(a.astype(np.int16) - ref) > TRIM_TOLERANCE).any(axis=2)
    rows, cols = np.flatnonzero(far.any(axis=1)), np.flatnonzero(far.any(axis=0))
    h, w = far.shape
    if len(rows) == 0:
        return image
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    if box == (0, 0, w, h) or box[2] - box[0] < TRIM_KEEP * w or \
            box[3] - box[1] < TRIM_KEEP * h:
        return image
    return image.crop(box)


@dataclass(frozen=True)
class InputContract:
    """See the module docstring; ``mean`` and ``std`` None take ``DEFAULT_MEAN_STD`` for each
    channel, ``resize_size`` None takes ``size``. Checked when made."""

    size: int = DEFAULT_SIZE
    channels: int = 3
    resize_size: int | None = None
    interpolation: str = DEFAULT_INTERPOLATION
    mean: tuple[float, ...] | None = field(default=None)
    std: tuple[float, ...] | None = field(default=None)
    trim: bool = False

    def __post_init__(self):
        fill = (DEFAULT_MEAN_STD,) * self.channels if self.channels in CHANNELS else ()
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean) if self.mean
                           is not None else fill)
        object.__setattr__(self, "std", tuple(float(v) for v in self.std) if self.std
                           is not None else fill)
        if self.resize_size is None:
            object.__setattr__(self, "resize_size", self.size)
        self.check()

    def check(self, where: str = "input contract") -> None:
        """Raises, naming ``where``, where a field is out of its range."""
        bad = None
        if not _positive_int(self.size):
            bad = f"size: expected a positive integer, got {self.size!r}"
        elif self.channels not in CHANNELS:
            bad = f"channels: expected 1 or 3, got {self.channels!r}"
        elif not isinstance(self.resize_size, int) or (
                self.resize_size != SQUASH and self.resize_size < self.size):
            bad = (f"resize_size ({self.resize_size!r}) must be at least size ({self.size}): "
                   "the crop is cut from it (or 0: squash)")
        elif self.interpolation not in INTERPOLATIONS:
            bad = (f"interpolation: expected one of {tuple(INTERPOLATIONS)}, got "
                   f"{self.interpolation!r}")
        elif len(self.mean) != self.channels or len(self.std) != self.channels:
            bad = f"mean and std: expected {self.channels} values each"
        elif not all(math.isfinite(v) and v > 0 for v in self.std):
            bad = f"std: expected positive values, got {self.std}"
        elif not isinstance(self.trim, bool):
            bad = f"trim: expected true or false, got {self.trim!r}"
        if bad:
            raise HashsdkError(f"{where}: {bad}")

    @property
    def mode(self) -> str:
        """The PIL mode images are converted to: "L" or "RGB"."""
        return CHANNELS[self.channels]

    def at_size(self, size: int) -> InputContract:
        """The same contract at another input size, with the same crop ratio (a pretrained
        backbone's 224 px of 256 becomes 96 of 109)."""
        if size == self.size:
            return self
        resize = SQUASH if self.resize_size == SQUASH else \
            math.floor(size * self.resize_size / self.size)
        return replace(self, size=size, resize_size=resize)

    # ---- fitting --------------------------------------------------------------------------

    def fit(self, image: Image.Image) -> Image.Image:
        """``image`` at size x size: with ``trim``, its border cut off first
        (``trim_border``); the shorter side resized to resize_size (the longer in
        proportion, rounded down), then the centre crop, with torchvision's rounding; or, with
        resize_size 0, the whole image squashed. The mode is left as it is. An image longer
        than ``MAX_ASPECT`` times its width (or the reverse) is refused before any resize."""
        self.check_shape(*image.size)
        if self.trim:
            image = trim_border(image)
            self.check_shape(*image.size)
        size, resample = self.size, INTERPOLATIONS[self.interpolation]
        if self.resize_size == SQUASH:
            return image if image.size == (size, size) else image.resize((size, size), resample)
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        if short != self.resize_size:
            new_long = int(self.resize_size * long / short)
            image = image.resize((self.resize_size, new_long) if w <= h else
                                 (new_long, self.resize_size), resample)
            w, h = image.size
        if (w, h) == (size, size):
            return image
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        return image.crop((left, top, left + size, top + size))

    def check_shape(self, width: int, height: int) -> None:
        """Raises where an image of this shape cannot be fitted: an empty one, or (resizing by
        the shorter side) one of an aspect ratio over ``MAX_ASPECT``."""
        if width < 1 or height < 1:
            raise HashsdkError(f"an image of {width} x {height} pixels is empty")
        if self.resize_size != SQUASH and max(width, height) > MAX_ASPECT * min(width, height):
            raise HashsdkError(f"{width} x {height} pixels: an aspect ratio over {MAX_ASPECT}:1, "
                               "which fitting (the shorter side resized) cannot take")

    def fit_array(self, image: Image.Image) -> np.ndarray:
        """A PIL image (mode L or RGB, kept) fitted, as uint8 (size, size, C)."""
        array = np.asarray(self.fit(image), np.uint8)
        return array[..., None] if array.ndim == 2 else array

    def fit_batch(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, h, w, C) fitted to uint8 (N, size, size, C), C kept."""
        grey = images.shape[3] == 1
        out = np.empty((len(images), self.size, self.size, images.shape[3]), np.uint8)
        for i, image in enumerate(images):
            out[i] = self.fit_array(Image.fromarray(image[..., 0] if grey else image))
        return out

    def is_fitted(self, height: int, width: int) -> bool:
        """Whether an image of this shape is already the input: fitting would change nothing
        (never where the contract trims: the border is in the pixels, not the shape)."""
        return (height, width) == (self.size, self.size) and \
            self.resize_size in (SQUASH, self.size) and not self.trim

    # ---- normalizing ----------------------------------------------------------------------

    def scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 (C,) each: the input is x * scale - offset for uint8 pixels x."""
        std = np.asarray(self.std, np.float32)
        return (1.0 / (255.0 * std)).astype(np.float32), \
            (np.asarray(self.mean, np.float32) / std).astype(np.float32)

    # ---- the metadata's names -------------------------------------------------------------

    def metadata_fields(self) -> dict:
        """The fields under their ONNX metadata names (hashsdk.encoder.metadata)."""
        return {METADATA_KEYS.get(k, k): getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_metadata_fields(cls, fields: dict) -> InputContract:
        names = {v: k for k, v in METADATA_KEYS.items()}
        return cls(**{names.get(k, k): v for k, v in fields.items()})


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# the contract's fields under their metadata names, in order
METADATA_FIELDS = tuple(METADATA_KEYS.get(name, name)
                        for name in InputContract.__dataclass_fields__)
