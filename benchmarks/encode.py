"""Encode speed: hashsdk.Encoder on onnxruntime against torch eager, in the same run.

    .venv/bin/python benchmarks/encode.py [--backbone cnn] [--bits 48] [--runs 7]
    .venv/bin/python benchmarks/encode.py --backbone timm/resnet18 --image-size 224 \
        --threads 2 --runs 5                      # writes encode-224.json / .md

The same network (random weights: speed does not depend on them) goes through torch eager
(fp32, inference_mode) and through hashsdk-export's ONNX model in the Encoder. Both start
from uint8 images at the input size and end with packed codes, so preprocessing counts on both
sides. Above 32 pixels the network takes its backbone's pretrained input contract (resize,
centre crop, interpolation) and a second source runs: JPEG files of 500x375 (CIFAR-10 test
images upscaled, or synthetic ones without the archive), decoded and fitted by the Encoder,
and by PIL and torchvision's transforms for torch; ``decode_share`` is the part of the
Encoder's time spent decoding and fitting. Images per second, median of ``--runs`` timed runs,
at batch 1, 64 and 256 with each of ``--threads``. On a GPU machine the CUDA rows run too:
torch fp32, torch AMP (bf16), onnxruntime CUDA where installed.

Writes benchmarks/results/encode.json and encode.md (encode-<size>.* above 32 pixels).
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

from hashsdk import Encoder, HashsdkError, pack_bits
from hashsdk._atomic import atomic_write
from hashsdk.export.onnx_export import export_onnx
from hashsdk.train import checkpoint, config
from hashsdk.train.backbones import lookup_backbone
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


def exported_model(backbone: str, bits: int, folder: Path, size: int = 32) -> torch.nn.Module:
    """A network with seeded random weights (speed does not depend on them), in eval mode, and
    its ONNX export at folder/model.onnx. Above 32 pixels it takes the input contract that its
    pretrained weights would bring (resolved as training resolves it; nothing is downloaded)."""
    cfg = config.from_dict({"data": {"image_size": size}, "hash": {
        "backbone": backbone, "pretrained": "imagenet" if size > 32 else None}})
    spec = lookup_backbone(backbone).spec(cfg.hash.pretrained)
    mean, std = (list(spec.mean), list(spec.std)) if spec else ([0.49, 0.48, 0.45],
                                                                [0.25, 0.24, 0.26])
    torch.manual_seed(0)
    model = create_model(backbone, bits, image_size=size, mean=mean, std=std,
                         resize_size=cfg.data.resize_size,
                         interpolation=cfg.data.interpolation).eval()
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


def torch_from_files(model: torch.nn.Module):
    """JPEG paths to packed codes the usual torch way: PIL, torchvision's evaluation
    transform (resize, centre crop, to tensor, normalize), the network."""
    from PIL import Image
    from torchvision import transforms

    args = model.model_args
    transform = transforms.Compose([
        transforms.Resize(args["resize_size"],
                          transforms.InterpolationMode(args["interpolation"])),
        transforms.CenterCrop(args["image_size"]), transforms.ToTensor(),
        transforms.Normalize(args["mean"], args["std"])])

    @torch.inference_mode()
    def run(paths: list[Path]) -> np.ndarray:
        x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
        return pack_bits(model(x).numpy())
    return run


def jpeg_files(folder: Path, count: int, size: tuple[int, int] = (500, 375)) -> list[Path]:
    """``count`` JPEGs of ``size``: CIFAR-10 test images upscaled where the archive is found,
    else structured synthetic images; quality 90."""
    from PIL import Image

    from hashsdk.train.data import load_dataset

    try:
        data = load_dataset(config.DataConfig(dataset="cifar10", image_size=32), progress=False)
        source = data.images[np.flatnonzero(data.is_test)[:count]]
    except HashsdkError:
        rng = np.random.default_rng(0)
        source = rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(source):
        paths.append(folder / f"{i:04d}.jpg")
        Image.fromarray(image).resize(size, Image.BICUBIC).save(paths[-1], quality=90)
    return paths


def cpu_rows(model: torch.nn.Module, onnx_path: Path, runs: int, threads_list: tuple[int, ...],
             files: list[Path] | None = None) -> list[dict]:
    """Encoder against torch eager on the CPU: from uint8 arrays, and from ``files``."""
    from hashsdk.preprocess import load_uint8

    rng = np.random.default_rng(0)
    size = model.model_args["image_size"]
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        encoder = Encoder(onnx_path, device="cpu", threads=threads)
        for batch_size in BATCHES:
            sources = {"arrays": (rng.integers(0, 256, (batch_size, size, size, 3),
                                               dtype=np.uint8),
                                  torch_eager(model, torch.device("cpu"), None))}
            if files:
                sources["jpeg"] = (files[:batch_size], torch_from_files(model))
            for source, (batch, torch_fn) in sources.items():
                t = images_per_second(torch_fn, batch, runs)
                o = images_per_second(lambda b: encoder.encode(b, batch_size=256),  # noqa: B023
                                      batch, runs)
                row = dict(device="cpu", threads=threads, batch=batch_size, source=source,
                           torch_eager=t, encoder_onnxruntime=o, ratio=o / t)
                if source == "jpeg":  # the share of the Encoder's time in decode and fit
                    d = images_per_second(lambda b: [load_uint8(p, encoder.metadata)  # noqa: B023
                                                     for p in b], batch, runs)
                    row["decode_share"] = o / d
                rows.append(row)
                print(f"cpu threads={threads} batch={batch_size:3d} {source}: torch {t:8.1f} "
                      f"img/s, Encoder {o:8.1f} img/s, ratio {o / t:.2f}"
                      + (f", decoding {100 * row['decode_share']:.0f}% of the Encoder's time"
                         if "decode_share" in row else ""), flush=True)
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
    size = report.get("image_size", 32)
    lines = [f"Backbone `{report['backbone']}`, {report['bits']} bits, {size}x{size} RGB, from "
             f"uint8 images (and JPEG files) to packed codes; images/s, median of "
             f"{report['runs']} runs; torch {report['torch']}.", "",
             "| device | threads | batch | source | torch eager | Encoder (onnxruntime) | ratio "
             "| decoding share |", "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in report["rows"]:
        if r["device"] == "cpu":
            share = f"{100 * r['decode_share']:.0f}%" if "decode_share" in r else ""
            lines.append(f"| cpu | {r['threads']} | {r['batch']} | {r.get('source', 'arrays')} "
                         f"| {r['torch_eager']:.0f} | {r['encoder_onnxruntime']:.0f} | "
                         f"{r['ratio']:.2f} | {share} |")
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
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--threads", type=int, nargs="+", default=list(THREADS))
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model = exported_model(args.backbone, args.bits, tmp, args.image_size)
    files = jpeg_files(tmp / "jpeg", max(BATCHES)) if args.image_size > 32 else None
    rows = cpu_rows(model, tmp / "model.onnx", args.runs, tuple(args.threads), files)
    if torch.cuda.is_available() and args.image_size == 32:
        rows += cuda_rows(model, tmp / "model.onnx", args.runs)
    extra = "" if args.image_size == 32 else f" --image-size {args.image_size}"
    if tuple(args.threads) != THREADS:
        extra += " --threads " + " ".join(map(str, args.threads))
    if args.runs != 7:
        extra += f" --runs {args.runs}"
    report = dict(command=f"python benchmarks/encode.py --backbone {args.backbone} --bits "
                          f"{args.bits}{extra}", backbone=args.backbone, bits=args.bits,
                  image_size=args.image_size, runs=args.runs,
                  cpu=platform.processor() or platform.machine(), torch=torch.__version__,
                  rows=rows)
    name = "encode" if args.image_size == 32 else f"encode-{args.image_size}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_write(RESULTS / f"{name}.json") as f:
        f.write((json.dumps(report, indent=1) + "\n").encode())
    with atomic_write(RESULTS / f"{name}.md") as f:
        f.write(markdown(report).encode())


if __name__ == "__main__":
    main()
