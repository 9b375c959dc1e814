"""``--verify``: the same real images through torch and through the exported model.

The torch side uses the training preprocessing; the exported side goes through
``hashsdk.Encoder``, numpy preprocessing included, so the whole production path is checked.
Reported: the largest absolute output difference, the share of bits that agree (target at
least 99.9%), and the mAP of both on a small retrieval set cut from the same images.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from hashsdk import Encoder, mean_average_precision
from hashsdk._atomic import atomic_write
from hashsdk.errors import HashsdkError
from hashsdk.export.onnx_file import BIT_AGREEMENT_TARGETS

if TYPE_CHECKING:
    from hashsdk.train.data import ImageSet, Split

BIT_AGREEMENT_TARGET = BIT_AGREEMENT_TARGETS["fp32"]


@dataclass
class VerifyReport:
    images: int
    max_abs_diff: float
    bit_agreement: float
    map_torch: float
    map_exported: float
    target: float = BIT_AGREEMENT_TARGET

    @property
    def passed(self) -> bool:
        return self.bit_agreement >= self.target

    def as_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed)

    def summary(self) -> str:
        return (f"{self.images} images: max |torch - exported| = {self.max_abs_diff:.2e}, "
                f"bits agree {100 * self.bit_agreement:.3f}% (target "
                f"{100 * self.target:.1f}%), mAP torch {self.map_torch:.4f} vs exported "
                f"{self.map_exported:.4f}")


def write_report(onnx_path: str | os.PathLike, report: VerifyReport | Int8Report) -> Path:
    """``<onnx_path>.verify.json``, written atomically; returns its path."""
    path = Path(os.fspath(onnx_path) + ".verify.json")
    with atomic_write(path) as f:
        f.write((json.dumps(report.as_dict(), indent=1) + "\n").encode())
    return path


def compare(reference: np.ndarray, exported: np.ndarray, labels: np.ndarray,
            queries: int) -> VerifyReport:
    """Both models' outputs float (N, bits) on the same images; the first ``queries`` rows
    are queries against the rest."""
    if reference.shape != exported.shape:
        raise HashsdkError(f"outputs differ in shape: {reference.shape} vs {exported.shape}")
    agree = float(((reference > 0) == (exported > 0)).mean())
    q = slice(0, queries)
    db = slice(queries, None)
    maps = [mean_average_precision(o[q], o[db], labels[q], labels[db]) for o in
            (reference, exported)]
    return VerifyReport(len(reference), float(np.abs(reference - exported).max()), agree,
                        maps[0], maps[1])


def verify(onnx_path: str, model: torch.nn.Module, images: np.ndarray, labels: np.ndarray,
           queries: int = 100) -> VerifyReport:
    """uint8 images (N, H, W, C) with labels (N,) through torch and onnxruntime."""
    from hashsdk.train.evaluate import encode

    if not 0 < queries < len(images):
        raise HashsdkError(f"verify needs at least one query and one database image; got "
                           f"{queries} queries among {len(images)} images")
    reference = encode(model, images, torch.device("cpu"))
    exported = Encoder(onnx_path, device="cpu").encode(images, packed=False)
    return compare(reference, exported, labels, queries)


def run_split_path(checkpoint_path: str | os.PathLike) -> Path | None:
    """The checkpoint's run's split.npz: beside the checkpoint or in the folder above; None."""
    here = Path(checkpoint_path).resolve().parent
    return next((p / "split.npz" for p in (here, here.parent) if (p / "split.npz").exists()),
                None)


def run_split(ckpt: dict, checkpoint_path: str | os.PathLike) -> tuple[ImageSet, Split]:
    """The dataset of a checkpoint's config and its run's split: split.npz beside or above the
    checkpoint, else a fresh one from the same config."""
    from hashsdk.train.config import from_saved
    from hashsdk.train.data import Split, load_dataset, make_split

    cfg = from_saved(ckpt["config"])
    data = load_dataset(cfg.data)
    found = run_split_path(checkpoint_path)
    return data, (Split.load(found) if found else make_split(data, cfg.data))


def validation_images(ckpt: dict, checkpoint_path: str, count: int = 2000,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Real images for verification: up to 100 of the training run's queries first, then
    database images, up to ``count`` in all; returns (images, labels, number of queries)."""
    data, split = run_split(ckpt, checkpoint_path)
    rng = np.random.default_rng(seed)
    q = split.query[:100]
    db = rng.choice(split.database, min(count - len(q), len(split.database)), replace=False)
    chosen = np.concatenate([q, db])
    labels = data.labels[chosen]
    if labels.ndim != 1:
        raise HashsdkError("verify scores single-label data; this run is multi-label")
    return data.images[chosen], labels, len(q)


@dataclass
class Int8Report:
    """An INT8 model against its FP32 model on the run's whole protocol (its queries against
    its database): the share of code bits that agree, and both mAP@all."""

    queries: int
    database: int
    bit_agreement: float
    map_fp32: float
    map_int8: float

    @property
    def map_change(self) -> float:
        return self.map_int8 - self.map_fp32

    def as_dict(self) -> dict:
        return dict(asdict(self), map_change=self.map_change)

    def summary(self) -> str:
        return (f"{self.queries} queries against {self.database}: INT8 bits agree with FP32 "
                f"on {100 * self.bit_agreement:.2f}%, mAP FP32 {self.map_fp32:.4f} vs INT8 "
                f"{self.map_int8:.4f} ({100 * self.map_change:+.2f} points)")


def verify_int8(int8_path: str | os.PathLike, fp32_path: str | os.PathLike,
                checkpoint_path: str | os.PathLike) -> Int8Report:
    """Both exported models through the Encoder on the checkpoint run's protocol."""
    from hashsdk.train.model import HashNet

    _, ckpt = HashNet.from_checkpoint(checkpoint_path)
    data, split = run_split(ckpt, checkpoint_path)
    if data.labels.ndim != 1:
        raise HashsdkError("verify scores single-label data; this run is multi-label")
    needed = np.concatenate([split.query, split.database])
    outputs = [Encoder(p, device="cpu").encode(data.images[needed], packed=False)
               for p in (fp32_path, int8_path)]
    q, db = slice(0, len(split.query)), slice(len(split.query), None)
    labels = data.labels[needed]
    maps = [mean_average_precision(o[q], o[db], labels[q], labels[db]) for o in outputs]
    agree = float(((outputs[0] > 0) == (outputs[1] > 0)).mean())
    return Int8Report(len(split.query), len(split.database), agree, maps[0], maps[1])

