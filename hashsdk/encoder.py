"""``Encoder``: images to binary codes through an exported model, without torch.

    from hashsdk import Encoder, HammingIndex

    encoder = Encoder("model.onnx")                 # or "model.engine" (TensorRT)
    codes = encoder.encode(["a.jpg", "b.jpg"])      # uint8 (2, ceil(bits / 8)), packed
    code = encoder.encode("a.jpg")                  # one item: one row, shape (ceil(bits / 8),)
    index = HammingIndex(encoder.bits); index.add(codes)

Preprocessing (decode, RGB or grey, resize, normalize) comes from the model's metadata; see
``hashsdk.preprocess`` for the accepted inputs. An Encoder is safe to share between threads.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from hashsdk._args import check_int
from hashsdk.codes import pack_bits
from hashsdk.errors import HashsdkError
from hashsdk.model_metadata import ModelMetadata
from hashsdk.preprocess import UnreadableImage, is_single, iter_items, load_uint8, to_input

ENCODER_BACKENDS = ("auto", "onnxruntime", "tensorrt")


@dataclass
class EncodedBatch:
    """One batch from ``encode_iter``.

    index: int64 (m,), positions of the encoded items in the input (unreadable images are
        missing); codes: uint8 (m, ceil(bits / 8)) packed, or float32 (m, bits);
    skipped: paths of the unreadable images of this batch.
    """

    index: np.ndarray
    codes: np.ndarray
    skipped: list[str]


class Encoder:
    """Turns images into codes with an ONNX model or a TensorRT engine.

    Args:
        path: ``.onnx`` (onnxruntime) or ``.engine`` (TensorRT) written by hashsdk-export.
        backend: "auto" picks by the file suffix; or "onnxruntime", "tensorrt".
        device: "cpu" or "cuda"; None is CUDA where the installed onnxruntime has it.
        threads: onnxruntime intra-op threads (default: every core this process may use).
    """

    def __init__(self, path: str | os.PathLike, backend: str = "auto", device: str | None = None,
                 threads: int | None = None):
        if backend not in ENCODER_BACKENDS:
            raise HashsdkError(f"backend must be one of {ENCODER_BACKENDS}, got {backend!r}")
        path = os.fspath(path)
        if backend == "auto":
            backend = "tensorrt" if path.endswith((".engine", ".plan", ".trt")) else "onnxruntime"
        if backend == "tensorrt":
            from hashsdk.backends.tensorrt import TensorRTBackend

            if device not in (None, "cuda"):
                raise HashsdkError("TensorRT engines run on CUDA only")
            self._backend = TensorRTBackend(path)
        else:
            from hashsdk.backends.onnxruntime import OnnxRuntimeBackend, cuda_available

            if device is None:
                device = "cuda" if cuda_available() else "cpu"
            self._backend = OnnxRuntimeBackend(path, device, threads)
        self.path, self.backend = path, backend

    @property
    def metadata(self) -> ModelMetadata:
        return self._backend.metadata

    @property
    def bits(self) -> int:
        return self.metadata.bits

    @property
    def input_size(self) -> int:
        return self.metadata.input_size

    @property
    def device(self) -> str:
        return self._backend.device

    def __repr__(self) -> str:
        return (f"Encoder({self.path!r}, backend={self.backend!r}, device={self.device!r}, "
                f"bits={self.bits})")

    def encode(self, images: Any, batch_size: int = 256, packed: bool = True,
               show_progress: bool = False) -> np.ndarray:
        """Codes for one image or a collection.

        Returns:
            packed uint8 (n, ceil(bits / 8)), or float32 outputs (n, bits) with
            ``packed=False``; one item gives one row (1-D). Unreadable image files are skipped
            with a warning that names them, so n can be smaller than the input.
        """
        single = is_single(images)
        index, rows, skipped = [], [], []
        for batch in self.encode_iter(images, batch_size, packed, show_progress):
            index.append(batch.index)
            rows.append(batch.codes)
            skipped += batch.skipped
        if skipped:
            warnings.warn(f"skipped {len(skipped)} unreadable image(s): {skipped[:5]}",
                          stacklevel=2)
        if not rows:
            if skipped:
                raise HashsdkError(f"no image could be read: {skipped[:5]}")
            raise HashsdkError("encode: expected at least one image, got an empty collection")
        codes = np.concatenate(rows)
        return codes[0] if single else codes

    def encode_iter(self, images: Iterable[Any], batch_size: int = 256, packed: bool = True,
                    show_progress: bool = False) -> Iterator[EncodedBatch]:
        """Encodes a large collection batch by batch, in bounded memory; see EncodedBatch."""
        check_int(batch_size, "batch_size")
        total = len(images) if hasattr(images, "__len__") and not is_single(images) else None
        items = enumerate(iter_items(images))
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="encoding", unit="img")
        try:
            while True:
                chunk = list(islice(items, batch_size))
                if not chunk:
                    return
                loaded, index, skipped = [], [], []
                for i, item in chunk:
                    try:
                        loaded.append(load_uint8(item, self.metadata))
                        index.append(i)
                    except UnreadableImage as exc:
                        skipped.append(exc.path)
                codes = (self._backend.run(to_input(loaded, self.metadata)) if loaded
                         else np.empty((0, self.bits), np.float32))
                if packed:
                    codes = pack_bits(codes, self.bits) if len(codes) else \
                        np.empty((0, (self.bits + 7) // 8), np.uint8)
                if bar is not None:
                    bar.update(len(chunk))
                yield EncodedBatch(np.asarray(index, np.int64), codes, skipped)
        finally:
            if bar is not None:
                bar.close()
