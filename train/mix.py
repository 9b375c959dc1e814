"""Mixup and CutMix of a training batch (``hash.mixup``, ``hash.cutmix``), for the losses that
score each image against its own label alone (``LossEntry.mixes``: ce, csq, orthohash).

Each image of the batch (B, C, H, W) is mixed with its partner, the image at the mirrored row
(row i with row B - 1 - i, as timm's batch mode pairs them), with one weight lam for the batch:

    mixup   x = lam * x + (1 - lam) * x[partner],  lam ~ Beta(a, a)   (Zhang et al. 2018)
    cutmix  a box of area (1 - lam) * H * W, its centre uniform over the image and clipped at
            the borders, is pasted from the partner; lam ~ Beta(a, a), then set to the share
            of the image left after clipping                       (Yun et al. 2019)

With both on, each batch takes one of the two, each with probability 1/2. The loss of a mixed
batch is lam * L(h, y) + (1 - lam) * L(h, y[partner]) (``RealLoss``): for a cross-entropy this
is the cross-entropy against the mixed label, as timm's soft targets give it.

Why not timm's ``Mixup``: it draws lam and the box from numpy's global random state, so a run
would neither reproduce nor resume as this loop's runs do (every draw here comes from the
run's augmentation generator, whose state checkpoints keep), and it returns soft one-hot
targets, where the codeword losses take class ids or multi-hot labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Mix:
    """How a batch was mixed: ``lam``, the weight of each image's own label, in [0, 1]; and
    ``partner``, int64 (B,), the row each image was mixed with (on the batch's device)."""

    lam: float
    partner: torch.Tensor


def mix_batch(x: torch.Tensor, gen: torch.Generator, mixup: float, cutmix: float
              ) -> tuple[torch.Tensor, Mix | None]:
    """The float (B, C, H, W) batch mixed with its mirrored rows, and how; ``mixup`` and
    ``cutmix`` are the Beta distributions' alphas (0: off). Both off, or a batch of one: x
    itself and None. Draws one number from ``gen`` (CPU) a batch."""
    if (mixup <= 0 and cutmix <= 0) or len(x) < 2:
        return x, None
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    partner = torch.arange(len(x) - 1, -1, -1, device=x.device)
    if not use_cutmix:
        return lam * x + (1 - lam) * x[partner], Mix(lam, partner)
    (y0, y1, x0, x1), lam = cutmix_box(x.shape[-2:], lam, rng)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[partner][:, :, y0:y1, x0:x1]
    return out, Mix(lam, partner)


def cutmix_box(size: tuple[int, int], lam: float, rng: np.random.Generator
               ) -> tuple[tuple[int, int, int, int], float]:
    """The box (y0, y1, x0, x1), half-open, of CutMix's paste into an image of ``size``
    (H, W) for weight ``lam``, and lam corrected to the share of the image outside the box."""
    h, w = size
    ratio = math.sqrt(1 - lam)
    ch, cw = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch - ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw - cw // 2, w)
    return (y0, y1, x0, x1), 1 - (y1 - y0) * (x1 - x0) / (h * w)
