"""The onnxruntime backend.

Session options, set on purpose:
    intra_op_num_threads = ``threads`` (default: every core this process may use): the
        threads of one convolution; one encode call uses them all.
    inter_op_num_threads = 1 and sequential execution: the graph is a chain, so running
        independent nodes in parallel buys nothing and costs thread hand-offs.
    graph_optimization_level = ORT_ENABLE_ALL: fuses Conv+BatchNorm+ReLU and folds constants.
onnxruntime's ``InferenceSession.run`` is thread-safe, so one Encoder serves many threads.
"""

from __future__ import annotations

import os

import numpy as np

from hashsdk.errors import HashsdkError
from hashsdk.model_metadata import ModelMetadata


def cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class OnnxRuntimeBackend:
    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        from hashsdk._search import default_threads

        if device not in ("cpu", "cuda"):
            raise HashsdkError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not cuda_available():
            raise HashsdkError("device='cuda' needs onnxruntime-gpu (pip install "
                               "'hashsdk[gpu]'); this onnxruntime has only "
                               f"{ort.get_available_providers()}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda"
                     else ["CPUExecutionProvider"])
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise HashsdkError(f"model file not found: {path}")
        try:
            self.session = ort.InferenceSession(path, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise HashsdkError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})"
                               ) from None
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props, path)
        self.device = device

    def run(self, x: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self.metadata.output_name], {self.metadata.input_name: x})
        return np.asarray(out, np.float32)
