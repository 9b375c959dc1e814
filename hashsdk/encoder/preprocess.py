"""Images to model input, from the model's metadata alone (no torch).

Accepted, one item or a batch:
    file paths (str or Path) and encoded bytes (an in-memory file): decoded with Pillow;
    PIL images;
    uint8 arrays: (H, W, C) or (H, W) one image, (N, H, W, C) a batch;
    float arrays already normalized, NCHW: (C, H, W) one image, (N, C, H, W) a batch.
Images are converted to RGB or grey as the model wants, brought to its input size and
normalized by the model's input contract (hashsdk.encoder.contract: its evaluation transform,
mean and std). uint8 arrays already at the input size are taken as fitted. The result is
float32 (N, C, H, W), C-contiguous. Training decodes its files with the same ``decode``
(hashsdk.train.data), so that the Encoder sees the pixels the network was trained and
evaluated on.

Decoding (``decode``): the EXIF orientation is applied (phone photos are stored sideways with
a tag), an animation gives its first frame, and an image whose header claims more than
``max_pixels`` is refused before any pixel is decoded (a decompression bomb is one unreadable
image, not a crashed batch). A JPEG much larger than the model needs (its shorter side at least
twice the resize) is decoded at a reduced scale by libjpeg (Pillow's draft mode), which is
faster and still at least the size the resize wants.

Plain JPEGs (YCbCr or grey, no EXIF segment, not large enough for draft mode) are decoded by
simplejpeg where it is installed (a dependency of hashsdk; wheels for the usual platforms):
the same libjpeg-turbo with the same settings as Pillow's (accurate integer IDCT, fancy
upsampling), so the pixels are identical, a test checks it, at a fifth of the cost for
CIFAR-sized files, whose decoding is mostly Pillow's Python (19 against 85 microseconds on
this project's CPU). Every other file, and any JPEG that simplejpeg finds damaged, goes
through Pillow.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hashsdk.encoder.contract import InputContract
from hashsdk.encoder.metadata import ModelMetadata
from hashsdk.errors import HashsdkError

try:
    import simplejpeg
except ImportError:  # a platform without its wheel: Pillow decodes everything
    simplejpeg = None


class UnreadableImage(HashsdkError):
    """An image file that could not be decoded; ``path`` names it."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: unreadable image ({reason})")
        self.path, self.reason = path, reason


# a check of an image's (width, height) from its header, raising HashsdkError; or None
Shape = Callable[[int, int], None] | None
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # Pillow's own warning threshold, about 89 MP


def is_single(images: Any) -> bool:
    """Whether ``images`` is one item rather than a collection of items."""
    if isinstance(images, (str, os.PathLike, Image.Image, bytes, bytearray, memoryview)):
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


def _from_pil(image: Image.Image, contract: InputContract) -> np.ndarray:
    return contract.fit_array(image if image.mode == contract.mode else
                              image.convert(contract.mode))


def _name(source: Any) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"


def decode(source: Any, mode: str | None = None, resize_to: int | None = None,
           max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A file path or encoded bytes as a loaded PIL image, upright (EXIF orientation applied),
    its first frame, in ``mode`` ("L" or "RGB"; None: "L" for grey images, else "RGB").
    ``resize_to``: the shorter side the caller will resize to, which lets a JPEG of twice that
    or more decode at a reduced scale. Raises UnreadableImage (naming the file) for a missing
    file, a URL, a file Pillow cannot read, or one of more than ``max_pixels`` pixels."""
    image = _decode(source, mode, resize_to, max_pixels)
    return image if isinstance(image, Image.Image) else Image.fromarray(image)


def _decode(source: Any, mode: str | None, resize_to: int | None,
            max_pixels: int | None, check: Shape = None) -> Image.Image | np.ndarray:
    """``decode``, but a plain JPEG comes as simplejpeg's array, uint8 (H, W, 3) or (H, W) in
    ``mode``, so that an image already at the model's size never becomes a PIL image."""
    name = _name(source)
    if isinstance(source, str) and "://" in source:
        raise UnreadableImage(source, "a URL: the Encoder reads files and bytes, not the "
                                      "network; download it first")
    try:
        raw = bytes(source) if not isinstance(source, (str, os.PathLike)) else \
            Path(source).read_bytes()
        fast = _plain_jpeg(raw, mode, resize_to, max_pixels, name, check)
        return fast if fast is not None else _pillow(raw, mode, resize_to, max_pixels, name,
                                                     check)
    except FileNotFoundError:
        raise UnreadableImage(name, "no such file") from None
    except IsADirectoryError:
        raise UnreadableImage(name, "a folder, not an image file") from None
    except PermissionError as exc:
        raise UnreadableImage(name, str(exc)) from None


def _check_pixels(width: int, height: int, max_pixels: int | None, name: str,
                  check: Shape = None) -> None:
    """The header's size against the pixel limit and ``check`` (the contract's shape rule),
    before any pixel is decoded."""
    if check is not None:
        try:
            check(width, height)
        except HashsdkError as exc:
            raise UnreadableImage(name, str(exc)) from None
    if max_pixels is not None and width * height > max_pixels:
        raise UnreadableImage(name, f"{width} x {height} = {width * height:,} pixels, more than "
                                    f"max_pixels = {max_pixels:,} (a decompression bomb?)")


def _pillow(raw: bytes, mode: str | None, resize_to: int | None, max_pixels: int | None,
            name: str, check: Shape = None) -> Image.Image:
    try:
        with warnings.catch_warnings():  # we check the size ourselves, below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
        w, h = image.size
        _check_pixels(w, h, max_pixels, name, check)
        if resize_to and image.format == "JPEG" and min(w, h) >= 2 * resize_to:
            scale = resize_to / min(w, h)  # libjpeg picks a scale that stays at least this
            image.draft(image.mode, (max(1, int(w * scale)), max(1, int(h * scale))))
        image.load()  # the first frame of an animation
        if image.getexif().get(0x0112, 1) != 1:  # the orientation tag; 1 is upright
            image = ImageOps.exif_transpose(image)
        if mode is None:
            mode = "L" if image.mode in ("L", "1", "I;16", "I", "LA") else "RGB"
        return image.convert(mode)
    except UnreadableImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError) as exc:
        raise UnreadableImage(name, str(exc) or type(exc).__name__) from None


