"""The learning-rate shape every training loop uses: linear warmup, then cosine decay."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int) -> float:
    """The factor on the base learning rate at optimizer step ``step`` of ``total``: linear
    warmup over the first ``warmup`` steps, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
