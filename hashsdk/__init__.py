"""hashsdk: deep image hashing, from training to search.

The inference side, which never imports torch or onnx: binary codes, the exact
``HammingIndex`` and ``MultiIndexHammingIndex``, retrieval metrics, and the ``Encoder``
(images to codes through an ONNX model on onnxruntime, imported when an Encoder is made, or a
TensorRT engine). Training lives in
``hashsdk.train`` and export in ``hashsdk.export``, installed with the ``train`` and ``export``
extras.
"""

from hashsdk.codes import binarize, code_size, pack_bits, unpack_bits
from hashsdk.encoder import Encoder, InputContract, UnreadableImage
from hashsdk.errors import HashsdkError
from hashsdk.index import HammingIndex, MultiIndexHammingIndex
from hashsdk.metrics import (
    RetrievalMetrics,
    evaluate,
    mean_average_precision,
    precision_at_k,
    precision_at_radius,
    precision_recall_curve,
)

__version__ = "0.1.0"

__all__ = [
    "Encoder",
    "HammingIndex",
    "HashsdkError",
    "InputContract",
    "MultiIndexHammingIndex",
    "RetrievalMetrics",
    "UnreadableImage",
    "binarize",
    "code_size",
    "evaluate",
    "mean_average_precision",
    "pack_bits",
    "precision_at_k",
    "precision_at_radius",
    "precision_recall_curve",
    "unpack_bits",
]
