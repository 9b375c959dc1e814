"""hashsdk.export: checkpoint to ONNX and TensorRT (needs the ``export`` extra)."""
