"""The TensorRT backend: a serialized engine plus its ``<engine>.json`` metadata sidecar.

Needs the ``trt`` extra (tensorrt, and cuda-python for device memory) and an NVIDIA GPU.
Written against TensorRT 10's tensor-address API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``), which TensorRT 11 keeps. Not run on the machines this project is built
on, which have no TensorRT; its tests skip where ``tensorrt`` does not import.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np

from hashsdk.encoder.metadata import ModelMetadata
from hashsdk.errors import HashsdkError


def _check(result):
    """cuda-python returns (err, value...); raise on a CUDA error."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise HashsdkError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else rest


def open_model(path: str, device: str | None, threads: int | None) -> TensorRTBackend:
    """The registry's opener (hashsdk.encoder.backends); ``threads`` does not apply."""
    if device not in (None, "cuda"):
        raise HashsdkError("TensorRT engines run on CUDA only")
    return TensorRTBackend(path)


class TensorRTBackend:
    def __init__(self, path: str | os.PathLike):
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except ImportError as exc:
            raise HashsdkError(f"the TensorRT backend needs tensorrt and cuda-python: pip "
                               f"install 'hashsdk[trt]' ({exc})") from None
        path = os.fspath(path)
        sidecar = path + ".json"
        try:
            props = json.loads(open(sidecar).read())
        except FileNotFoundError:
            raise HashsdkError(f"{sidecar} not found: a TensorRT engine needs the metadata "
                               "sidecar that hashsdk-export --trt writes beside it") from None
        except ValueError as exc:
            raise HashsdkError(f"{sidecar}: not valid JSON ({exc})") from None
        self.metadata = ModelMetadata.from_props(props, sidecar)
        self._cudart = cudart
        logger = trt.Logger(trt.Logger.WARNING)
        with open(path, "rb") as f:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise HashsdkError(f"{path}: TensorRT could not deserialize this engine (built by "
                               "another TensorRT version or for another GPU?)")
        self._local = threading.local()  # an execution context and stream per thread
        self.device = "cuda"

    def _context(self):
        local = self._local
        if not hasattr(local, "context"):
            local.context = self.engine.create_execution_context()
            local.stream = _check(self._cudart.cudaStreamCreate())
        return local.context, local.stream

    def run(self, x: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        context, stream = self._context()
        meta = self.metadata
        x = np.ascontiguousarray(x, np.float32)
        out = np.empty((len(x), meta.bits), np.float32)
        context.set_input_shape(meta.input_name, x.shape)
        d_in = _check(cudart.cudaMallocAsync(x.nbytes, stream))
        d_out = _check(cudart.cudaMallocAsync(out.nbytes, stream))
        try:
            kind = cudart.cudaMemcpyKind
            _check(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes,
                                          kind.cudaMemcpyHostToDevice, stream))
            context.set_tensor_address(meta.input_name, int(d_in))
            context.set_tensor_address(meta.output_name, int(d_out))
            if not context.execute_async_v3(stream):
                raise HashsdkError("TensorRT execution failed")
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes,
                                          kind.cudaMemcpyDeviceToHost, stream))
            _check(cudart.cudaStreamSynchronize(stream))
        finally:
            _check(cudart.cudaFreeAsync(d_in, stream))
            _check(cudart.cudaFreeAsync(d_out, stream))
        return out
