"""The ``int8`` target (``--int8``): onnxruntime's static quantizer on the FP32 ONNX model
(hashsdk.export.quantize), calibrated on the run's training split or ``--calibration-dir``;
``--verify`` scores INT8 against FP32 on the run's whole protocol."""

from __future__ import annotations

from pathlib import Path

import click

from hashsdk.errors import HashsdkError
from hashsdk.export.targets import ExportRequest


def check(request: ExportRequest) -> None:
    if request.is_onnx and request.calibration_dir is None:
        raise HashsdkError("--int8 from an ONNX model needs --calibration-dir FOLDER (there is "
                           "no run to take the training split from); or export the checkpoint")
    if request.is_onnx and request.verify:
        raise HashsdkError("--verify with --int8 scores the run's protocol and needs the "
                           "checkpoint: hashsdk-export CHECKPOINT --int8 --verify")


def write(request: ExportRequest, fp32_path: Path) -> None:
    output, count, folder, verify = (request.output, request.calibration,
                                     request.calibration_dir, request.verify)
    checkpoint = None if request.is_onnx else request.source
    from hashsdk.export.onnx_file import read_metadata
    from hashsdk.export.quantize import folder_images, quantize_int8, training_images

    if folder is not None:
        images, where = folder_images(folder, read_metadata(fp32_path), count)
    else:
        images, where = training_images(checkpoint, count)
    quantize_int8(fp32_path, output, images, where)
    click.echo(f"wrote {output}: INT8, calibrated on {len(images)} images of the {where}")
    if verify:
        from hashsdk.export.verify import verify_int8, write_report

        report = verify_int8(output, fp32_path, checkpoint)
        click.echo(f"verify: {report.summary()}")
        write_report(output, report)
