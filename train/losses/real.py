"""``RealLoss``: the registered real-image loss chosen by name, plus the quantization term
eta * mean((h - sign(h))^2), which pulls outputs to +-1."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashsdk.errors import HashsdkError
from hashsdk.train.losses import DEFAULT_CODEWORDS
from hashsdk.train.losses.common import quantization
from hashsdk.train.mix import Mix


@dataclass(frozen=True)
class LossOptions:
    """What a loss may be made with: the triplet margin, the pairwise code memory, the
    training split's labels (int64 (n,) or multi-hot (n, K), on the device), the bits, and
    in frozen-feature mode the training split's features (float32 (n, F), on the device;
    the loss's ``index`` selects a batch's rows), the rule of the class codewords, and the
    label smoothing of a loss that ``smooths`` (0: none), and the contrastive loss's KoLeo
    weight (hash.koleo; 0: none)."""

    margin: float = 8.0
    memory: bool = False
    train_labels: torch.Tensor | None = None
    bits: int | None = None
    train_features: torch.Tensor | None = None
    codewords: str = DEFAULT_CODEWORDS  # csq's and orthohash's rule (codewords.py)
    label_smoothing: float = 0.0
    koleo: float = 0.0


class RealLoss:
    """The real-image loss chosen by name (hashsdk.train.losses's registry), with its
    quantization term; ``memory`` is the pairwise loss's code memory."""

    def __init__(self, name: str, quantization_weight: float, margin: float = 8.0,
                 train_labels: torch.Tensor | None = None, bits: int | None = None,
                 memory: bool = False, train_features: torch.Tensor | None = None,
                 codewords: str = DEFAULT_CODEWORDS, label_smoothing: float = 0.0,
                 koleo: float = 0.0):
        from hashsdk.train.losses import lookup

        entry = lookup(name)
        if memory and name != "pairwise":
            raise HashsdkError("the code memory works with the pairwise loss")
        if label_smoothing and not entry.smooths:
            raise HashsdkError(f"label smoothing needs a loss over class logits, not {name!r}")
        self.name, self.eta, self.entry = name, quantization_weight, entry
        self.loss = entry.load()(LossOptions(margin, memory, train_labels, bits,
                                             train_features, codewords, label_smoothing,
                                             koleo))

    def __call__(self, h: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None,
                 index: torch.Tensor | None = None, mix: Mix | None = None) -> torch.Tensor:
        """The loss of outputs h (B, bits); ``mix``: how the batch's images were mixed
        (train/mix.py), scored as lam * L(labels) + (1 - lam) * L(the partners' labels)."""
        h = h.float()
        logits = None if logits is None else logits.float()
        loss = self.loss(h, labels, logits, index)
        if mix is not None:
            if not self.entry.mixes:
                raise HashsdkError(f"the {self.name} loss cannot score mixed images")
            loss = mix.lam * loss + (1 - mix.lam) * self.loss(h, labels[mix.partner], logits,
                                                             index)
        return loss + self.eta * quantization(h)

    @property
    def memory_codes(self) -> torch.Tensor | None:
        """The pairwise loss's code memory (n_train, bits), which checkpoints keep; else None."""
        return getattr(self.loss, "memory_codes", None)
