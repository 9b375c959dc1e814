"""The ``tensorrt`` target (``--trt``): a TensorRT engine from the FP32 ONNX model
(hashsdk.export.tensorrt_build), FP32 or ``--fp16``; ``--verify`` checks its bits against the
FP32 ONNX model on real images (the run's, or ``--images FOLDER``)."""

from __future__ import annotations

from pathlib import Path

import click

from hashsdk.errors import HashsdkError
from hashsdk.export.targets import ExportRequest

VERIFY_IMAGES = 512  # real images that --verify of a TensorRT engine runs
DEFAULT_MAX_BATCH = 256


def check(request: ExportRequest) -> None:
    if request.verify and request.is_onnx and request.images_dir is None:
        raise HashsdkError("--verify from an ONNX file needs --images FOLDER: the engine is "
                           "checked against the FP32 model on real images, and an ONNX file "
                           "carries none (from a checkpoint, the run's training images are used)")


def write(request: ExportRequest, onnx_path: Path) -> None:
    output, fp16, verify, images_dir = (request.output, request.fp16, request.verify,
                                        request.images_dir)
    checkpoint = None if request.is_onnx else request.source
    batches = (request.min_batch, request.opt_batch, request.max_batch or DEFAULT_MAX_BATCH)
    from hashsdk.export.onnx_file import read_metadata
    from hashsdk.export.quantize import folder_images, training_images
    from hashsdk.export.tensorrt_build import build_engine

    check = None
    if verify:  # the images first: a wrong folder fails before the build, which takes minutes
        check = (folder_images(images_dir, read_metadata(onnx_path), VERIFY_IMAGES)
                 if images_dir is not None else training_images(checkpoint, VERIFY_IMAGES))
    report = build_engine(onnx_path, output, fp16, *batches, check=check)
    line = f"wrote {output} ({report.precision}, TensorRT {report.tensorrt})"
    if report.passed is None:
        click.echo(line + "; not verified (add --verify)")
        return
    click.echo(f"{line}; its bits agree with the FP32 ONNX model's on "
               f"{100 * report.bit_agreement_vs_fp32:.3f}% over {len(check[0])} images of the "
               f"{report.images} (target {100 * report.target:.1f}%)")
    if not report.passed:
        raise HashsdkError(f"verification failed: {100 * report.bit_agreement_vs_fp32:.3f}% of "
                           f"bits agree, below the {100 * report.target:.1f}% target for "
                           f"{report.precision}")
