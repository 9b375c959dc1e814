"""``orthohash``: OrthoHash (Hoe et al. 2021). A cosine classifier whose weights are fixed
orthogonal codewords (``codewords``): the logit of class k is s * cos(h, c_k), less a margin m
for the item's own class, and the loss is the cross-entropy of those logits (binary per class
for multi-hot labels). One term, per image; s = 8 and m = 0.2 as in the paper's CIFAR-10
setting. It maximizes the cosine to the own codeword, so the sign of h is that codeword.
``label_smoothing`` softens the cross-entropy's target (ce.cross_entropy)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashsdk.errors import HashsdkError
from hashsdk.train.losses.ce import cross_entropy
from hashsdk.train.losses.codewords import classes_of, codewords
from hashsdk.train.losses.real import LossOptions

SCALE = 8.0
MARGIN = 0.2


class OrthoHash:
    def __init__(self, options: LossOptions):
        if options.train_labels is None or options.bits is None:
            raise HashsdkError("the orthohash loss needs the training labels and the bits")
        words = codewords(classes_of(options.train_labels), options.bits,
                          rule=options.codewords)
        self.words = F.normalize(words, dim=1).to(options.train_labels.device)
        self.smoothing = options.label_smoothing

    def __call__(self, h: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None,
                 index: torch.Tensor | None) -> torch.Tensor:
        cos = F.normalize(h, dim=1) @ self.words.T
        own = F.one_hot(labels, cos.shape[1]).float() if labels.ndim == 1 else labels.float()
        return cross_entropy(SCALE * (cos - own * MARGIN), labels, self.smoothing)
