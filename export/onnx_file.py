"""What an exported model must satisfy, without torch: its hashsdk metadata (read with onnx),
and the share of its bits that ``--verify`` requires to agree with the reference on real
images, by precision. So ``--int8`` and ``--trt`` from an ONNX file need neither torch nor the
training code."""

from __future__ import annotations

import os

from hashsdk.encoder.metadata import ModelMetadata
from hashsdk.errors import HashsdkError

# --verify's targets: FP32 (ONNX against torch, a TensorRT FP32 engine against ONNX) and an
# FP16 engine against the FP32 ONNX model, whose outputs near zero round to the other sign
BIT_AGREEMENT_TARGETS = {"fp32": 0.999, "fp16": 0.99}


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """The hashsdk metadata of an ONNX file; a clear error when it has none."""
    import onnx

    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except FileNotFoundError:
        raise HashsdkError(f"model file not found: {path}") from None
    except Exception as exc:  # protobuf DecodeError and friends
        raise HashsdkError(f"{path}: not an ONNX model ({exc})") from None
    return ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props}, str(path))
