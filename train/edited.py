"""Edited copies of training images (hashsdk.edits): the views the label-free losses learn
from. Frozen-feature mode caches EDIT_VIEWS copies of each training image (``edited_views``);
the fine-tuning loop edits each batch afresh (``edit_batch``). Each copy is made by one edit
drawn at random, applied at the images' own size and fitted back to the input contract, so a
copy has its image's shape: uint8 (H, W, C).
"""

from __future__ import annotations

import numpy as np

# copies of each training image that frozen-feature mode caches
EDIT_VIEWS = 2


def edit_image(image: np.ndarray, contract, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (H, W, C): one edit of hashsdk.edits drawn from ``rng``."""
    from PIL import Image

    from hashsdk.edits import EDITS, apply

    pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    names = list(EDITS)
    edited = apply(names[rng.integers(len(names))], pil, rng)
    return contract.fit_array(edited.convert(pil.mode))


def edit_batch(images: np.ndarray, contract, rng: np.random.Generator) -> np.ndarray:
    """One edited copy of each image: uint8 (B, H, W, C) -> uint8 (B, H, W, C)."""
    return np.stack([edit_image(image, contract, rng) for image in images])


def edited_views(images: np.ndarray, contract, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """EDIT_VIEWS edited copies of each image (uint8 (n, H, W, C)) and the source row of each:
    uint8 (n * EDIT_VIEWS, H, W, C), int64 (n * EDIT_VIEWS,), row i's copies at
    i * EDIT_VIEWS + k."""
    rng = np.random.default_rng(seed)
    out = [edit_image(image, contract, rng) for image in images for _ in range(EDIT_VIEWS)]
    return np.stack(out), np.repeat(np.arange(len(images), dtype=np.int64), EDIT_VIEWS)
