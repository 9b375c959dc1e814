"""Export targets, and their registry: what ``hashsdk-export`` can write.

A target is a module of this folder with ``check(request)`` (refuses, before anything is
written, the options it cannot take) and ``write(request, onnx_path)`` (writes
``request.output`` from the FP32 ONNX model at ``onnx_path``; for the ``onnx`` target that is
the output itself). Registered below with its name (``--target NAME``), the flag that is its
shorthand, whether its output is itself the FP32 ONNX model, and where that model goes when
exporting from a checkpoint. A new target is one module plus one ``register_target`` line
(docs/architecture.md). The modules are imported only when chosen: ``--int8`` and ``--trt``
from an ONNX file import no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hashsdk.errors import HashsdkError


@dataclass(frozen=True)
class ExportRequest:
    """The command line's values: ``source`` a checkpoint or an ONNX file (``is_onnx``),
    ``output`` the file to write; the rest as ``hashsdk-export --help`` says."""

    source: Path
    output: Path
    is_onnx: bool
    opset: int = 18
    verify: bool = False
    images_dir: Path | None = None
    calibration: int = 512
    calibration_dir: Path | None = None
    fp16: bool = False
    min_batch: int = 1
    opt_batch: int = 64
    max_batch: int | None = None
    flip_average: bool = False


@dataclass(frozen=True)
class ExportTarget:
    """name: ``--target NAME``; flag: its shorthand (or None); about: a line of help;
    fp32_path: where the FP32 ONNX model goes, exporting from a checkpoint (None: the output
    is that model); module: the module of this folder with check() and write()."""

    name: str
    flag: str | None
    about: str
    fp32_path: Callable[[Path], Path] | None
    module: str

    def _module(self):
        return importlib.import_module(f"hashsdk.export.targets.{self.module}")

    def check(self, request: ExportRequest) -> None:
        self._module().check(request)

    def write(self, request: ExportRequest, onnx_path: Path) -> None:
        self._module().write(request, onnx_path)


EXPORT_TARGETS: dict[str, ExportTarget] = {}


def register_target(target: ExportTarget) -> None:
    if target.name in EXPORT_TARGETS:
        raise HashsdkError(f"export target {target.name!r} is already registered")
    EXPORT_TARGETS[target.name] = target


def fp32_beside(int8_path: Path) -> Path:
    """Where the FP32 model of an INT8 export goes: model.int8.onnx -> model.onnx, and any
    other name -> NAME.fp32.onnx."""
    name = int8_path.name
    if name.endswith(".int8.onnx"):
        return int8_path.with_name(name[:-len(".int8.onnx")] + ".onnx")
    return int8_path.with_name(int8_path.stem + ".fp32.onnx")


register_target(ExportTarget("onnx", None, "FP32 ONNX for onnxruntime (the default)", None,
                             "onnx"))
register_target(ExportTarget("int8", "--int8", "statically quantized INT8 ONNX (onnxruntime)",
                             fp32_beside, "int8"))
register_target(ExportTarget("tensorrt", "--trt", "a TensorRT engine (the trt extra)",
                             lambda output: output.with_suffix(".onnx"), "tensorrt"))
