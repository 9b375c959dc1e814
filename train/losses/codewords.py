"""Fixed codewords, one per class, for the pointwise losses (``csq``, ``orthohash``).

``codewords(classes, bits, seed, rule)`` gives float (classes, bits) in {-1, +1}, by
``hash.codewords`` (CODEWORD_RULES):

    hadamard   rows of a Hadamard matrix of order n and their negatives, where n is the largest
               order <= bits that ``hadamard`` builds and there are at most 2 x n classes; the
               other bits - n columns seeded random +-1 (Bernoulli 1/2). Any two rows then
               differ in at least n / 2 positions (exactly bits / 2 where n = bits), the most a
               set of codewords can spread on average (Plotkin's bound). Orders built:
               2^k x m for m = 1 (Sylvester) or m = q + 1 with q a prime = 3 mod 4 (Paley's
               first construction), Sylvester first: 12, 16, 20, 24, 32, 40, 44, 48, 64, ...
               At 48 bits and 10 classes: distance 24 for every pair; at 12 bits: 6.
    sylvester  the rule before the hadamard rule: Sylvester's rows where bits is a power of two
               (the same rows as hadamard there), else random +-1 rows for every column, which
               sit near bits / 2 apart but not all of them (10 classes: 18 of 48 bits and 3 of
               12 at the closest pair, seed 0). Kept so that runs made with it reproduce.

More than 2 x n classes: random +-1 rows under either rule. CSQ (Yuan et al. 2020) takes the
rows as hash centres; OrthoHash (Hoe et al. 2021) as the target codes of a cosine classifier.
"""

from __future__ import annotations

import torch

from hashsdk.errors import HashsdkError
from hashsdk.train.losses import CODEWORD_RULES, DEFAULT_CODEWORDS


def sylvester(n: int) -> torch.Tensor:
    """The n x n Sylvester Hadamard matrix (n a power of two), float +-1."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % d for d in range(2, int(q ** 0.5) + 1))


def paley(q: int) -> torch.Tensor:
    """Paley's first construction: the (q + 1) x (q + 1) Hadamard matrix I + S for a prime
    q = 3 mod 4, where S has a first row of ones, a first column of minus ones and the
    Jacobsthal matrix Q[i, j] = chi(j - i) (chi: +1 on quadratic residues mod q, -1 on the
    others, 0 on 0); Q is skew-symmetric because -1 is no residue when q = 3 mod 4."""
    if not (_is_prime(q) and q % 4 == 3):
        raise HashsdkError(f"paley: expected a prime q = 3 mod 4, got {q}")
    residues = {i * i % q for i in range(1, q)}
    chi = torch.tensor([0.0] + [1.0 if a in residues else -1.0 for a in range(1, q)])
    idx = torch.arange(q)
    s = torch.zeros(q + 1, q + 1)
    s[0, 1:], s[1:, 0] = 1.0, -1.0
    s[1:, 1:] = chi[(idx[None, :] - idx[:, None]) % q]
    return torch.eye(q + 1) + s


def hadamard(n: int) -> torch.Tensor | None:
    """An n x n Hadamard matrix (float +-1, H H^T = n I) where n = 2^k x m with m = 1 or
    m - 1 a prime = 3 mod 4, the largest power of two first (so powers of two are
    Sylvester's); None for other orders."""
    k = (n & -n).bit_length() - 1 if n > 0 else 0
    for power in range(k, -1, -1):
        m = n >> power
        if m == 1:
            return sylvester(n)
        if _is_prime(m - 1) and (m - 1) % 4 == 3:
            return torch.kron(sylvester(1 << power), paley(m - 1))
    return None


def _random_rows(rows: int, cols: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (rows, cols), generator=gen).float() * 2 - 1


def codewords(classes: int, bits: int, seed: int = 0, rule: str = DEFAULT_CODEWORDS
              ) -> torch.Tensor:
    if rule not in CODEWORD_RULES:
        raise HashsdkError(f"codewords: expected one of {CODEWORD_RULES}, got {rule!r}")
    if rule == "sylvester":
        if bits & (bits - 1) == 0 and classes <= 2 * bits:
            h = sylvester(bits)
            return torch.cat([h, -h], 0)[:classes]
        return _random_rows(classes, bits, seed)
    h = next(h for o in range(bits, 0, -1) if (h := hadamard(o)) is not None)
    n = h.shape[0]
    if classes > 2 * n:
        return _random_rows(classes, bits, seed)
    rows = torch.cat([h, -h], 0)[:classes]
    return torch.cat([rows, _random_rows(classes, bits - n, seed)], 1)


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
