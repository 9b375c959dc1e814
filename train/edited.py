"""Edited copies of training images (hashsdk.edits): the views the label-free losses learn
from. Frozen-feature mode caches EDIT_VIEWS copies of each training image (``edited_views``);
the fine-tuning loop edits each batch afresh (``edit_batch``). Each copy is made by one edit
drawn at random, so a copy has its image's shape: uint8 (H, W, C).

Where the edit is made: the training images are already fitted to the network's input (a few
dozen pixels a side), but near-duplicates are edited at a photo's size and only then fitted
(the Encoder, the benchmarks and the run's own edited queries do so). So each image is scaled
up to EDIT_SIDE pixels, edited there (JPEG blocks, noise and text strokes then shrink as a
photo's do), and scaled back to its own shape: the whole edited picture, never cropped again,
so that an edit that keeps the frame (blur, noise, a mirror) does not also zoom the copy. A
contract that trims (hashsdk.encoder.contract) cuts the edited picture's border first, as the
Encoder does to a copy before fitting it.
"""

from __future__ import annotations

import numpy as np

from hashsdk.errors import HashsdkError

# copies of each training image that frozen-feature mode caches
EDIT_VIEWS = 2
# hash.training_edits: how often each edit is drawn for a training copy, relative to the
# others (1 where not named). "weighted" draws the edits whose copies a frozen head found
# least (noise, a gamma curve, a caption) three times as often (docs/dedup.md)
TRAINING_EDITS = {"uniform": {}, "weighted": {"noise": 3.0, "gamma": 3.0, "text": 3.0}}
# uniform, as measured: weighted found fewer copies at 99% precision (copydetect-seeds-weighted)
DEFAULT_TRAINING_EDITS = "uniform"
# the side, in pixels, at which the training images are edited (the copy-detection
# benchmark's originals are 256 px); an image already larger is edited at its own size
EDIT_SIDE = 256


def draw_edit(rng: np.random.Generator, edits: str = DEFAULT_TRAINING_EDITS) -> str:
    """The name of one edit of hashsdk.edits, drawn from ``rng`` with TRAINING_EDITS[edits]'s
    weights."""
    from hashsdk.edits import EDITS

    if edits not in TRAINING_EDITS:
        raise HashsdkError(f"hash.training_edits: expected one of {', '.join(TRAINING_EDITS)}, "
                           f"got {edits!r}")
    names = list(EDITS)
    if edits == "uniform":  # as before the weights: the same draws from the same seed
        return names[rng.integers(len(names))]
    weights = np.array([TRAINING_EDITS[edits].get(n, 1.0) for n in names])
    return names[rng.choice(len(names), p=weights / weights.sum())]


def edit_image(image: np.ndarray, contract, rng: np.random.Generator,
               edits: str = DEFAULT_TRAINING_EDITS) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (H, W, C): one edit of hashsdk.edits drawn from ``rng`` (with
    the weights of TRAINING_EDITS[edits]), made at EDIT_SIDE px and scaled back with
    ``contract``'s interpolation."""
    from PIL import Image

    from hashsdk.edits import apply
    from hashsdk.encoder.contract import INTERPOLATIONS, trim_border

    pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    resample = INTERPOLATIONS[contract.interpolation]
    scale = max(1.0, EDIT_SIDE / max(pil.size))
    big = pil.resize((round(pil.width * scale), round(pil.height * scale)), resample)
    edited = apply(draw_edit(rng, edits), big, rng).convert(pil.mode)
    if contract.trim:
        edited = trim_border(edited)
    out = np.asarray(edited.resize(pil.size, resample), np.uint8)
    return out[..., None] if out.ndim == 2 else out


def edit_batch(images: np.ndarray, contract, rng: np.random.Generator,
               edits: str = DEFAULT_TRAINING_EDITS) -> np.ndarray:
    """One edited copy of each image: uint8 (B, H, W, C) -> uint8 (B, H, W, C)."""
    return np.stack([edit_image(image, contract, rng, edits) for image in images])


def edited_views(images: np.ndarray, contract, seed: int, edits: str = DEFAULT_TRAINING_EDITS
                 ) -> tuple[np.ndarray, np.ndarray]:
    """EDIT_VIEWS edited copies of each image (uint8 (n, H, W, C)) and the source row of each:
    uint8 (n * EDIT_VIEWS, H, W, C), int64 (n * EDIT_VIEWS,), row i's copies at
    i * EDIT_VIEWS + k."""
    rng = np.random.default_rng(seed)
    out = [edit_image(image, contract, rng, edits) for image in images
           for _ in range(EDIT_VIEWS)]
    return np.stack(out), np.repeat(np.arange(len(images), dtype=np.int64), EDIT_VIEWS)
