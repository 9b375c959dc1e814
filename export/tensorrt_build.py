"""ONNX to a TensorRT engine, with the hashsdk metadata in a ``<engine>.json`` sidecar.

Written against TensorRT's Python API:
    TensorRT 10: a network with explicit batch (the default), the ONNX parser, an optimization
        profile for the dynamic batch, and ``BuilderFlag.FP16`` for ``--fp16``;
    TensorRT 11: networks are always strongly typed and the precision flags are gone, so
        ``--fp16`` converts the ONNX graph to float16 first (onnxconverter-common, float32
        inputs and outputs kept) and the builder follows the graph's types.
Verification (``--verify``): the engine's bits against the FP32 ONNX model's (onnxruntime on
the CPU) on real images, the run's training images or a folder's; it fails below
``BIT_AGREEMENT_TARGETS[precision]`` of the bits agreeing. FP16 rounds outputs near zero to
the other sign, so its target is lower than FP32's. Random inputs are not used: their outputs
crowd near zero as real images' do not, which says nothing of the codes users get.

TensorRT cannot be installed on the machines this project is built on, so this path has not
run there; its tests run where ``tensorrt`` imports and skip elsewhere. Nothing here imports
torch: an engine can be built from an ONNX file with only the ``trt`` extra.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from hashsdk._atomic import atomic_write
from hashsdk.errors import HashsdkError
from hashsdk.export.onnx_file import BIT_AGREEMENT_TARGETS, read_metadata


@dataclass
class EngineReport:
    path: str
    precision: str
    tensorrt: str
    strongly_typed: bool
    bit_agreement_vs_fp32: float | None  # None: not verified
    images: str | None = None            # what it was verified on

    @property
    def target(self) -> float:
        return BIT_AGREEMENT_TARGETS[self.precision]

    @property
    def passed(self) -> bool | None:
        if self.bit_agreement_vs_fp32 is None:
            return None
        return self.bit_agreement_vs_fp32 >= self.target


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
                 workspace_bytes: int = 4 << 30,
                 check: tuple[np.ndarray, str] | None = None) -> EngineReport:
    """Builds and writes the engine and its sidecar. ``check``: real images, uint8 (N, H, W,
    C) at the model's input, and what they are; the report then says how many bits of the
    engine agree with the FP32 ONNX model on them (see ``EngineReport.passed``)."""
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
    agreement = None if check is None else _bit_agreement(out_path, onnx_path, check[0],
                                                           max_batch)
    return EngineReport(os.fspath(out_path), "fp16" if fp16 else "fp32", trt.__version__,
                        strongly_typed, agreement, None if check is None else check[1])


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
    """The share of bits on which the engine and the FP32 ONNX model agree on ``images``
    (uint8 NHWC at the model's input)."""
    from hashsdk.encoder.backends.onnxruntime import OnnxRuntimeBackend
    from hashsdk.encoder.backends.tensorrt import TensorRTBackend

    return bit_agreement(TensorRTBackend(engine_path), OnnxRuntimeBackend(onnx_path, "cpu"),
                         images, max_batch)


def bit_agreement(candidate, reference, images: np.ndarray, batch: int = 256) -> float:
    """The share of bits on which two backends (``run``: float32 NCHW to float32 (N, bits))
    agree on ``images``, uint8 (N, H, W, C) at their input, preprocessed by the metadata of
    ``reference``."""
    from hashsdk.encoder.preprocess import to_input

    if len(images) == 0:
        raise HashsdkError("verification needs at least one image")
    same = total = 0
    for i in range(0, len(images), batch):
        x = to_input(list(images[i:i + batch]), reference.metadata)
        a, b = candidate.run(x) > 0, reference.run(x) > 0
        same, total = same + int((a == b).sum()), total + a.size
    return same / total
