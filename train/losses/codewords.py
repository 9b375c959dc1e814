"""Fixed codewords, one per class, for the pointwise losses (``csq``, ``orthohash``).

``codewords(classes, bits, seed)`` gives float (classes, bits) in {-1, +1}: rows of a
Hadamard matrix (Sylvester's construction) and their negatives where ``bits`` is a power of two
and there are at most 2 x bits classes (any two rows then differ in bits / 2 positions, or all
of them for a row and its negative: the largest spread there is), else random +-1 rows
(Bernoulli 1/2, seeded), which sit near bits / 2 apart. CSQ (Yuan et al. 2020) takes them as
hash centres; OrthoHash (Hoe et al. 2021) as the target codes of a cosine classifier.
"""

from __future__ import annotations

import torch


def hadamard(n: int) -> torch.Tensor:
    """The n x n Sylvester Hadamard matrix (n a power of two), float +-1."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def codewords(classes: int, bits: int, seed: int = 0) -> torch.Tensor:
    if bits & (bits - 1) == 0 and classes <= 2 * bits:
        h = hadamard(bits)
        return torch.cat([h, -h], 0)[:classes].clone()
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (classes, bits), generator=gen).float() * 2 - 1


def classes_of(labels: torch.Tensor) -> int:
    """How many classes labels name: int64 (n,) class ids, or multi-hot (n, K)."""
    return int(labels.shape[1]) if labels.ndim == 2 else int(labels.max()) + 1


def targets(words: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each item's codeword, float (B, bits): its class's, or for multi-hot labels the sign of
    the mean of its classes' codewords (ties to +1), as CSQ does."""
    if labels.ndim == 1:
        return words[labels]
    mean = labels.float() @ words / labels.float().sum(1, keepdim=True).clamp(min=1)
    return torch.where(mean >= 0, 1.0, -1.0)
