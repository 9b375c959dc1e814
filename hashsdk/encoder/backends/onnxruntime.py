"""The onnxruntime backend.

Session options, set on purpose:
    intra_op_num_threads = ``threads`` (default: every core this process may use): the
        threads of one convolution; one encode call uses them all.
    inter_op_num_threads = 1 and sequential execution: the graph is a chain, so running
        independent nodes in parallel buys nothing and costs thread hand-offs.
    graph_optimization_level = ORT_ENABLE_ALL: fuses Conv+BatchNorm+ReLU and folds constants.
onnxruntime's ``InferenceSession.run`` is thread-safe, so one Encoder serves many threads.

Builds: ``onnxruntime`` (CPU) and ``onnxruntime-gpu`` install into the same folder, and where
both are installed the last one wins, often silently without CUDA. So ``hashsdk`` depends on
the CPU build and ``hashsdk-gpu`` on the GPU build (as fastembed and fastembed-gpu do), never
both; where both builds are found anyway, asking for CUDA says which to uninstall.
``providers`` lists what the session really got, CUDA first where it took.
"""

from __future__ import annotations

import os

import numpy as np

from hashsdk.encoder.metadata import ModelMetadata
from hashsdk.errors import HashsdkError

BUILDS = ("onnxruntime", "onnxruntime-gpu")
GPU_FIX = ("pip uninstall -y onnxruntime onnxruntime-gpu hashsdk && pip install hashsdk-gpu "
           "(or: pip install onnxruntime-gpu alone)")


def cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def installed_builds() -> list[str]:
    """The onnxruntime distributions installed here (more than one is the conflict above)."""
    from importlib import metadata

    found = []
    for name in BUILDS:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def _no_cuda_reason(available: list[str]) -> str:
    builds = installed_builds()
    if len(builds) > 1:
        return (f"both {' and '.join(builds)} are installed; they share one folder and the CPU "
                f"build has overwritten CUDA's. Fix: {GPU_FIX}")
    return f"this onnxruntime has only {available}. For CUDA: {GPU_FIX}"


def open_model(path: str, device: str | None, threads: int | None) -> OnnxRuntimeBackend:
    """The registry's opener (hashsdk.encoder.backends): device None is CUDA where this
    onnxruntime has it, else the CPU."""
    if device is None:
        device = "cuda" if cuda_available() else "cpu"
    return OnnxRuntimeBackend(path, device, threads)


class OnnxRuntimeBackend:
    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        from hashsdk._args import default_threads

        if device not in ("cpu", "cuda"):
            raise HashsdkError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not cuda_available():
            raise HashsdkError("device='cuda' needs onnxruntime's CUDA provider: "
                               + _no_cuda_reason(ort.get_available_providers()))
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
        self.providers: list[str] = self.session.get_providers()
        if device == "cuda" and self.providers[0] != "CUDAExecutionProvider":
            # onnxruntime falls back to the CPU when CUDA fails to start (a missing cuDNN, a
            # driver too old): say so, never run on the CPU while the user asked for the GPU
            raise HashsdkError(f"{path}: onnxruntime could not start its CUDA provider (the "
                               f"session got {self.providers}); check CUDA and cuDNN against "
                               "onnxruntime-gpu's requirements, or pass device='cpu'")
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props, path)
        self.device = device

    def run(self, x: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self.metadata.output_name], {self.metadata.input_name: x})
        return np.asarray(out, np.float32)
