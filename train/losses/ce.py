"""``ce``: cross-entropy of a linear classifier on the codes (binary cross-entropy per label for
multi-hot labels); the model is built with a classifier (``needs_classifier``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashsdk.errors import HashsdkError
from hashsdk.train.losses.real import LossOptions


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0
                  ) -> torch.Tensor:
    """Cross-entropy of logits (B, K) against class ids (B,), or binary cross-entropy per
    label against multi-hot (B, K); ``smoothing`` eps: the class target (1 - eps) one-hot +
    eps / K, each binary target moved eps / 2 towards 1/2."""
    if labels.ndim == 1:
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    return F.binary_cross_entropy_with_logits(logits, labels.float() * (1 - smoothing)
                                              + smoothing / 2)


class CrossEntropy:
    def __init__(self, options: LossOptions):
        self.smoothing = options.label_smoothing

    def __call__(self, h: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None,
                 index: torch.Tensor | None) -> torch.Tensor:
        if logits is None:
            raise HashsdkError("the ce loss needs a model built with num_classes > 0")
        return cross_entropy(logits.float(), labels, self.smoothing)
