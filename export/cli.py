"""``hashsdk-export``: a training checkpoint to ONNX, and ONNX to a TensorRT engine.

    hashsdk-export CHECKPOINT -o model.onnx [--opset 18] [--max-batch N] [--verify]
    hashsdk-export model.onnx --trt [--fp16] [--min-batch 1 --opt-batch 64 --max-batch 256]
                   -o model.engine
    hashsdk-export CHECKPOINT --trt --fp16 -o model.engine     (ONNX beside it, then the engine)
"""

from __future__ import annotations

from pathlib import Path

import click

from hashsdk._cli_errors import user_errors
from hashsdk.errors import HashsdkError


@click.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="model.onnx, or model.engine with --trt.")
@click.option("--opset", type=int, default=18, show_default=True)
@click.option("--verify", is_flag=True,
              help="Compare torch and onnxruntime on real images; fail below 99.9% bits.")
@click.option("--trt", is_flag=True, help="Build a TensorRT engine.")
@click.option("--fp16", is_flag=True, help="TensorRT: half precision.")
@click.option("--min-batch", type=int, default=1, show_default=True)
@click.option("--opt-batch", type=int, default=64, show_default=True)
@click.option("--max-batch", type=int, default=None,
              help="Largest batch (ONNX: unbounded by default; TensorRT: 256).")
@user_errors('export')
def main(source: Path, output: Path, opset: int, verify: bool, trt: bool, fp16: bool,
         min_batch: int, opt_batch: int, max_batch: int | None) -> None:
    """Export SOURCE (a hashing checkpoint, or an ONNX model with --trt)."""
    if not source.is_file():
        raise HashsdkError(f"file not found: {source}")
    is_onnx = source.suffix == ".onnx"
    if is_onnx and not trt:
        raise HashsdkError(f"{source} is already ONNX; pass --trt to build a TensorRT engine")
    if fp16 and not trt:
        raise HashsdkError("--fp16 applies to TensorRT engines; add --trt")
    onnx_path = source
    if not is_onnx:
        from hashsdk.export.onnx_export import export_onnx
        from hashsdk.train.model import HashNet

        onnx_path = output if not trt else output.with_suffix(".onnx")
        meta = export_onnx(source, onnx_path, opset, None if trt else max_batch)
        click.echo(f"wrote {onnx_path}: {meta.bits} bits, input {meta.channels}x"
                   f"{meta.input_size}x{meta.input_size}, backbone {meta.backbone}")
        if verify:
            from hashsdk.export.verify import validation_images, write_report
            from hashsdk.export.verify import verify as run_verify

            model, ckpt = HashNet.from_checkpoint(source)
            images, labels, queries = validation_images(ckpt, str(source))
            report = run_verify(str(onnx_path), model, images, labels, queries)
            click.echo(f"verify: {report.summary()}")
            write_report(onnx_path, report)
            if not report.passed:
                raise HashsdkError(f"verification failed: only {100 * report.bit_agreement:.3f}%"
                                   f" of bits agree, below the {100 * report.target:.1f}% "
                                   "target")
    if trt:
        from hashsdk.export.tensorrt_build import build_engine

        report = build_engine(onnx_path, output, fp16, min_batch, opt_batch, max_batch or 256)
        line = f"wrote {output} ({report.precision}, TensorRT {report.tensorrt})"
        if report.bit_agreement_vs_fp32 is not None:
            line += f"; FP16 bits agree with FP32 on {100 * report.bit_agreement_vs_fp32:.3f}%"
        click.echo(line)


if __name__ == "__main__":
    main()
