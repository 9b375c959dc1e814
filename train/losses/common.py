"""What the losses share: which pairs are similar, and the quantization term."""

from __future__ import annotations

import torch


def similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """float (A, B): 1 where the items share a label."""
    if labels_a.ndim == 1:
        return (labels_a[:, None] == labels_b[None, :]).float()
    return ((labels_a.float() @ labels_b.float().T) > 0).float()


def quantization(h: torch.Tensor) -> torch.Tensor:
    """mean((h - sign(h))^2): pulls the outputs to +-1."""
    return (h - torch.sign(h).detach()).pow(2).mean()
