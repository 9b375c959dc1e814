"""``csq``: Central Similarity Quantization (Yuan et al. 2020). Each class has a fixed hash
centre (``codewords``); each code is pulled to its centre bit by bit, with the binary
cross-entropy between p = (h + 1) / 2 and the centre's bits, mean over bits and items. Per
image, no pairs: its cost does not grow with the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashsdk.errors import HashsdkError
from hashsdk.train.losses.codewords import classes_of, codewords, targets
from hashsdk.train.losses.real import LossOptions


class CentralSimilarity:
    def __init__(self, options: LossOptions):
        if options.train_labels is None or options.bits is None:
            raise HashsdkError("the csq loss needs the training labels and the bits")
        self.centres = codewords(classes_of(options.train_labels), options.bits,
                                  rule=options.codewords).to(
            options.train_labels.device)

    def __call__(self, h: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None,
                 index: torch.Tensor | None) -> torch.Tensor:
        centre = (targets(self.centres, labels) + 1) / 2
        p = ((h + 1) / 2).clamp(1e-6, 1 - 1e-6)
        return F.binary_cross_entropy(p, centre)
