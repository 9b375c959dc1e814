"""ONNX to a TensorRT engine, with the hashsdk metadata in a ``<engine>.json`` sidecar.

Written against TensorRT's Python API:
    TensorRT 10: a network with explicit batch (the default), the ONNX parser, an optimization
        profile for the dynamic batch, and ``BuilderFlag.FP16`` for ``--fp16``;
    TensorRT 11: networks are always strongly typed and the precision flags are gone, so
        ``--fp16`` converts the ONNX graph to float16 first (onnxconverter-common, float32
        inputs and outputs kept) and the builder follows the graph's types.
TensorRT cannot be installed on the machines this project is built on, so this path has not
run there; its tests run where ``tensorrt`` imports and skip elsewhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from hashsdk._atomic import atomic_write
from hashsdk.errors import HashsdkError
from hashsdk.export.onnx_export import read_metadata


@dataclass
class EngineReport:
    path: str
    precision: str
    tensorrt: str
    strongly_typed: bool
    bit_agreement_vs_fp32: float | None


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise HashsdkError(f"--trt needs TensorRT: pip install 'hashsdk[trt]' on a machine with "
                           f"an NVIDIA GPU ({exc})") from None
    return trt


def to_fp16(onnx_bytes: bytes) -> bytes:
    """The same graph in float16, keeping float32 inputs and outputs."""
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load_from_string(onnx_bytes),
                                             keep_io_types=True)
    return model.SerializeToString()


def build_engine(onnx_path: str | os.PathLike, out_path: str | os.PathLike, fp16: bool = False,
                 min_batch: int = 1, opt_batch: int = 64, max_batch: int = 256,
                 workspace_bytes: int = 4 << 30, check_images: np.ndarray | None = None
                 ) -> EngineReport:
    """Builds and writes the engine and its sidecar; with ``fp16``, reports how many bits of
    the FP16 engine agree with the FP32 ONNX model on ``check_images`` (float32 NCHW, default
    256 random normalized inputs), because outputs near zero flip bits."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise HashsdkError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, "
                           f"{opt_batch}, {max_batch}")
    meta = read_metadata(onnx_path)
    trt = _import_tensorrt()
    strongly_typed = int(trt.__version__.split(".")[0]) >= 11
    with open(onnx_path, "rb") as f:
        model_bytes = f.read()
    if fp16 and strongly_typed:
        model_bytes = to_fp16(model_bytes)
    shape = (meta.channels, meta.input_size, meta.input_size)
    serialized = _serialize(trt, model_bytes, onnx_path, meta.input_name, shape,
                            (min_batch, opt_batch, max_batch), fp16 and not strongly_typed,
                            strongly_typed, workspace_bytes)
    with atomic_write(out_path) as f:
        f.write(serialized)
    props = meta.to_props()
    props["hashsdk.engine"] = json.dumps(dict(precision="fp16" if fp16 else "fp32",
                                              tensorrt=trt.__version__,
                                              strongly_typed=strongly_typed,
                                              batch=[min_batch, opt_batch, max_batch]))
    with atomic_write(os.fspath(out_path) + ".json") as f:
        f.write(json.dumps(props, indent=1).encode())
    agreement = None
    if fp16:
        if check_images is None:
            rng = np.random.default_rng(0)
            check_images = rng.standard_normal((256, *shape)).astype(np.float32)
        agreement = _bit_agreement(out_path, onnx_path, check_images, max_batch)
    return EngineReport(os.fspath(out_path), "fp16" if fp16 else "fp32", trt.__version__,
                        strongly_typed, agreement)


def _serialize(trt, model_bytes: bytes, onnx_path: str | os.PathLike, input_name: str,
               shape: tuple[int, int, int], batches: tuple[int, int, int], fp16_flag: bool,
               strongly_typed: bool, workspace_bytes: int) -> bytes:
    """The engine's bytes: the parsed ONNX graph, one optimization profile over the batch."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise HashsdkError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    low, opt, high = batches
    profile.set_shape(input_name, (low, *shape), (opt, *shape), (high, *shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise HashsdkError("TensorRT failed to build the engine; see its log above")
    return bytes(serialized)


def _bit_agreement(engine_path: str | os.PathLike, onnx_path: str | os.PathLike,
                   images: np.ndarray, max_batch: int) -> float:
    """The share of bits on which the engine and the FP32 ONNX model agree on ``images``."""
    from hashsdk.backends.onnxruntime import OnnxRuntimeBackend
    from hashsdk.backends.tensorrt import TensorRTBackend

    engine = TensorRTBackend(engine_path)
    reference = OnnxRuntimeBackend(onnx_path, "cpu")
    half = np.concatenate([engine.run(images[i:i + max_batch])
                           for i in range(0, len(images), max_batch)])
    full = reference.run(images)
    return float(((half > 0) == (full > 0)).mean())
