"""Inference backends of the Encoder, and their registry.

A backend is a class with ``metadata`` (a ModelMetadata), ``device`` ("cpu" or "cuda") and
``run(x) -> outputs``: float32 (N, C, H, W) in, float32 (N, bits) out, safe to call from several
threads at once; its module has ``open_model(path, device, threads)``, which makes one (``device``
None: the backend's own choice). Registered here by name, with the file suffixes that
``backend="auto"`` picks it for; the module is imported only when a model is opened with it,
so that an optional runtime (TensorRT) costs nothing until asked for. A new backend is one
module in this folder plus one ``register_backend`` line below (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from hashsdk.errors import HashsdkError


@dataclass(frozen=True)
class BackendEntry:
    """name: what ``Encoder(backend=)`` takes; suffixes: the files ``"auto"`` opens with it;
    module: the module (in this package) whose ``open_model(path, device, threads)`` makes one."""

    name: str
    suffixes: tuple[str, ...]
    module: str


ENCODER_BACKENDS: dict[str, BackendEntry] = {}
DEFAULT_BACKEND = "onnxruntime"  # for files whose suffix no backend claims


def register_backend(name: str, suffixes: tuple[str, ...], module: str) -> None:
    if name in ENCODER_BACKENDS or name == "auto":
        raise HashsdkError(f"encoder backend {name!r} is already registered")
    ENCODER_BACKENDS[name] = BackendEntry(name, suffixes, module)


register_backend("onnxruntime", (".onnx",), "hashsdk.encoder.backends.onnxruntime")
register_backend("tensorrt", (".engine", ".plan", ".trt"), "hashsdk.encoder.backends.tensorrt")


def choices() -> tuple[str, ...]:
    """What ``Encoder(backend=)`` accepts: "auto", then each registered name."""
    return ("auto", *ENCODER_BACKENDS)


def backend_for(path: str) -> str:
    """The backend ``"auto"`` opens ``path`` with: the one that claims its suffix."""
    for entry in ENCODER_BACKENDS.values():
        if path.endswith(entry.suffixes):
            return entry.name
    return DEFAULT_BACKEND


def open_backend(path: str | os.PathLike, backend: str = "auto", device: str | None = None,
                 threads: int | None = None) -> tuple[str, Any]:
    """(the backend's name, the backend opened on ``path``)."""
    if backend not in choices():
        raise HashsdkError(f"backend must be one of {choices()}, got {backend!r}")
    path = os.fspath(path)
    name = backend_for(path) if backend == "auto" else backend
    module = importlib.import_module(ENCODER_BACKENDS[name].module)
    return name, module.open_model(path, device, threads)
