"""An FP32 ONNX model to a statically quantized INT8 one, with onnxruntime's quantizer.

Format QDQ (QuantizeLinear/DequantizeLinear pairs around each quantized operator, which
onnxruntime fuses into integer kernels), unsigned 8-bit activations and signed 8-bit weights
(U8S8), weights per output channel. Not the quantizer's default, S8S8: with per-channel
weights, onnxruntime 1.32's CPU provider fused only 3 of our cnn's 9 convolutions into
QLinearConv under S8S8 and ran the other 6 in FP32 between Dequantize/Quantize pairs, at half
the FP32 model's speed; under U8S8 all 9 fuse (measured on the 12-bit CIFAR-10 cnn, 2 threads,
batch 256: FP32 1,675 images/s, S8S8 810, U8S8 3,050).
Activation ranges come from MinMax calibration on real images, preprocessed exactly as the
Encoder preprocesses them (hashsdk.encoder.preprocess), so that the ranges are those the model
meets.

The network's last two operators, the hash layer (Gemm) and its tanh, stay in FP32: the code
is the sign of the hash layer's output, and an output that sits near zero flips when it is
rounded to one of 256 levels. They are a few thousand multiply-adds of millions, so leaving
them out costs almost no speed (see benchmarks/results/encode.md).

The INT8 file carries the FP32 model's metadata with ``precision = "int8"`` and, in its
``extra``, where the calibration images came from and how many there were.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hashsdk._atomic import atomic_write
from hashsdk.encoder.metadata import ModelMetadata
from hashsdk.encoder.preprocess import to_input
from hashsdk.errors import HashsdkError

CALIBRATION_BATCH = 64


class _Batches:
    """onnxruntime's CalibrationDataReader: normalized float32 batches of uint8 images."""

    def __init__(self, images: np.ndarray, meta: ModelMetadata):
        self._batches: Iterator[np.ndarray] = (
            to_input(list(images[i:i + CALIBRATION_BATCH]), meta)
            for i in range(0, len(images), CALIBRATION_BATCH))
        self._name = meta.input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}


def _hash_head(proto) -> list[str]:
    """The names of the nodes after the last pooling: the hash layer and its tanh."""
    names = [n.name for n in proto.graph.node]
    ops = [n.op_type for n in proto.graph.node]
    tail = len(ops)
    while tail > 0 and ops[tail - 1] in ("Gemm", "MatMul", "Add", "Tanh"):
        tail -= 1
    return names[tail:]


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike,
                  images: np.ndarray, source: str) -> ModelMetadata:
    """Writes the INT8 model of ``fp32_path`` to ``out_path`` (atomically) and returns its
    metadata.

    Args:
        images: uint8 (N, input_size, input_size, C), the calibration images, already fitted
            to the model's input (hashsdk.encoder.preprocess.load_uint8); N >= 1.
        source: where they came from, recorded in the metadata ("training split of RUN",
            "folder DIR").
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from hashsdk.export.onnx_file import read_metadata

    meta = read_metadata(fp32_path)
    if meta.precision != "fp32":
        raise HashsdkError(f"{fp32_path} is already {meta.precision}; quantize the FP32 model")
    want = (meta.input_size, meta.input_size, meta.channels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want or not len(images):
        raise HashsdkError(f"calibration images: expected uint8 (N, {want[0]}, {want[1]}, "
                           f"{want[2]}) with N >= 1, got {images.dtype} {images.shape}")
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(os.fspath(fp32_path), prepared, skip_symbolic_shape=True)
        quantize_static(prepared, quantized, _Batches(images, meta),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=_hash_head(onnx.load(prepared)))
        proto = onnx.load(quantized)
    out = dataclasses.replace(meta, precision="int8", extra=meta.extra | {
        "calibration": {"images": int(len(images)), "source": source,
                        "method": "MinMax, QDQ, U8S8, per-channel weights"}})
    del proto.metadata_props[:]
    for key, value in out.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_write(out_path) as f:
        f.write(proto.SerializeToString())
    return out


def training_images(checkpoint_path: str | os.PathLike, count: int,
                    seed: int = 0) -> tuple[np.ndarray, str]:
    """``count`` images drawn at random from the training split of the checkpoint's run
    (split.npz beside or above it, else a fresh split from its config), as uint8 (N, H, W, C)
    at the model's input, and a description of them."""
    from hashsdk.export.verify import run_split
    from hashsdk.train.model import HashNet

    _, ckpt = HashNet.from_checkpoint(checkpoint_path)
    data, split = run_split(ckpt, checkpoint_path)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(split.train, min(count, len(split.train)), replace=False))
    return data.images[chosen], f"training split of {checkpoint_path}"


def folder_images(folder: str | os.PathLike, meta: ModelMetadata, count: int,
                  seed: int = 0) -> tuple[np.ndarray, str]:
    """Up to ``count`` images of ``folder`` (drawn at random where it holds more), decoded and
    fitted as the Encoder does; unreadable files are left out."""
    from hashsdk.encoder.preprocess import UnreadableImage, list_images, load_uint8

    if not Path(folder).is_dir():
        raise HashsdkError(f"calibration folder not found: {folder}")
    paths = list_images([folder])
    if not paths:
        raise HashsdkError(f"no images found in {folder}")
    rng = np.random.default_rng(seed)
    paths = [paths[i] for i in np.sort(rng.permutation(len(paths))[:count])]
    loaded = []
    for p in paths:
        try:
            loaded.append(load_uint8(p, meta))
        except UnreadableImage:
            continue
    if not loaded:
        raise HashsdkError(f"no image of {folder} could be read")
    return np.stack(loaded), f"folder {folder}"
