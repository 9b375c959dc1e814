"""Losses, and their registry: the real-image losses (chosen by ``hash.loss``) and the fake-image
losses (``hash.fake_loss``).

A real-image loss is a class in a module of this folder, made as ``cls(options)`` from a
``LossOptions`` and called as ``loss(h, labels, logits, index)``:

    h        float (B, bits), the network's outputs in (-1, 1)
    labels   int64 (B,) class ids, or multi-hot (B, K); None for a loss that needs none
    logits   float (B, classes) of the classifier on the codes, or None
    index    int64 (B,) the items' rows in the training split
    returns  a scalar tensor, before the quantization term (``RealLoss`` adds it)

A fake-image loss is a function ``f(h) -> scalar`` of the outputs on fake images.

Registering one is one line below: its name, ``module:attribute`` in this folder (imported
when a run uses it, so that reading the registry needs no torch: the config's choices and the
CLI's help come from it), whether it needs labels and a classifier, and a line for the help.
docs/architecture.md shows a whole new loss. ``RealLoss``, ``fake_loss``, ``similarity`` and
``quantization`` are importable from here as before.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from hashsdk.errors import HashsdkError


@dataclass(frozen=True)
class LossEntry:
    """One registered loss. ``target``: "module:attribute" inside hashsdk.train.losses."""

    name: str
    target: str
    about: str
    needs_labels: bool = True
    needs_classifier: bool = False
    needs_features: bool = False  # label-free: reads the cached features (frozen mode only)
    # trained on edited copies too: h is the batch then one copy of each (train/frozen.py)
    needs_views: bool = False
    # learns from edited copies of the training images (hash.training_edits draws their
    # edits): in the batches (needs_views) or in closed form from their cached features
    edited_copies: bool = False
    # scores each image against its own label alone, so a mixed image (hash.mixup, hash.cutmix:
    # train/mix.py) scores as lam * L(y) + (1 - lam) * L(y of its partner)
    mixes: bool = False
    # a cross-entropy over class logits, which hash.label_smoothing softens
    smooths: bool = False

    def load(self) -> Any:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(f"hashsdk.train.losses.{module}"), attribute)


REAL_LOSSES: dict[str, LossEntry] = {}
# hash.codewords: the rule that picks csq's and orthohash's class codewords (codewords.py);
# the default as measured on a validation split (within noise, and it guarantees the spread):
# results/retrieval-cifar10-recipes-8epochs-codewords-12bits.md
CODEWORD_RULES = ("hadamard", "sylvester")
DEFAULT_CODEWORDS = "hadamard"
FAKE_LOSSES: dict[str, LossEntry] = {}


def register_loss(name: str, target: str, about: str, *, needs_labels: bool = True,
                  needs_classifier: bool = False, needs_features: bool = False,
                  needs_views: bool = False, mixes: bool = False, smooths: bool = False,
                  edited_copies: bool = False, fake: bool = False) -> None:
    table = FAKE_LOSSES if fake else REAL_LOSSES
    if name in table:
        raise HashsdkError(f"loss {name!r} is already registered")
    table[name] = LossEntry(name, target, about, needs_labels, needs_classifier, needs_features,
                           needs_views, edited_copies or needs_views, mixes, smooths)


def lookup(name: str, fake: bool = False) -> LossEntry:
    table, key = (FAKE_LOSSES, "fake_loss") if fake else (REAL_LOSSES, "loss")
    if name not in table:
        raise HashsdkError(f"{key}: expected one of {tuple(table)}, got {name!r}")
    return table[name]


def loss_help(fake: bool = False) -> str:
    """Each registered name and what it is, for the CLI's help."""
    return "; ".join(f"{e.name}: {e.about}" for e in (FAKE_LOSSES if fake else
                                                     REAL_LOSSES).values()) + "."


register_loss("pairwise", "pairwise:Pairwise", "DPSH's pairwise likelihood (Li et al. 2016)")
register_loss("triplet", "triplet:Triplet", "DNNH-style triplet ranking (Lai et al. 2015)")
register_loss("ce", "ce:CrossEntropy", "cross-entropy of a classifier on the codes",
              needs_classifier=True, mixes=True, smooths=True)
register_loss("csq", "csq:CentralSimilarity",
              "CSQ's hash centres, one per class, each code pulled to its own (Yuan et al. 2020)",
              mixes=True)
register_loss("orthohash", "orthohash:OrthoHash",
              "cosine to fixed orthogonal class codewords, with a margin (Hoe et al. 2021)",
              mixes=True, smooths=True)
register_loss("itq", "unsupervised:ITQ", "label-free: PCA then ITQ's rotation, fitted in closed "
              "form on the frozen features (Gong and Lazebnik 2011)", needs_labels=False,
              needs_features=True)
register_loss("edit-itq", "unsupervised:ITQ", "label-free: ITQ on the directions that edits "
              "(crop, pad, blur, text, ...) move least against how far images lie apart, from "
              "edited copies of the training images, in closed form", needs_labels=False,
              needs_features=True, edited_copies=True)
register_loss("bihalf", "unsupervised:BiHalf", "label-free: codes whose similarities match the "
              "frozen features', with Bi-half's balanced bits (Li and van Gemert 2021)",
              needs_labels=False, needs_features=True)
register_loss("contrastive", "unsupervised:Contrastive", "label-free: each code nearest its "
              "edited copies' and far from other images' (NT-Xent, as CIBHash); fine-tunes the "
              "backbone on each batch and an edited copy of it, or with --frozen trains a hash "
              "layer on cached features of the images and their copies", needs_labels=False,
              needs_views=True)
register_loss("entropy", "fake:entropy", "KL(p || 1/2): bounded, log 2 at most", fake=True)
register_loss("uniform-ce", "fake:uniform_ce", "KL(1/2 || p), LSRO's 50/50 target: unbounded",
              fake=True)

_MOVED = {"RealLoss": "real", "LossOptions": "real", "fake_loss": "fake", "LOG2": "fake",
          "similarity": "common", "quantization": "common"}


def __getattr__(name: str) -> Any:  # the torch parts, imported when asked for
    if name in _MOVED:
        return getattr(importlib.import_module(f"hashsdk.train.losses.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
