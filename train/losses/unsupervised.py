"""Label-free losses: they read the backbone's features of the batch, not labels, and so train
in frozen-feature mode (train/frozen.py), where those features are cached.

    itq     PCA to ``bits`` dimensions, then ITQ's rotation (Gong and Lazebnik 2011), fitted in
            closed form on the training features (train/frozen.py ``fit_itq``); no batches.
    edit-itq  the same on other directions: those along which edited copies of the training
            images (hashsdk.edits) move least against how far the images lie apart (LDA with
            each image its own class and its copies as members), then ITQ's rotation;
            closed form too (train/frozen.py ``fit_edit_itq``).
    bihalf  a hash layer trained so that the codes' similarities match the features': the
            mean squared difference between cos(f_i, f_j) of the raw features and
            cos(b_i, b_j) = b_i . b_j / bits, for i in the batch's first half and j its
            partner in the second, where b is Bi-half's balanced binarization (Li and van
            Gemert 2021: in each batch, the upper half of each bit's outputs is +1, the lower
            half -1; gradients pass straight through to h).
    contrastive  a network trained so that each image's code is nearest its edited copies'
            and far from the other images' (NT-Xent between an image and one edited copy of it,
            the batch's other copies the negatives, as CIBHash (Qiu et al. 2021) and SimCLR
            do). Fine-tuned, the backbone learns from each batch and a fresh edited copy of
            each image (train/loop.py); in frozen-feature mode a hash layer learns from the
            cached features of the images and of EDIT_VIEWS copies each. Either way each bit's
            threshold then moves to its median (``centre_bits``), so the bits are balanced.

The label-free losses other than contrastive read the features: they train in frozen-feature
mode only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashsdk.errors import HashsdkError
from hashsdk.train.losses.real import LossOptions


class ITQ:
    """Registered for its name; fitted whole by train/frozen.py, never called per batch."""

    def __init__(self, options: LossOptions):
        pass

    def __call__(self, h, labels, logits, index):
        raise HashsdkError("the itq losses are fitted in closed form in frozen-feature mode")


def bihalf(h: torch.Tensor) -> torch.Tensor:
    """float (B, bits) -> +-1 (B, bits), half of each column +1 (its larger values); the
    gradient of h passes straight through."""
    rank = h.argsort(dim=0).argsort(dim=0)
    hard = torch.where(rank >= h.shape[0] // 2, 1.0, -1.0).to(h.dtype)
    return h + (hard - h).detach()


class BiHalf:
    """Bi-half's loss as its authors train it: the batch's first half paired with its second
    half, item by item, and the mean squared difference between the pair's code cosine and
    the cosine of their raw (uncentred) features. Half-batch pairs, not every pair of the
    batch: the all-pairs form of the same target, centred or not, collapsed the codes on
    CIFAR-10's features (docs/dedup.md has the measurement)."""

    def __init__(self, options: LossOptions):
        if options.train_features is None:
            raise HashsdkError("the bihalf loss needs the backbone's features: it trains in "
                               "frozen-feature mode (--frozen)")
        self.features = options.train_features.float()

    def __call__(self, h: torch.Tensor, labels, logits, index: torch.Tensor) -> torch.Tensor:
        """h: float (B, bits), B >= 2 (an odd batch's last item sits out); index: (B,) rows of
        the training features."""
        half = h.shape[0] // 2
        if half == 0:
            raise HashsdkError("the bihalf loss pairs the batch's halves: it needs a batch "
                               "of at least 2")
        b, f = bihalf(h), self.features[index]
        return F.mse_loss(F.cosine_similarity(b[:half], b[half:2 * half]),
                          F.cosine_similarity(f[:half], f[half:2 * half]))


# NT-Xent's temperature on cosine similarities of the outputs (CIBHash uses 0.3)
CONTRASTIVE_TEMPERATURE = 0.3


class Contrastive:
    """``needs_views``: ``h`` is (2B, bits), the batch's B images then one edited copy of each
    in the same order; the loss is NT-Xent both ways (image to copies, copy to images), plus
    ``options.koleo`` times the KoLeo term of the B images' normalized outputs."""

    def __init__(self, options: LossOptions):
        self.koleo = options.koleo

    def __call__(self, h: torch.Tensor, labels, logits, index) -> torch.Tensor:
        if h.shape[0] % 2:
            raise HashsdkError("the contrastive loss needs the batch then one copy of each item")
        a, b = F.normalize(h, dim=1).chunk(2)
        sim = a @ b.T / CONTRASTIVE_TEMPERATURE
        target = torch.arange(len(a), device=h.device)
        loss = (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2
        return loss + self.koleo * koleo(a) if self.koleo else loss


def koleo(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The Kozachenko-Leonenko entropy term of rows ``z`` (B, d), B >= 2: minus the mean log
    Euclidean distance from each row to its nearest other row. Lower where the rows spread
    apart; the copies are left out of ``z``, so that it never pushes a copy from its image."""
    if len(z) < 2:
        raise HashsdkError("the KoLeo term needs a batch of at least 2")
    d = torch.cdist(z, z)
    d = d + torch.eye(len(z), device=z.device, dtype=d.dtype) * 1e9  # not oneself
    return -torch.log(d.min(dim=1).values + eps).mean()
