"""Encode speed: hashsdk.Encoder on onnxruntime against torch eager, in the same run.

    .venv/bin/python benchmarks/encode.py [--backbone cnn] [--bits 48] [--runs 7]

The same network (random weights: speed does not depend on them) goes through torch eager
(fp32, inference_mode) and through hashsdk-export's ONNX model in the Encoder. Both start
from uint8 images (N, 32, 32, 3) and end with packed codes, so preprocessing counts on both
sides. Images per second, median of ``--runs`` timed runs, at batch 1, 64 and 256 with 1 and 2
threads (torch.set_num_threads / the Encoder's ``threads``). On a GPU machine the CUDA rows
run too: torch fp32, torch AMP (bf16), onnxruntime CUDA where installed.

Writes benchmarks/results/encode.json and encode.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hashsdk import Encoder, pack_bits
from hashsdk._atomic import atomic_write
from hashsdk.export.onnx_export import export_onnx
from hashsdk.train import checkpoint
from hashsdk.train.evaluate import to_input
from hashsdk.train.model import KIND, create_model

RESULTS = Path(__file__).resolve().parent / "results"
BATCHES = (1, 64, 256)
THREADS = (1, 2)


def images_per_second(fn, batch: np.ndarray, runs: int) -> float:
    # enough calls per run that a batch-1 measurement is not a single timer tick
    calls = max(1, 256 // len(batch))
    fn(batch)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(batch)
        times.append((time.perf_counter() - t0) / calls)
    return len(batch) / statistics.median(times)


def exported_model(backbone: str, bits: int, folder: Path) -> torch.nn.Module:
    """A network with seeded random weights (speed does not depend on them), in eval mode, and
    its ONNX export at folder/model.onnx."""
    torch.manual_seed(0)
    model = create_model(backbone, bits, mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26]).eval()
    checkpoint.save(folder / "ckpt.pt", kind=KIND, model_args=model.model_args,
                    state_dict=model.state_dict(), config={})
    export_onnx(folder / "ckpt.pt", folder / "model.onnx")
    return model


def torch_eager(model: torch.nn.Module, device: torch.device, dtype: torch.dtype | None):
    """uint8 images to packed codes through torch, preprocessing included."""
    net = model.to(device)
    mean = torch.tensor(model.model_args["mean"], device=device)
    std = torch.tensor(model.model_args["std"], device=device)

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        x = to_input(torch.from_numpy(batch).to(device), mean, std)
        if dtype is None:
            out = net(x)
        else:
            with torch.autocast(device.type, dtype=dtype):
                out = net(x)
        return pack_bits(out.float().cpu().numpy())
    return run


def cpu_rows(model: torch.nn.Module, onnx_path: Path, runs: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for threads in THREADS:
        torch.set_num_threads(threads)
        encoder = Encoder(onnx_path, device="cpu", threads=threads)
        for batch_size in BATCHES:
            batch = rng.integers(0, 256, (batch_size, 32, 32, 3), dtype=np.uint8)
            t = images_per_second(torch_eager(model, torch.device("cpu"), None), batch, runs)
            o = images_per_second(lambda b: encoder.encode(b, batch_size=256), batch,  # noqa: B023
                                  runs)
            rows.append(dict(device="cpu", threads=threads, batch=batch_size,
                             torch_eager=t, encoder_onnxruntime=o, ratio=o / t))
            print(f"cpu threads={threads} batch={batch_size:3d}: torch {t:9.0f} img/s, "
                  f"Encoder {o:9.0f} img/s, ratio {o / t:.2f}", flush=True)
    return rows


def cuda_rows(model: torch.nn.Module, onnx_path: Path, runs: int) -> list[dict]:
    from hashsdk.backends.onnxruntime import cuda_available

    rng = np.random.default_rng(1)
    cuda, rows = torch.device("cuda"), []
    for batch_size in BATCHES:
        batch = rng.integers(0, 256, (batch_size, 32, 32, 3), dtype=np.uint8)
        row = dict(device=torch.cuda.get_device_name(), threads=None, batch=batch_size,
                   torch_eager=images_per_second(torch_eager(model, cuda, None), batch, runs),
                   torch_amp_bf16=images_per_second(torch_eager(model, cuda, torch.bfloat16),
                                                    batch, runs))
        if cuda_available():
            gpu = Encoder(onnx_path, device="cuda")
            row["encoder_onnxruntime_cuda"] = images_per_second(
                lambda b: gpu.encode(b, batch_size=256), batch, runs)  # noqa: B023
        rows.append(row)
        print(row, flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = [f"Backbone `{report['backbone']}`, {report['bits']} bits, 32x32 RGB, from uint8 "
             f"images to packed codes; images/s, median of {report['runs']} runs; torch "
             f"{report['torch']}.", "",
             "| device | threads | batch | torch eager | Encoder (onnxruntime) | ratio |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        if r["device"] == "cpu":
            lines.append(f"| cpu | {r['threads']} | {r['batch']} | {r['torch_eager']:.0f} | "
                         f"{r['encoder_onnxruntime']:.0f} | {r['ratio']:.2f} |")
    gpu_rows = [r for r in report["rows"] if r["device"] != "cpu"]
    if gpu_rows:
        lines += ["", "| GPU | batch | torch fp32 | torch AMP bf16 | onnxruntime CUDA |",
                  "|---|---:|---:|---:|---:|"]
        for r in gpu_rows:
            ort_cuda = r.get("encoder_onnxruntime_cuda")
            cell = f"{ort_cuda:.0f}" if ort_cuda else "not installed"
            lines.append(f"| {r['device']} | {r['batch']} | {r['torch_eager']:.0f} | "
                         f"{r['torch_amp_bf16']:.0f} | {cell} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="cnn")
    p.add_argument("--bits", type=int, default=48)
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model = exported_model(args.backbone, args.bits, tmp)
    rows = cpu_rows(model, tmp / "model.onnx", args.runs)
    if torch.cuda.is_available():
        rows += cuda_rows(model, tmp / "model.onnx", args.runs)
    report = dict(command=f"python benchmarks/encode.py --backbone {args.backbone} --bits "
                          f"{args.bits}", backbone=args.backbone, bits=args.bits, runs=args.runs,
                  cpu=platform.processor() or platform.machine(), torch=torch.__version__,
                  rows=rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_write(RESULTS / "encode.json") as f:
        f.write((json.dumps(report, indent=1) + "\n").encode())
    with atomic_write(RESULTS / "encode.md") as f:
        f.write(markdown(report).encode())


if __name__ == "__main__":
    main()
