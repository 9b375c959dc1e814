"""Checkpoints: one dict, written atomically, read with ``weights_only=True``.

    {"format_version": 1, "kind": "hashsdk.hashnet" | "hashsdk.dcgan",
     "model_args": {...},        # the model rebuilds from these alone
     "state_dict": {...}, "optimizer": {...}, "scheduler": {...} | None,
     "step": int, "epoch": int, "config": {...}, "rng": {...}, "extra": {...}}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hashsdk._atomic import atomic_write
from hashsdk.errors import HashsdkError

FORMAT_VERSION = 1
HASHNET_KIND = "hashsdk.hashnet"  # the kind of a HashNet's checkpoint (train/model.py)


def save(path: str | os.PathLike, **fields: Any) -> None:
    """Writes {format_version, **fields} so that a crash mid-write keeps the old file."""
    payload = {"format_version": FORMAT_VERSION, **fields}
    with atomic_write(path) as f:
        torch.save(payload, f)


def load(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Reads a checkpoint without unpickling code (``weights_only=True``).

    Raises HashsdkError for a missing or corrupt file, another format version, or another
    kind of model than ``kind``.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HashsdkError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise HashsdkError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise HashsdkError(f"{path}: not a hashsdk checkpoint")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise HashsdkError(f"{path}: checkpoint format {ckpt['format_version']}; this hashsdk "
                           f"reads {FORMAT_VERSION}")
    if kind is not None and ckpt.get("kind") != kind:
        raise HashsdkError(f"{path}: a {ckpt.get('kind')!r} checkpoint, expected {kind!r}")
    return ckpt
