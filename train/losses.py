"""Losses: on real images (chosen by name), and the fake-image loss of the paper.

Real-image losses take the network outputs h (float (B, bits), in (-1, 1)) and labels (int64
(B,) class ids, or multi-hot (B, K)); two items are similar when they share a label.

    pairwise  DPSH (Li et al. 2016): with theta_ij = h_i . h_j / 2 and s_ij = 1 for similar
              pairs, L = mean_ij[ log(1 + exp(theta_ij)) - s_ij theta_ij ]. Against the other
              items of the batch, or (memory=True) against the stored codes of the whole
              training set, as the original does.
    triplet   DNNH-style triplet ranking (Lai et al. 2015): for every anchor a, positive p and
              negative n in the batch, L = mean max(0, margin + |h_a - h_p|^2 / 4
              - |h_a - h_n|^2 / 4); |h - h'|^2 / 4 is the relaxed Hamming distance.
    ce        cross-entropy of a linear classifier on the codes.
Each adds the quantization term eta * mean((h - sign(h))^2), which pulls outputs to +-1.

The fake-image loss (Geng, Pan, Chen, Lai): on a fake image, each bit should stay undecided.
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
import torch.nn.functional as F

from hashsdk.errors import HashsdkError

LOG2 = math.log(2.0)
_EPS = 1e-6


def similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """float (A, B): 1 where the items share a label."""
    if labels_a.ndim == 1:
        return (labels_a[:, None] == labels_b[None, :]).float()
    return ((labels_a.float() @ labels_b.float().T) > 0).float()


def quantization(h: torch.Tensor) -> torch.Tensor:
    return (h - torch.sign(h).detach()).pow(2).mean()


def pairwise(h: torch.Tensor, labels: torch.Tensor, memory_codes: torch.Tensor | None = None,
             memory_labels: torch.Tensor | None = None) -> torch.Tensor:
    """DPSH's negative log-likelihood of the pairwise labels."""
    if memory_codes is None:
        other, other_labels = h, labels
    else:
        other, other_labels = memory_codes, memory_labels
    theta = 0.5 * h @ other.T
    s = similarity(labels, other_labels)
    return (F.softplus(theta) - s * theta).mean()


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


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.ndim == 1:
        return F.cross_entropy(logits, labels)
    return F.binary_cross_entropy_with_logits(logits, labels.float())


def fake_loss(h: torch.Tensor, form: str) -> torch.Tensor:
    """The max-entropy regularizer on fake images; h: float (B, bits) in (-1, 1)."""
    p = ((h.float() + 1.0) / 2.0).clamp(_EPS, 1.0 - _EPS)
    if form == "entropy":
        entropy = -(p * torch.log(p) + (1 - p) * torch.log(1 - p))
        return (LOG2 - entropy).mean()
    if form == "uniform-ce":
        return (-0.5 * (torch.log(p) + torch.log(1 - p)) - LOG2).mean()
    raise HashsdkError(f"fake_loss: expected 'entropy' or 'uniform-ce', got {form!r}")


class RealLoss:
    """The real-image loss chosen by name, with its quantization term.

    ``memory`` (pairwise only) holds the codes of the whole training set (n_train, bits),
    refreshed with each batch's outputs, so that each item is compared with every training
    item rather than its batch only.
    """

    def __init__(self, name: str, quantization_weight: float, margin: float = 8.0,
                 train_labels: torch.Tensor | None = None, bits: int | None = None,
                 memory: bool = False):
        if name not in ("pairwise", "triplet", "ce"):
            raise HashsdkError(f"loss must be 'pairwise', 'triplet' or 'ce', got {name!r}")
        self.name, self.eta, self.margin = name, quantization_weight, margin
        self.memory_codes = self.memory_labels = None
        if memory:
            if name != "pairwise" or train_labels is None or bits is None:
                raise HashsdkError("the code memory works with the pairwise loss and needs "
                                   "the training labels")
            self.memory_labels = train_labels
            self.memory_codes = torch.zeros(len(train_labels), bits,
                                            device=train_labels.device)

    def __call__(self, h: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None,
                 index: torch.Tensor | None = None) -> torch.Tensor:
        h = h.float()
        if self.name == "pairwise":
            if self.memory_codes is not None:
                self.memory_codes[index] = h.detach()
                loss = pairwise(h, labels, self.memory_codes, self.memory_labels)
            else:
                loss = pairwise(h, labels)
        elif self.name == "triplet":
            loss = triplet(h, labels, self.margin)
        else:
            if logits is None:
                raise HashsdkError("the ce loss needs a model built with num_classes > 0")
            loss = cross_entropy(logits.float(), labels)
        return loss + self.eta * quantization(h)
