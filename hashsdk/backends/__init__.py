"""Inference backends of the Encoder: onnxruntime (CPU or CUDA) and TensorRT engines.

Each backend has ``metadata`` (a ModelMetadata) and ``run(x) -> outputs``: float32 (N, C, H, W)
in, float32 (N, bits) out. ``run`` is safe to call from several threads at once.
"""
