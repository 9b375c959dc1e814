"""``hashsdk-export``: a training checkpoint to ONNX (FP32 or INT8), and ONNX to a TensorRT
engine.

    hashsdk-export CHECKPOINT -o model.onnx [--opset 18] [--max-batch N] [--verify]
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

from pathlib import Path

import click

from hashsdk._cli_errors import CONTEXT, user_errors, version_option
from hashsdk.errors import HashsdkError
from hashsdk.export.onnx_file import BIT_AGREEMENT_TARGETS

TARGETS = {k: f"{100 * v:g}%" for k, v in BIT_AGREEMENT_TARGETS.items()}
VERIFY_IMAGES = 512  # real images that --verify of a TensorRT engine runs


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
@click.option("--int8", is_flag=True, help="Write a statically quantized INT8 ONNX model.")
@click.option("--calibration", type=click.IntRange(min=1), default=512, show_default=True,
              help="--int8: how many calibration images.")
@click.option("--calibration-dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="--int8: calibrate on images of this folder, not on the "
                                 "run's training split.")
@click.option("--trt", is_flag=True, help="Build a TensorRT engine.")
@click.option("--fp16", is_flag=True, help="TensorRT: half precision.")
@click.option("--min-batch", type=int, default=1, show_default=True)
@click.option("--opt-batch", type=int, default=64, show_default=True)
@click.option("--max-batch", type=int, default=None,
              help="Largest batch.  [default: ONNX unbounded, TensorRT 256]")
@user_errors('export')
def main(source: Path, output: Path, opset: int, verify: bool, images_dir: Path | None,
         int8: bool, calibration: int, calibration_dir: Path | None, trt: bool, fp16: bool,
         min_batch: int, opt_batch: int, max_batch: int | None) -> None:
    """Export SOURCE (a hashing checkpoint, or an ONNX model with --trt or --int8).

    Training is hashsdk-train; encoding and search with the result is hashsdk."""
    if not source.is_file():
        raise HashsdkError(f"file not found: {source}")
    is_onnx = source.suffix == ".onnx"
    _check_options(source, is_onnx, verify, int8, calibration_dir, trt, fp16, images_dir)
    onnx_path = source
    if not is_onnx:
        onnx_path = output.with_suffix(".onnx") if trt else _fp32_beside(output) if int8 \
            else output
        _export_fp32(source, onnx_path, opset, None if trt else max_batch, verify)
    if int8:
        _export_int8(onnx_path, output, None if is_onnx else source, calibration,
                     calibration_dir, verify)
    if trt:
        _export_engine(onnx_path, output, None if is_onnx else source, fp16,
                       (min_batch, opt_batch, max_batch or 256), verify, images_dir)


def _export_engine(onnx_path: Path, output: Path, checkpoint: Path | None, fp16: bool,
                   batches: tuple[int, int, int], verify: bool, images_dir: Path | None) -> None:
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


def _fp32_beside(int8_path: Path) -> Path:
    """Where the FP32 model of an INT8 export goes: model.int8.onnx -> model.onnx, and any
    other name -> NAME.fp32.onnx."""
    name = int8_path.name
    if name.endswith(".int8.onnx"):
        return int8_path.with_name(name[:-len(".int8.onnx")] + ".onnx")
    return int8_path.with_name(int8_path.stem + ".fp32.onnx")


def _check_options(source: Path, is_onnx: bool, verify: bool, int8: bool,
                   calibration_dir: Path | None, trt: bool, fp16: bool,
                   images_dir: Path | None) -> None:
    """Refuses combinations that cannot work, before anything is written."""
    if is_onnx and not (trt or int8):
        raise HashsdkError(f"{source} is already ONNX; pass --trt to build a TensorRT engine "
                           "or --int8 to quantize it")
    if fp16 and not trt:
        raise HashsdkError("--fp16 applies to TensorRT engines; add --trt")
    if int8 and trt:
        raise HashsdkError("--int8 writes an ONNX model for onnxruntime; TensorRT engines take "
                           "--fp16, not --int8")
    if int8 and is_onnx and calibration_dir is None:
        raise HashsdkError("--int8 from an ONNX model needs --calibration-dir FOLDER (there is "
                           "no run to take the training split from); or export the checkpoint")
    if int8 and is_onnx and verify:
        raise HashsdkError("--verify with --int8 scores the run's protocol and needs the "
                           "checkpoint: hashsdk-export CHECKPOINT --int8 --verify")
    if calibration_dir is not None and not int8:
        raise HashsdkError("--calibration-dir applies to --int8")
    if trt and verify and is_onnx and images_dir is None:
        raise HashsdkError("--verify from an ONNX file needs --images FOLDER: the engine is "
                           "checked against the FP32 model on real images, and an ONNX file "
                           "carries none (from a checkpoint, the run's training images are used)")
    if images_dir is not None and not (trt and verify):
        raise HashsdkError("--images applies to --trt --verify (INT8 calibrates on "
                           "--calibration-dir)")


def _export_fp32(checkpoint: Path, onnx_path: Path, opset: int, max_batch: int | None,
                 verify: bool) -> None:
    from hashsdk.export.onnx_export import export_onnx
    from hashsdk.train.model import HashNet

    meta = export_onnx(checkpoint, onnx_path, opset, max_batch)
    click.echo(f"wrote {onnx_path}: {meta.bits} bits, input {meta.channels}x"
               f"{meta.input_size}x{meta.input_size}, backbone {meta.backbone}")
    if not verify:
        return
    from hashsdk.export.verify import validation_images, write_report
    from hashsdk.export.verify import verify as run_verify

    model, ckpt = HashNet.from_checkpoint(checkpoint)
    images, labels, queries = validation_images(ckpt, str(checkpoint))
    report = run_verify(str(onnx_path), model, images, labels, queries)
    click.echo(f"verify: {report.summary()}")
    write_report(onnx_path, report)
    if not report.passed:
        raise HashsdkError(f"verification failed: only {100 * report.bit_agreement:.3f}% of "
                           f"bits agree, below the {100 * report.target:.1f}% target")


def _export_int8(fp32_path: Path, output: Path, checkpoint: Path | None, count: int,
                 folder: Path | None, verify: bool) -> None:
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


if __name__ == "__main__":
    main()
