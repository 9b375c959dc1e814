"""The encoder room: images to codes through an exported model, without torch.

    encoder.py       Encoder: batches, decoding threads, codes
    contract.py      InputContract: how an image is fitted and normalized (one home)
    preprocess.py    decoding files and bytes, and the accepted inputs
    metadata.py      ModelMetadata: what an exported model carries (ONNX keys, sidecars)
    backends/        the runtimes (onnxruntime, TensorRT) and their registry

``from hashsdk import Encoder`` is the public way in.
"""

from hashsdk.encoder.contract import InputContract
from hashsdk.encoder.encoder import EncodedBatch, Encoder
from hashsdk.encoder.metadata import ModelMetadata
from hashsdk.encoder.preprocess import UnreadableImage

__all__ = ["EncodedBatch", "Encoder", "InputContract", "ModelMetadata", "UnreadableImage"]
