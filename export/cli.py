"""``hashsdk-export``: a training checkpoint to ONNX (FP32 or INT8), and ONNX to a TensorRT
engine.

    hashsdk-export CHECKPOINT -o model.onnx [--opset 18] [--max-batch N] [--verify]
                   [--flip-average]  (each image's outputs averaged with its mirror image's)
    hashsdk-export CHECKPOINT -o model.int8.onnx --int8 [--calibration 512] [--verify]
                   (the FP32 model beside it, as model.onnx; calibrated on the run's
                   training split, or on --calibration-dir FOLDER)
    hashsdk-export model.onnx --int8 --calibration-dir FOLDER -o model.int8.onnx
    hashsdk-export model.onnx --trt [--fp16] [--min-batch 1 --opt-batch 64 --max-batch 256]
                   [--verify --images FOLDER] -o model.engine
    hashsdk-export CHECKPOINT --trt --fp16 [--verify] -o model.engine
                   (ONNX beside it, then the engine)

From a checkpoint the export needs torch (the ``export`` extra); from an ONNX file, ``--int8``
needs onnxruntime and onnx and ``--trt`` the ``trt`` extra, never torch. ``--verify`` checks
on real images: the run's own (from a checkpoint) or ``--images FOLDER`` (from an ONNX file,
which carries none).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from hashsdk._cli_errors import CONTEXT, user_errors, version_option
from hashsdk.errors import HashsdkError
from hashsdk.export.onnx_file import BIT_AGREEMENT_TARGETS
from hashsdk.export.targets import EXPORT_TARGETS, ExportRequest, ExportTarget
from hashsdk.export.targets.tensorrt import DEFAULT_MAX_BATCH, VERIFY_IMAGES

TARGETS = {k: f"{100 * v:g}%" for k, v in BIT_AGREEMENT_TARGETS.items()}


@click.command(context_settings=CONTEXT)
@version_option()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="model.onnx, or model.engine with --trt.")
@click.option("--opset", type=int, default=18, show_default=True)
@click.option("--verify", is_flag=True,
              help="Check the result on real images. ONNX: torch against onnxruntime, fails "
                   f"below {TARGETS['fp32']} of bits agreeing. --int8: INT8 against FP32 on the "
                   "run's whole protocol (bits, mAP). --trt: the engine against the FP32 ONNX "
                   f"model, fails below {TARGETS['fp32']} of bits (FP32) or {TARGETS['fp16']} "
                   "(FP16).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="--trt --verify from an ONNX file: a folder of real images "
                                 f"to verify on (up to {VERIFY_IMAGES}).  [default: the run's "
                                 "training images, from a checkpoint]")
@click.option("--target", "target_name", type=click.Choice(list(EXPORT_TARGETS)), default=None,
              help="What to write: " + "; ".join(f"{t.name}: {t.about}" for t in
                                                 EXPORT_TARGETS.values()) + ".  [default: onnx]")
@click.option("--int8", is_flag=True, help="Write a statically quantized INT8 ONNX model "
                                           "(--target int8).")
@click.option("--calibration", type=click.IntRange(min=1), default=512, show_default=True,
              help="--int8: how many calibration images.")
@click.option("--calibration-dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="--int8: calibrate on images of this folder, not on the "
                                 "run's training split.")
@click.option("--trt", is_flag=True, help="Build a TensorRT engine (--target tensorrt).")
@click.option("--fp16", is_flag=True, help="TensorRT: half precision.")
@click.option("--min-batch", type=int, default=1, show_default=True)
@click.option("--opt-batch", type=int, default=64, show_default=True)
@click.option("--max-batch", type=int, default=None,
              help=f"Largest batch.  [default: ONNX unbounded, TensorRT {DEFAULT_MAX_BATCH}]")
@click.option("--flip-average", is_flag=True,
              help="From a checkpoint: the model averages each image's outputs with its mirror "
                   "image's (two passes an image), as a run with hash.flip_average does; for a "
                   "run trained without it. Refused where the features are mirror-invariant.")
@user_errors('export')
def main(source: Path, output: Path, opset: int, verify: bool, images_dir: Path | None,
         target_name: str | None, int8: bool, calibration: int, calibration_dir: Path | None,
         trt: bool, fp16: bool, min_batch: int, opt_batch: int, max_batch: int | None,
         flip_average: bool) -> None:
    """Export SOURCE (a hashing checkpoint, or an ONNX model with --trt or --int8).

    Training is hashsdk-train; encoding and search with the result is hashsdk."""
    if not source.is_file():
        raise HashsdkError(f"file not found: {source}")
    target = _target(target_name, int8, trt)
    request = ExportRequest(source, output, source.suffix == ".onnx", opset, verify, images_dir,
                            calibration, calibration_dir, fp16, min_batch, opt_batch, max_batch,
                            flip_average)
    if flip_average and request.is_onnx:
        raise HashsdkError(f"--flip-average needs a checkpoint: {source} is ONNX, whose graph "
                           "is fixed; export the run's checkpoint.pt with it")
    _check_options(request, target)
    target.check(request)
    onnx_path = source
    if not request.is_onnx:
        onnx_path = output if target.fp32_path is None else target.fp32_path(output)
        # the FP32 model of a TensorRT build has an unbounded batch: the engine sets its own
        fp32 = replace(request, output=onnx_path,
                       max_batch=None if target.name == "tensorrt" else max_batch)
        EXPORT_TARGETS["onnx"].write(fp32, onnx_path)
    if target.fp32_path is not None:
        target.write(request, onnx_path)


def _target(name: str | None, int8: bool, trt: bool) -> ExportTarget:
    """The target of ``--target`` or of its shorthand flag; two different ones are refused."""
    if int8 and trt:
        raise HashsdkError("--int8 writes an ONNX model for onnxruntime; TensorRT engines take "
                           "--fp16, not --int8")
    flagged = "int8" if int8 else "tensorrt" if trt else None
    if name is not None and flagged is not None and name != flagged:
        raise HashsdkError(f"--target {name} and {EXPORT_TARGETS[flagged].flag} disagree")
    return EXPORT_TARGETS[name or flagged or "onnx"]


# the options only some targets take: option -> (the request's field, the targets that take
# it, what else it needs)
TARGET_OPTIONS = {"--fp16": ("fp16", ("tensorrt",), ""),
                  "--calibration-dir": ("calibration_dir", ("int8",), ""),
                  "--images": ("images_dir", ("tensorrt",),
                               " --verify (INT8 calibrates on --calibration-dir)")}


def _check_options(request: ExportRequest, target: ExportTarget) -> None:
    """Refuses an option that the chosen target does not take, before anything is written."""
    for option, (field, takers, needs) in TARGET_OPTIONS.items():
        given = getattr(request, field) not in (None, False)
        if given and (target.name not in takers or (needs and not request.verify)):
            flags = " or ".join(EXPORT_TARGETS[t].flag or f"--target {t}" for t in takers)
            raise HashsdkError(f"{option} applies to {flags}{needs}")


if __name__ == "__main__":
    main()
