"""The ``onnx`` target: a checkpoint to FP32 ONNX (hashsdk.export.onnx_export), and its
``--verify``: torch against onnxruntime on the run's images. Every other target starts here
when exporting from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from hashsdk.errors import HashsdkError
from hashsdk.export.targets import ExportRequest


def check(request: ExportRequest) -> None:
    if request.is_onnx:
        raise HashsdkError(f"{request.source} is already ONNX; pass --trt to build a TensorRT "
                           "engine or --int8 to quantize it")


def write(request: ExportRequest, onnx_path: Path) -> None:
    export_fp32(request.source, onnx_path, request.opset, request.max_batch, request.verify,
                request.flip_average)


def export_fp32(checkpoint: Path, onnx_path: Path, opset: int, max_batch: int | None,
                verify: bool, flip_average: bool = False) -> None:
    """The checkpoint's network as FP32 ONNX (with ``flip_average``: each image's outputs
    averaged with its mirror image's, whatever the run trained with); ``verify``: torch's
    network, set the same way, against onnxruntime's on the run's images."""
    from hashsdk.export.onnx_export import export_onnx
    from hashsdk.train.model import HashNet

    meta = export_onnx(checkpoint, onnx_path, opset, max_batch, flip_average)
    click.echo(f"wrote {onnx_path}: {meta.bits} bits, input {meta.channels}x"
               f"{meta.input_size}x{meta.input_size}, backbone {meta.backbone}"
               + (", flip-averaged" if flip_average else ""))
    if not verify:
        return
    from hashsdk.export.verify import validation_images, write_report
    from hashsdk.export.verify import verify as run_verify

    model, ckpt = HashNet.from_checkpoint(checkpoint, flip_average)
    images, labels, queries = validation_images(ckpt, str(checkpoint))
    report = run_verify(str(onnx_path), model, images, labels, queries)
    click.echo(f"verify: {report.summary()}")
    write_report(onnx_path, report)
    if not report.passed:
        raise HashsdkError(f"verification failed: only {100 * report.bit_agreement:.3f}% of "
                           f"bits agree, below the {100 * report.target:.1f}% target")
