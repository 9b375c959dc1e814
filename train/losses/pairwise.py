"""``pairwise``: DPSH (Li et al. 2016). With theta_ij = h_i . h_j / 2 and s_ij = 1 for similar
pairs, L = mean_ij[ log(1 + exp(theta_ij)) - s_ij theta_ij ]: against the other items of the
batch, or (``options.memory``) against the stored codes of the whole training set, as the
original does; the memory (n_train, bits) is refreshed with each batch's outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashsdk.errors import HashsdkError
from hashsdk.train.losses.common import similarity
from hashsdk.train.losses.real import LossOptions


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


class Pairwise:
    def __init__(self, options: LossOptions):
        self.memory_codes = self.memory_labels = None
        if options.memory:
            if options.train_labels is None or options.bits is None:
                raise HashsdkError("the code memory needs the training labels")
            self.memory_labels = options.train_labels
            self.memory_codes = torch.zeros(len(options.train_labels), options.bits,
                                            device=options.train_labels.device)

    def __call__(self, h: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None,
                 index: torch.Tensor | None) -> torch.Tensor:
        if self.memory_codes is None:
            return pairwise(h, labels)
        self.memory_codes[index] = h.detach()
        return pairwise(h, labels, self.memory_codes, self.memory_labels)
