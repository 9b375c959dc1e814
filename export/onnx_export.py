"""Training checkpoint to ONNX, with the metadata the Encoder needs inside the file.

The graph: input ``images``, float32 (batch, C, H, W), normalized as the metadata says;
output ``outputs``, float32 (batch, bits), tanh outputs in (-1, 1); bit i = outputs[:, i] > 0.
The batch dimension is dynamic and named ``batch``.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings

import torch

from hashsdk._atomic import atomic_write
from hashsdk.encoder.metadata import ModelMetadata
from hashsdk.errors import HashsdkError
from hashsdk.export.onnx_file import read_metadata  # noqa: F401  (its home before)
from hashsdk.train.model import HashNet, contract_of

INPUT, OUTPUT = "images", "outputs"


class _Outputs(torch.nn.Module):
    """The hashing network without its training-only classifier."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def metadata_for(ckpt: dict, checkpoint_path: str | os.PathLike) -> ModelMetadata:
    args = ckpt["model_args"]
    config = ckpt.get("config", {})
    return ModelMetadata.of(
        contract_of(args), args["bits"], backbone=args["backbone"],
        dataset=config.get("data", {}).get("dataset", "unknown"),
        checkpoint_sha256=sha256(checkpoint_path), input_name=INPUT, output_name=OUTPUT,
        extra={"training": training_of(config)} if config.get("hash") else {})


def training_of(config: dict) -> dict:
    """How the model was trained, for its metadata: the loss, whether labels took part (a
    label-free loss trains without them), frozen-feature mode, whether the graph averages
    each image's outputs with its mirror image's (flip_average), and whether its features are
    the mean of the image's and its mirror image's (mirror_invariant), and the sigma of the
    low-pass filter before its backbone (input_blur, pixels; 0: none) and the block whose
    features it hashes (feature_block; -1: the whole backbone), the median filter's window
    before the low-pass filter (input_median, pixels; 0: none) and how the features are pooled
    (feature_pool: "avg" or "gem"), and n where the n x n lowest DCT frequencies of the image
    join the features (dct_features; 0: none), and how the edits of a label-free run's training
    copies were drawn (training_edits; None where no edited copies took part), and the weight of
    the contrastive loss's KoLeo term (koleo; 0: none). ``config``: the
    checkpoint's RunConfig as a dict."""
    from hashsdk.train.edited import DEFAULT_TRAINING_EDITS
    from hashsdk.train.losses import REAL_LOSSES

    h = config["hash"]
    entry = REAL_LOSSES.get(h.get("loss"))
    labels = "unknown" if entry is None else "class labels" if entry.needs_labels else "none"
    return {"loss": h.get("loss"), "labels": labels,
            "frozen_features": bool(h.get("frozen", False)),
            "flip_average": bool(h.get("flip_average", False)),
            "mirror_invariant": bool(h.get("mirror_invariant", False)),
            "input_blur": float(h.get("input_blur") or 0.0),
            "feature_block": -1 if h.get("feature_block") is None else int(h["feature_block"]),
            "input_median": int(h.get("input_median") or 0),
            "feature_pool": h.get("feature_pool") or "avg",
            "dct_features": int(h.get("dct_features") or 0),
            "training_edits": (h.get("training_edits") or DEFAULT_TRAINING_EDITS)
            if entry is not None and entry.edited_copies else None,
            "koleo": float(h.get("koleo") or 0.0)}


def export_onnx(checkpoint_path: str | os.PathLike, out_path: str | os.PathLike,
                opset: int = 18, max_batch: int | None = None,
                flip_average: bool = False) -> ModelMetadata:
    """Exports a hashing checkpoint to one ONNX file with hashsdk metadata.

    Uses torch.onnx's dynamo exporter; where it fails, falls back to the TorchScript exporter
    and warns. ``max_batch`` bounds the dynamic batch dimension (None: unbounded).
    ``flip_average``: the graph averages each image's outputs with its mirror image's, for a
    run trained without it (train/model.py with_flip_average; its metadata says so).
    """
    import onnx

    if opset < 18:
        raise HashsdkError(f"opset must be 18 or later, got {opset}")
    model, ckpt = HashNet.from_checkpoint(checkpoint_path, flip_average)
    meta = metadata_for(ckpt, checkpoint_path)
    wrapped = _Outputs(model).eval()
    example = torch.zeros(2, meta.channels, meta.input_size, meta.input_size)
    proto = None
    try:
        batch = torch.export.Dim("batch", min=1, max=max_batch) if max_batch else \
            torch.export.Dim("batch", min=1)
        program = torch.onnx.export(wrapped, (example,), dynamo=True, opset_version=opset,
                                    input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes={"images": {0: batch}}, external_data=False,
                                    verbose=False)
        proto = program.model_proto
    except Exception as exc:  # the dynamo exporter raises many kinds of errors
        warnings.warn(f"the dynamo ONNX exporter failed ({type(exc).__name__}: {exc}); falling "
                      "back to the TorchScript exporter", stacklevel=2)
        buffer = io.BytesIO()
        torch.onnx.export(wrapped, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
        proto = onnx.load_from_string(buffer.getvalue())
    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    with atomic_write(out_path) as f:
        f.write(proto.SerializeToString())
    return meta
