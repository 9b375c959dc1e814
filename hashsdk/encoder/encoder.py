"""``Encoder``: images to binary codes through an exported model, without torch.

    from hashsdk import Encoder, HammingIndex

    encoder = Encoder("model.onnx")                 # or "model.engine" (TensorRT)
    codes = encoder.encode(["a.jpg", "b.jpg"])      # uint8 (2, ceil(bits / 8)), packed
    code = encoder.encode("a.jpg")                  # one item: one row, shape (ceil(bits / 8),)
    index = HammingIndex(encoder.bits); index.add(codes)

Preprocessing (decode, RGB or grey, resize, normalize) comes from the model's metadata; see
``hashsdk.encoder.preprocess`` for the accepted inputs. An Encoder is safe to share between threads.

Files and bytes are decoded by a small thread pool (Pillow releases the GIL while it decodes),
one batch ahead of the model, so decoding overlaps inference; at most two batches are in
memory at a time, whatever the length of the input. The pool takes the cores that the model's
threads leave free. Where the model's threads take every core there is nothing to overlap
with, and decoding ahead would only fight the model for the cores (measured on 2 cores,
CIFAR-10 JPEGs through Pillow: 66% of the throughput from arrays, against 73% decoding
between batches), so each batch is then decoded by the pool on every core while the model
waits, between batches.

An unreadable image raises (naming the file) unless ``on_error="skip"``, so that row i of the
codes is always input i unless asked.
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
from hashsdk.encoder.metadata import ModelMetadata
from hashsdk.encoder.preprocess import (
    DEFAULT_MAX_PIXELS,
    UnreadableImage,
    is_single,
    iter_items,
    load_uint8,
    to_input,
)
from hashsdk.errors import HashsdkError

MAX_DECODE_THREADS = 4
DECODE_CHUNK = 16  # files a pool task decodes: one Future an image costs more than a decode


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
    """A batch of (position, item) pairs in input order, and the Futures decoding its files,
    DECODE_CHUNK files each, in order (none where files are decoded in the calling thread)."""

    chunk: list[tuple[int, Any]]
    futures: list[Future]


def _is_file(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview))


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
        decode_threads: threads that decode files and bytes (default: up to 4; the cores that
            the model's threads leave free, which decode one batch ahead of the model, or
            where it takes every core, all cores, between batches); 0 decodes them in the
            calling thread.
    """

    def __init__(self, path: str | os.PathLike, backend: str = "auto", device: str | None = None,
                 threads: int | None = None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 decode_threads: int | None = None):
        from hashsdk.encoder.backends import open_backend

        self.path = os.fspath(path)
        self.backend, self._backend = open_backend(self.path, backend, device, threads)
        self.max_pixels = None if max_pixels is None else check_int(max_pixels, "max_pixels")
        from hashsdk._args import default_threads

        cores = default_threads()
        spare = cores - ((threads or cores) if self.device == "cpu" else 0)
        self.decode_ahead = spare > 0  # else: between batches, while the model waits
        if decode_threads is None:
            decode_threads = min(MAX_DECODE_THREADS, spare if self.decode_ahead else cores)
            decode_threads = decode_threads if decode_threads > 1 or self.decode_ahead else 0
        self.decode_threads = check_int(decode_threads, "decode_threads", minimum=0)
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
        """"cpu" or "cuda": where the model runs."""
        return self._backend.device

    @property
    def providers(self) -> list[str]:
        """What runs the model, as its runtime reports it: onnxruntime's execution providers
        in the order the session got them (``["CPUExecutionProvider"]``, or CUDA's first),
        or ``["TensorRT"]``."""
        return list(getattr(self._backend, "providers", ["TensorRT"]))

    def __repr__(self) -> str:
        return (f"Encoder({self.path!r}, backend={self.backend!r}, device={self.device!r}, "
                f"providers={self.providers}, bits={self.bits}, "
                f"precision={self.metadata.precision!r})")

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
            while pending.chunk:
                upcoming = self._start(list(islice(items, batch_size)))  # decodes meanwhile
                batch = self._finish(pending, packed)
                if bar is not None:
                    bar.update(len(pending.chunk))
                yield batch
                pending = upcoming
        finally:
            if bar is not None:
                bar.close()

    def _start(self, chunk: list[tuple[int, Any]], now: bool = False) -> _Pending:
        """Starts decoding the files and bytes of ``chunk`` on the pool, where there is one and
        it decodes ahead (or ``now``)."""
        pool = self._decoder()
        if pool is None or not (self.decode_ahead or now):
            return _Pending(chunk, [])
        files = [item for _, item in chunk if _is_file(item)]
        return _Pending(chunk, [pool.submit(self._load_all, files[k:k + DECODE_CHUNK])
                                for k in range(0, len(files), DECODE_CHUNK)])

    def _load(self, item: Any) -> np.ndarray | UnreadableImage:
        try:
            return load_uint8(item, self.metadata, self.max_pixels)
        except UnreadableImage as exc:
            return exc

    def _load_all(self, items: list[Any]) -> list[np.ndarray | UnreadableImage]:
        return [self._load(item) for item in items]

    def _finish(self, pending: _Pending, packed: bool) -> EncodedBatch:
        if not pending.futures:  # not started ahead: decode now, on the pool where there is one
            pending = self._start(pending.chunk, now=True)
        decoded = (item for future in pending.futures for item in future.result())
        loaded, index, failures = [], [], []
        for i, item in pending.chunk:
            item = next(decoded) if pending.futures and _is_file(item) else self._load(item)
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

    def _decoder(self) -> ThreadPoolExecutor | None:
        """The decoding pool, made on first use; None with decode_threads 0."""
        if not self.decode_threads:
            return None
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.decode_threads,
                                                thread_name_prefix="hashsdk-decode")
        return self._pool
