"""``Encoder``: images to binary codes through an exported model, without torch.

    from hashsdk import Encoder, HammingIndex

    encoder = Encoder("model.onnx")                 # or "model.engine" (TensorRT)
    codes = encoder.encode(["a.jpg", "b.jpg"])      # uint8 (2, ceil(bits / 8)), packed
    code = encoder.encode("a.jpg")                  # one item: one row, shape (ceil(bits / 8),)
    index = HammingIndex(encoder.bits); index.add(codes)

Preprocessing (decode, RGB or grey, resize, normalize) comes from the model's metadata; see
``hashsdk.preprocess`` for the accepted inputs. An Encoder is safe to share between threads.

Files and bytes are decoded by a small thread pool (Pillow releases the GIL while it decodes),
one batch ahead of the model, so decoding overlaps inference; at most two batches are in
memory at a time, whatever the length of the input. An unreadable image raises (naming the
file) unless ``on_error="skip"``, so that row i of the codes is always input i unless asked.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from hashsdk._args import check_int
from hashsdk.codes import pack_bits
from hashsdk.errors import HashsdkError
from hashsdk.model_metadata import ModelMetadata
from hashsdk.preprocess import (
    DEFAULT_MAX_PIXELS,
    UnreadableImage,
    is_single,
    iter_items,
    load_uint8,
    to_input,
)

ENCODER_BACKENDS = ("auto", "onnxruntime", "tensorrt")


@dataclass
class EncodedBatch:
    """One batch from ``encode_iter``.

    index: int64 (m,), positions of the encoded items in the input (unreadable images are
        missing); codes: uint8 (m, ceil(bits / 8)) packed, or float32 (m, bits);
    failures: the unreadable images of this batch, each an UnreadableImage with its path and
        reason; ``skipped`` lists their paths.
    """

    index: np.ndarray
    codes: np.ndarray
    failures: list[UnreadableImage] = field(default_factory=list)

    @property
    def skipped(self) -> list[str]:
        return [f.path for f in self.failures]


@dataclass
class _Pending:
    """A batch whose decoding has started: (position, loaded item or Future) in input order."""

    items: list[tuple[int, Any]]
    size: int


class Encoder:
    """Turns images into codes with an ONNX model or a TensorRT engine.

    Args:
        path: ``.onnx`` (onnxruntime) or ``.engine`` (TensorRT) written by hashsdk-export.
        backend: "auto" picks by the file suffix; or "onnxruntime", "tensorrt".
        device: "cpu" or "cuda"; None is CUDA where the installed onnxruntime has it.
        threads: onnxruntime intra-op threads (default: every core this process may use).
        max_pixels: images whose header claims more pixels are unreadable, before any is
            decoded (default: Pillow's warning threshold, about 89 million; None: no limit of
            ours; Pillow itself refuses more than twice its ``Image.MAX_IMAGE_PIXELS``).
        decode_threads: threads that decode files and bytes (default: the cores, up to 4).
    """

    def __init__(self, path: str | os.PathLike, backend: str = "auto", device: str | None = None,
                 threads: int | None = None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 decode_threads: int | None = None):
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
        self.max_pixels = None if max_pixels is None else check_int(max_pixels, "max_pixels")
        self._decode_threads = check_int(decode_threads or min(4, os.cpu_count() or 1),
                                         "decode_threads")
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

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
                f"bits={self.bits}, precision={self.metadata.precision!r})")

    def encode(self, images: Any, batch_size: int = 256, packed: bool = True,
               show_progress: bool = False, *, on_error: str = "raise",
               return_index: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Codes for one image or a collection.

        Args:
            on_error: "raise" (an unreadable image raises UnreadableImage, naming it) or "skip"
                (it is left out, with a warning; row i is then no longer input i, so ask for
                the positions with return_index).
            return_index: also return int64 (n,), the input position of each row.

        Returns:
            packed uint8 (n, ceil(bits / 8)), or float32 outputs (n, bits) with
            ``packed=False``; one item gives one row (1-D). With return_index, (codes, index).
        """
        if on_error not in ("raise", "skip"):
            raise HashsdkError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        single = is_single(images)
        index, rows, failures = [], [], []
        for batch in self.encode_iter(images, batch_size, packed, show_progress):
            if batch.failures and on_error == "raise":
                raise batch.failures[0]
            index.append(batch.index)
            rows.append(batch.codes)
            failures += batch.failures
        if failures:
            warnings.warn(f"skipped {len(failures)} unreadable image(s): "
                          f"{[f.path for f in failures[:5]]}", stacklevel=2)
        if not rows or not sum(len(r) for r in rows):
            if failures:
                raise HashsdkError(f"no image could be read: {failures[0]}")
            raise HashsdkError("encode: expected at least one image, got an empty collection")
        codes, positions = np.concatenate(rows), np.concatenate(index)
        if single:
            codes = codes[0]
        return (codes, positions) if return_index else codes

    def encode_iter(self, images: Iterable[Any], batch_size: int = 256, packed: bool = True,
                    show_progress: bool = False) -> Iterator[EncodedBatch]:
        """Encodes a large collection batch by batch, in bounded memory; see EncodedBatch.
        Unreadable images are reported in each batch's ``failures``, never raised."""
        check_int(batch_size, "batch_size")
        total = len(images) if hasattr(images, "__len__") and not is_single(images) else None
        items = enumerate(iter_items(images))
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="encoding", unit="img")
        try:
            pending = self._start(list(islice(items, batch_size)))
            while pending.size:
                upcoming = self._start(list(islice(items, batch_size)))  # decodes meanwhile
                batch = self._finish(pending, packed)
                if bar is not None:
                    bar.update(pending.size)
                yield batch
                pending = upcoming
        finally:
            if bar is not None:
                bar.close()

    def _start(self, chunk: list[tuple[int, Any]]) -> _Pending:
        """Starts decoding the files and bytes of ``chunk`` on the pool; arrays and PIL images
        are brought to the model's size at once (they need no decoding)."""
        out: list[tuple[int, Any]] = []
        for i, item in chunk:
            if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
                out.append((i, self._decoder().submit(self._load, item)))
            else:
                out.append((i, self._load(item)))
        return _Pending(out, len(chunk))

    def _load(self, item: Any) -> np.ndarray | UnreadableImage:
        try:
            return load_uint8(item, self.metadata, self.max_pixels)
        except UnreadableImage as exc:
            return exc

    def _finish(self, pending: _Pending, packed: bool) -> EncodedBatch:
        loaded, index, failures = [], [], []
        for i, item in pending.items:
            item = item.result() if isinstance(item, Future) else item
            if isinstance(item, UnreadableImage):
                failures.append(item)
            else:
                loaded.append(item)
                index.append(i)
        codes = (self._backend.run(to_input(loaded, self.metadata)) if loaded
                 else np.empty((0, self.bits), np.float32))
        if packed:
            codes = pack_bits(codes, self.bits) if len(codes) else \
                np.empty((0, (self.bits + 7) // 8), np.uint8)
        return EncodedBatch(np.asarray(index, np.int64), codes, failures)

    def _decoder(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._decode_threads,
                                                thread_name_prefix="hashsdk-decode")
        return self._pool
