"""The edits a near-duplicate carries, as the perception library's benchmark makes them:
blur, JPEG re-compression, gamma, noise, a text overlay, crops, padding, a small rotation, a
downscale and a mirror image. Each is a function ``(image, rng) -> image`` of a PIL RGB image
and a numpy Generator; its strength is drawn from the range in its row of ``EDITS``.

Used to make copy-detection benchmarks (benchmarks/copydetect.py), to score label-free models
on folders without labels (an edited copy of an image must find its original), and to choose
``hashsdk dedup``'s radius for a target precision.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from hashsdk.errors import HashsdkError

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]


def blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    radius = rng.uniform(1.0, 2.0) * max(image.size) / 256  # the same look at every size
    return image.filter(ImageFilter.GaussianBlur(radius))


def jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    raw = io.BytesIO()
    image.save(raw, "JPEG", quality=int(rng.integers(30, 96)))
    raw.seek(0)
    return Image.open(raw).convert("RGB")


def gamma(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    g = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    lut = [round(255 * (i / 255) ** g) for i in range(256)] * 3
    return image.point(lut)


def noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    x = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(5, 15), (image.height,
                                                                          image.width, 3))
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def text(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = image.copy()
    draw = ImageDraw.Draw(out)
    size = max(8, image.height // 8)
    font = ImageFont.load_default(size=size)
    words = "".join(rng.choice(list("ABCDEFGHKMNPRSTWXYZ0123456789"), 8))
    x, y = rng.integers(0, max(1, image.width // 3)), rng.integers(0, max(1, image.height - size))
    draw.text((int(x), int(y)), f"(c) {words}", fill=(255, 255, 255), font=font,
              stroke_width=1, stroke_fill=(0, 0, 0))
    return out


def crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    cut = rng.uniform(0.05, 0.20)  # of each side's length, split at random between its ends
    dx, dy = round(w * cut), round(h * cut)
    left, top = int(rng.integers(0, dx + 1)), int(rng.integers(0, dy + 1))
    return image.crop((left, top, w - (dx - left), h - (dy - top)))


def pad(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    out = Image.new("RGB", (round(w * 1.2), round(h * 1.2)),
                    tuple(int(v) for v in rng.integers(0, 256, 3)))
    out.paste(image, ((out.width - w) // 2, (out.height - h) // 2))
    return out


def rotate(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.rotate(4.0 * rng.choice([-1.0, 1.0]), Image.BICUBIC, expand=False)


def resize(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    return image.resize((max(1, w // 2), max(1, h // 2)), Image.BILINEAR)


def flip(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.transpose(Image.FLIP_LEFT_RIGHT)


# name -> (function, what it does)
EDITS: dict[str, tuple[Edit, str]] = {
    "blur": (blur, "Gaussian blur, radius 1 to 2 px a 256 px side"),
    "jpeg": (jpeg, "JPEG re-compression at quality 30 to 95"),
    "gamma": (gamma, "gamma 0.6 to 1.6"),
    "noise": (noise, "Gaussian noise, sigma 5 to 15 of 255"),
    "text": (text, "a white text overlay with a black outline"),
    "crop": (crop, "5 to 20% of each side cut off"),
    "pad": (pad, "a 20% border of one colour"),
    "rotate": (rotate, "rotation by 4 degrees"),
    "resize": (resize, "half the size"),
    "flip": (flip, "mirror image"),
}


def apply(name: str, image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """``image`` (any mode) with edit ``name``, as RGB."""
    if name not in EDITS:
        raise HashsdkError(f"unknown edit {name!r}; expected one of {', '.join(EDITS)}")
    return EDITS[name][0](image.convert("RGB"), rng)
