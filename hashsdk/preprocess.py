"""Images to model input, from the model's metadata alone (no torch).

Accepted, one item or a batch:
    file paths (str or Path): decoded with Pillow;
    PIL images;
    uint8 arrays: (H, W, C) or (H, W) one image, (N, H, W, C) a batch;
    float arrays already normalized, NCHW: (C, H, W) one image, (N, C, H, W) a batch.
Images are converted to RGB or grey as the model wants and brought to its input size by
``fit``, the model's own evaluation transform: the shorter side resized to ``resize_size`` with
its interpolation (as torchvision's ``Resize(int)`` on a PIL image), then a centre crop (as
``CenterCrop``); models exported before the metadata named a ``resize_size`` squash the whole
image to the input size instead. uint8 arrays already at the input size are taken as fitted.
Then they are normalized with the model's mean and std. The result is float32 (N, C, H, W),
C-contiguous. Training decodes its images with the same ``fit`` (hashsdk.train.data), so that
the Encoder sees the pixels the network was trained and evaluated on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from hashsdk.errors import HashsdkError
from hashsdk.model_metadata import ModelMetadata


class UnreadableImage(HashsdkError):
    """An image file that could not be decoded; ``path`` names it."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: unreadable image ({reason})")
        self.path = path


def is_single(images: Any) -> bool:
    """Whether ``images`` is one item rather than a collection of items."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return True
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8:
            return images.ndim in (2, 3)
        return images.ndim == 3
    return False


def iter_items(images: Any) -> Iterator[Any]:
    """The items of a collection; a batch array yields its rows."""
    if is_single(images):
        yield images
    elif isinstance(images, np.ndarray):
        yield from images
    elif isinstance(images, Iterable):
        yield from images
    else:
        raise HashsdkError("expected image paths, PIL images or arrays, got "
                           f"{type(images).__name__}")


INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def fit(image: Image.Image, size: int, resize_size: int,
        interpolation: str = "bilinear") -> Image.Image:
    """``image`` at ``size`` x ``size``: its shorter side resized to ``resize_size`` (the
    longer in proportion, rounded down), then the centre ``size`` x ``size`` crop, with
    torchvision's rounding. ``resize_size`` 0 squashes the whole image to the size instead (the
    transform of models exported before it was recorded)."""
    if interpolation not in INTERPOLATIONS:
        raise HashsdkError(f"interpolation: expected one of {tuple(INTERPOLATIONS)}, got "
                           f"{interpolation!r}")
    resample = INTERPOLATIONS[interpolation]
    if resize_size == 0:
        return image if image.size == (size, size) else image.resize((size, size), resample)
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    if short != resize_size:
        new_long = int(resize_size * long / short)
        image = image.resize((resize_size, new_long) if w <= h else (new_long, resize_size),
                             resample)
        w, h = image.size
    if (w, h) == (size, size):
        return image
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _from_pil(image: Image.Image, meta: ModelMetadata) -> np.ndarray:
    image = fit(image.convert("L" if meta.channels == 1 else "RGB"), meta.input_size,
                meta.resize_size, meta.interpolation)
    array = np.asarray(image, np.uint8)
    return array[..., None] if array.ndim == 2 else array


def load_uint8(item: Any, meta: ModelMetadata) -> np.ndarray:
    """One item as uint8 (H, W, C) at the model's size, or float32 (C, H, W) passed through."""
    if isinstance(item, (str, os.PathLike)):
        try:
            with Image.open(item) as image:
                image.load()
                return _from_pil(image, meta)
        except FileNotFoundError:
            raise UnreadableImage(os.fspath(item), "no such file") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise UnreadableImage(os.fspath(item), str(exc) or type(exc).__name__) from None
    if isinstance(item, Image.Image):
        return _from_pil(item, meta)
    if isinstance(item, np.ndarray):
        if item.dtype == np.uint8:
            if item.ndim == 2:
                item = item[..., None]
            if item.ndim != 3 or item.shape[2] not in (1, 3, 4):
                raise HashsdkError(f"uint8 image: expected (H, W, C) with C = 1 or 3, got shape "
                                   f"{item.shape}")
            if item.shape[2] != meta.channels or item.shape[:2] != (meta.input_size,) * 2:
                mode = {1: "L", 3: "RGB", 4: "RGBA"}[item.shape[2]]
                return _from_pil(Image.fromarray(item.squeeze(-1) if mode == "L" else item,
                                                 mode), meta)
            return item
        if item.dtype.kind == "f":
            expected = (meta.channels, meta.input_size, meta.input_size)
            if item.shape != expected:
                raise HashsdkError(f"float image: expected normalized NCHW rows of shape "
                                   f"{expected}, got {item.shape}")
            if not np.isfinite(item).all():
                raise HashsdkError("float image contains NaN or inf")
            return item.astype(np.float32, copy=False)
        raise HashsdkError(f"image array: expected uint8 (H, W, C) or normalized float (C, H, W),"
                           f" got dtype {item.dtype}")
    raise HashsdkError(f"expected an image path, PIL image or array, got {type(item).__name__}")


def to_input(items: list[np.ndarray], meta: ModelMetadata) -> np.ndarray:
    """Loaded items (from ``load_uint8``) to float32 (N, C, H, W), normalized."""
    std = np.asarray(meta.std, np.float32)[:, None, None]
    # (x / 255 - mean) / std = x * scale - offset: one multiply and one subtract per pixel
    scale = 1.0 / (255.0 * std)
    offset = np.asarray(meta.mean, np.float32)[:, None, None] / std
    out = np.empty((len(items), meta.channels, meta.input_size, meta.input_size), np.float32)
    for i, item in enumerate(items):
        if item.dtype == np.uint8:
            np.multiply(item.transpose(2, 0, 1), scale, out=out[i], casting="unsafe")
            out[i] -= offset
        else:
            out[i] = item
    return out


# the file names taken as images inside folders, here and by the training data loaders
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files, and the image files inside folders (recursively, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*")
                          if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        else:
            out.append(p)
    return out
