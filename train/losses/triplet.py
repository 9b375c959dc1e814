"""``triplet``: DNNH-style triplet ranking (Lai et al. 2015). For every anchor a, positive p and
negative n in the batch, L = mean max(0, margin + |h_a - h_p|^2 / 4 - |h_a - h_n|^2 / 4);
|h - h'|^2 / 4 is the relaxed Hamming distance."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashsdk.train.losses.common import similarity
from hashsdk.train.losses.real import LossOptions


def triplet(h: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean hinge over every valid (anchor, positive, negative) triple of the batch."""
    d = torch.cdist(h, h).pow(2) / 4.0  # relaxed Hamming distance
    s = similarity(labels, labels).bool()
    eye = torch.eye(len(h), dtype=torch.bool, device=h.device)
    pos, neg = s & ~eye, ~s
    # (anchor, positive, negative)
    hinge = F.relu(margin + d[:, :, None] - d[:, None, :])
    valid = pos[:, :, None] & neg[:, None, :]
    if not valid.any():
        return h.sum() * 0.0
    return hinge[valid].mean()


class Triplet:
    def __init__(self, options: LossOptions):
        self.margin = options.margin

    def __call__(self, h: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None,
                 index: torch.Tensor | None) -> torch.Tensor:
        return triplet(h, labels, self.margin)