def _plain_jpeg(raw: bytes, mode: str | None, resize_to: int | None, max_pixels: int | None,
                name: str, check: Shape = None) -> np.ndarray | None:
    """simplejpeg's decode of a plain JPEG (see the module docstring), or None where Pillow
    must decode the file."""
    info = _plain_jpeg_size(raw) if simplejpeg is not None else None
    if info is None:
        return None
    w, h, grey = info
    _check_pixels(w, h, max_pixels, name, check)
    if resize_to and min(w, h) >= 2 * resize_to:  # Pillow's draft mode
        return None
    mode = mode or ("L" if grey else "RGB")
    try:
        if mode == "L" and not grey:  # Pillow's luma from RGB, as the Pillow path does it
            return np.asarray(Image.fromarray(simplejpeg.decode_jpeg(raw)).convert("L"))
        array = simplejpeg.decode_jpeg(raw, colorspace="GRAY" if grey else "RGB")
    except ValueError:
        return None
    if mode == "RGB" and grey:  # libjpeg repeats the grey level, as Pillow's convert does
        return np.repeat(array, 3, axis=2)
    return array[..., 0] if grey else array


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers


def _plain_jpeg_size(raw: bytes) -> tuple[int, int, bool] | None:
    """(width, height, grey) of a JPEG whose headers (the segments before its scan) hold no
    EXIF segment and no Adobe segment (which may mark RGB or CMYK data), and whose frame has 1
    (grey) or 3 (YCbCr) components; else None."""
    if raw[:2] != b"\xff\xd8":
        return None
    i, size = 2, None
    while i + 4 <= len(raw) and raw[i] == 0xFF:
        marker = raw[i + 1]
        if marker == 0xFF:  # a fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the headers are over
            return size
        length = int.from_bytes(raw[i + 2:i + 4], "big")
        if (marker == 0xE1 and raw[i + 4:i + 10] == b"Exif\0\0") or \
                (marker == 0xEE and raw[i + 4:i + 9] == b"Adobe"):
            return None
        if marker in _SOF and i + 10 <= len(raw):
            height = int.from_bytes(raw[i + 5:i + 7], "big")
            width = int.from_bytes(raw[i + 7:i + 9], "big")
            components = raw[i + 9]
            if components not in (1, 3) or not width or not height:
                return None
            size = (width, height, components == 1)
        i += 2 + length
    return None


def load_uint8(item: Any, meta: ModelMetadata,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One item as uint8 (H, W, C) at the model's size, or float32 (C, H, W) passed through.
    A file or bytes that cannot be fitted (hashsdk.encoder.contract's shape rule) is an
    UnreadableImage naming it, as a file that cannot be decoded is."""
    contract = meta.contract
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        image = _decode(item, contract.mode, contract.resize_size or contract.size, max_pixels,
                        contract.check_shape)
        if isinstance(image, np.ndarray):
            if contract.is_fitted(*image.shape[:2]):  # fit would change nothing
                return image[..., None] if image.ndim == 2 else image
            image = Image.fromarray(image)
        try:
            return _from_pil(image, contract)
        except HashsdkError as exc:
            raise UnreadableImage(_name(item), str(exc)) from None
    if isinstance(item, Image.Image):
        return _from_pil(item, contract)
    if isinstance(item, np.ndarray):
        return _load_array(item, contract)
    raise HashsdkError(f"expected an image path, PIL image or array, got {type(item).__name__}")


def _load_array(item: np.ndarray, contract: InputContract) -> np.ndarray:
    if item.dtype == np.uint8:
        if item.ndim == 2:
            item = item[..., None]
        if item.ndim != 3 or item.shape[2] not in (1, 3, 4):
            raise HashsdkError(f"uint8 image: expected (H, W, C) with C = 1 or 3, got shape "
                               f"{item.shape}")
        if item.shape[2] != contract.channels or item.shape[:2] != (contract.size,) * 2:
            mode = {1: "L", 3: "RGB", 4: "RGBA"}[item.shape[2]]
            return _from_pil(Image.fromarray(item.squeeze(-1) if mode == "L" else item, mode),
                             contract)
        return item
    if item.dtype.kind == "f":
        expected = (contract.channels, contract.size, contract.size)
        if item.shape != expected:
            raise HashsdkError(f"float image: expected normalized NCHW rows of shape "
                               f"{expected}, got {item.shape}")
        if not np.isfinite(item).all():
            raise HashsdkError("float image contains NaN or inf")
        return item.astype(np.float32, copy=False)
    raise HashsdkError(f"image array: expected uint8 (H, W, C) or normalized float (C, H, W),"
                       f" got dtype {item.dtype}")


def to_input(items: list[np.ndarray], meta: ModelMetadata) -> np.ndarray:
    """Loaded items (from ``load_uint8``) to float32 (N, C, H, W), normalized."""
    contract = meta.contract
    scale, offset = (v[:, None, None] for v in contract.scale_offset())
    out = np.empty((len(items), contract.channels, contract.size, contract.size), np.float32)
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
