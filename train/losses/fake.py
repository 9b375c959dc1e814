"""The fake-image losses (Geng, Pan, Chen, Lai): on a fake image, each bit should stay undecided.

Take p = (h + 1) / 2, the bit's probability of being 1. Both forms are zero, with zero
gradient, at p = 1/2, and grow as the bit grows confident; both are means over bits and fakes:

    entropy      log 2 - H(p) = KL(p || 1/2), with H(p) = -p log p - (1 - p) log(1 - p).
                 Bounded by log 2.
    uniform-ce   BCE(p, 1/2) - log 2 = -(log p + log(1 - p)) / 2 - log 2 = KL(1/2 || p), the
                 cross-entropy to the 50/50 target, as LSRO (Zheng et al. 2017) does for
                 classes. Unbounded: it pushes harder near 0 and 1.

The total is L_real + lambda * L_fake. These formulas are our reading of the paper's abstract
("a maximum-entropy loss on the fake images"): its full text was not at hand.
"""

from __future__ import annotations

import math

import torch

LOG2 = math.log(2.0)
_EPS = 1e-6


def _p(h: torch.Tensor) -> torch.Tensor:
    return ((h.float() + 1.0) / 2.0).clamp(_EPS, 1.0 - _EPS)


def entropy(h: torch.Tensor) -> torch.Tensor:
    p = _p(h)
    return (LOG2 + (p * torch.log(p) + (1 - p) * torch.log(1 - p))).mean()


def uniform_ce(h: torch.Tensor) -> torch.Tensor:
    p = _p(h)
    return (-0.5 * (torch.log(p) + torch.log(1 - p)) - LOG2).mean()


def fake_loss(h: torch.Tensor, form: str) -> torch.Tensor:
    """The registered fake-image loss ``form`` on h: float (B, bits) in (-1, 1)."""
    from hashsdk.train.losses import lookup

    return lookup(form, fake=True).load()(h)
