"""Encode speed: hashsdk.Encoder on onnxruntime (FP32 and INT8) against torch eager, in the
same run.

    .venv/bin/python benchmarks/encode.py [--backbone cnn] [--bits 48] [--runs 7]
    .venv/bin/python benchmarks/encode.py --checkpoint RUN/48bits-nofakes/checkpoint.pt
    .venv/bin/python benchmarks/encode.py --checkpoint RUN/checkpoint.pt --flip-average
    .venv/bin/python benchmarks/encode.py --backbone timm/resnet18 --image-size 224 \
        --threads 2 --runs 5                      # writes encode-224.json / .md

The same network goes through torch eager (fp32, inference_mode), through hashsdk-export's
ONNX model in the Encoder, and through its INT8 model (hashsdk.export.quantize, calibrated on
64 images of the source below). Weights are seeded random (speed does not depend on them), or
a trained ``--checkpoint``'s, in which case the INT8 model is also scored against FP32 on
that run's whole protocol (``int8_protocol``: bit agreement and both mAP@all). Above 32 pixels
the network takes its backbone's pretrained input contract (resize, centre crop,
interpolation).

Two sources: uint8 arrays at the input size, and JPEG files (CIFAR-10 test images, at 32x32
for a 32-pixel model and upscaled to 500x375 above; synthetic ones without the archive),
decoded and fitted by the Encoder, and by PIL and torchvision's transforms for torch.
``decode_share`` is the time one thread takes to decode and fit the files, over the Encoder's
time from files; ``paths / arrays`` in the table is the Encoder's throughput from files over
its throughput from arrays. Images per second, median of ``--runs`` timed runs, at batch 1, 64
and 256 with each of ``--threads``. On a GPU machine the CUDA rows run too: torch fp32, torch
AMP (bf16), onnxruntime CUDA where installed.

``--flip-average`` measures a trained checkpoint as ``hash.flip_average`` encodes it (each
image's outputs averaged with its mirror image's, in the exported graph too), whether or not
the run was trained with the setting on: a run's flip-averaged figures need no retraining.

Writes benchmarks/results/encode.json and encode.md (encode-<size>.* above 32 pixels, or
``--out NAME``.*).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _results import write_results  # noqa: E402  (benchmarks/)

from hashsdk import Encoder, HashsdkError, pack_bits
from hashsdk.export.onnx_export import export_onnx
from hashsdk.train import checkpoint, config
from hashsdk.train.backbones import lookup_backbone
from hashsdk.train.evaluate import normalizer, to_input
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


def exported_model(backbone: str, bits: int, folder: Path, size: int = 32,
                   checkpoint_path: Path | None = None) -> torch.nn.Module:
    """A network in eval mode, and its ONNX export at folder/model.onnx: the trained
    ``checkpoint_path``, or seeded random weights (speed does not depend on them). Above 32
    pixels a random network takes the input contract that its pretrained weights would bring
    (resolved as training resolves it; nothing is downloaded)."""
    from hashsdk.train.model import HashNet

    if checkpoint_path is not None:
        export_onnx(checkpoint_path, folder / "model.onnx")
        return HashNet.from_checkpoint(checkpoint_path)[0].eval()
    cfg = config.from_dict({"data": {"image_size": size}, "hash": {
        "backbone": backbone, "pretrained": "imagenet" if size > 32 else None}})
    pretrained = lookup_backbone(backbone).contract(cfg.hash.pretrained)
    mean, std = (pretrained.mean, pretrained.std) if pretrained else ([0.49, 0.48, 0.45],
                                                                      [0.25, 0.24, 0.26])
    torch.manual_seed(0)
    model = create_model(backbone, bits,
                         contract=config.input_contract(cfg.data, 3, mean, std)).eval()
    checkpoint.save(folder / "ckpt.pt", kind=KIND, model_args=model.model_args,
                    state_dict=model.state_dict(), config={})
    export_onnx(folder / "ckpt.pt", folder / "model.onnx")
    return model


def flip_averaged(checkpoint_path: Path, folder: Path) -> Path:
    """folder/flip-averaged.pt: ``checkpoint_path`` with ``flip_average`` on in its model
    arguments and its config (the weights as they are), and its run's split.npz beside it, so
    that calibration and the INT8 check read the run's own protocol."""
    import shutil

    from hashsdk.export.verify import run_split_path
    from hashsdk.train.model import with_flip_average

    ckpt = with_flip_average(checkpoint.load(checkpoint_path, checkpoint.HASHNET_KIND),
                             checkpoint_path)
    out = folder / "flip-averaged.pt"
    checkpoint.save(out, **{k: v for k, v in ckpt.items() if k != "format_version"})
    split = run_split_path(checkpoint_path)
    if split is not None:
        shutil.copy(split, folder / "split.npz")
    return out


def int8_model(folder: Path, files: list[Path], checkpoint_path: Path | None) -> Path:
    """folder/model.int8.onnx, calibrated on 64 images: of the checkpoint's training split, or
    of ``files``."""
    from hashsdk.encoder.preprocess import load_uint8
    from hashsdk.export.quantize import quantize_int8, training_images

    if checkpoint_path is not None:
        images, where = training_images(checkpoint_path, 64)
    else:
        meta = Encoder(folder / "model.onnx", device="cpu").metadata
        images, where = np.stack([load_uint8(p, meta) for p in files[:64]]), "benchmark JPEGs"
    quantize_int8(folder / "model.onnx", folder / "model.int8.onnx", images, where)
    return folder / "model.int8.onnx"


def torch_eager(model: torch.nn.Module, device: torch.device, dtype: torch.dtype | None):
    """uint8 images to packed codes through torch, preprocessing included."""
    net = model.to(device)
    scale, offset = normalizer(model.contract, device)

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        x = to_input(torch.from_numpy(batch).to(device), scale, offset)
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


def jpeg_files(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """``count`` JPEGs of ``size``: CIFAR-10 test images (resized where ``size`` is not 32x32)
    where the archive is found, else structured synthetic images; quality 90."""
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
        picture = Image.fromarray(image)
        if picture.size != size:
            picture = picture.resize(size, Image.BICUBIC)
        picture.save(paths[-1], quality=90)
    return paths


def cpu_rows(model: torch.nn.Module, folder: Path, runs: int, threads_list: tuple[int, ...],
             files: list[Path]) -> list[dict]:
    """torch eager, the FP32 Encoder and the INT8 Encoder on the CPU, from uint8 arrays and
    from ``files``."""
    from hashsdk.encoder.preprocess import load_uint8

    rng = np.random.default_rng(0)
    size = model.model_args["image_size"]
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        fp32 = Encoder(folder / "model.onnx", device="cpu", threads=threads)
        int8 = Encoder(folder / "model.int8.onnx", device="cpu", threads=threads)
        for batch_size in BATCHES:
            sources = {"arrays": (rng.integers(0, 256, (batch_size, size, size, 3),
                                               dtype=np.uint8),
                                  torch_eager(model, torch.device("cpu"), None)),
                       "paths": (files[:batch_size], torch_from_files(model))}
            for source, (batch, torch_fn) in sources.items():
                row = dict(device="cpu", threads=threads, batch=batch_size, source=source,
                           torch_eager=images_per_second(torch_fn, batch, runs))
                for key, encoder in (("encoder_onnxruntime", fp32), ("encoder_int8", int8)):
                    row[key] = images_per_second(
                        lambda b: encoder.encode(b, batch_size=256), batch, runs)  # noqa: B023
                row["ratio"] = row["encoder_onnxruntime"] / row["torch_eager"]
                row["int8_speedup"] = row["encoder_int8"] / row["encoder_onnxruntime"]
                if source == "paths":  # one thread's decode and fit, against the Encoder
                    d = images_per_second(lambda b: [load_uint8(p, fp32.metadata)  # noqa: B023
                                                     for p in b], batch, runs)
                    row["decode_share"] = row["encoder_onnxruntime"] / d
                rows.append(row)
                print(f"cpu threads={threads} batch={batch_size:3d} {source:6s}: torch "
                      f"{row['torch_eager']:7.1f}, FP32 {row['encoder_onnxruntime']:7.1f} "
                      f"({row['ratio']:.2f}x torch), INT8 {row['encoder_int8']:7.1f} "
                      f"({row['int8_speedup']:.2f}x FP32) img/s", flush=True)
    return rows


def cuda_rows(model: torch.nn.Module, onnx_path: Path, runs: int) -> list[dict]:
    from hashsdk.encoder.backends.onnxruntime import cuda_available

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
    weights = (f"trained weights of `{report['checkpoint']}`" if report.get("checkpoint")
               else "random weights")
    if report.get("flip_average"):
        weights += ", encoded with test-time flip averaging (two passes an image)"
    lines = [f"Backbone `{report['backbone']}`, {report['bits']} bits, {size}x{size} RGB, "
             f"{weights}; from uint8 arrays or JPEG paths to packed codes; images/s, median "
             f"of {report['runs']} runs; torch {report['torch']}, onnxruntime "
             f"{report.get('onnxruntime', '?')}.", "",
             "| threads | batch | source | torch eager | Encoder FP32 | FP32 / torch | "
             "Encoder INT8 | INT8 / FP32 | paths / arrays (FP32) | decoding share |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    cpu = [r for r in report["rows"] if r["device"] == "cpu"]
    arrays = {(r["threads"], r["batch"]): r for r in cpu if r["source"] == "arrays"}
    for r in cpu:
        share = f"{100 * r['decode_share']:.0f}%" if "decode_share" in r else ""
        base = arrays[r["threads"], r["batch"]]["encoder_onnxruntime"]
        versus = f"{r['encoder_onnxruntime'] / base:.2f}" if r["source"] == "paths" else ""
        lines.append(f"| {r['threads']} | {r['batch']} | {r['source']} | {r['torch_eager']:.0f} "
                     f"| {r['encoder_onnxruntime']:.0f} | {r['ratio']:.2f} | "
                     f"{r['encoder_int8']:.0f} | {r['int8_speedup']:.2f} | {versus} | {share} |")
    if report.get("int8_protocol"):
        p = report["int8_protocol"]
        lines += ["", f"INT8 against FP32 on the run's protocol ({p['queries']} queries, "
                  f"{p['database']} database images): bits agree on "
                  f"{100 * p['bit_agreement']:.2f}%, mAP@all FP32 {p['map_fp32']:.4f}, INT8 "
                  f"{p['map_int8']:.4f} ({100 * p['map_change']:+.2f} points)."]
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
    import onnxruntime

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="cnn")
    p.add_argument("--bits", type=int, default=48)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a trained hashing checkpoint (its backbone, bits and size win)")
    p.add_argument("--flip-average", action="store_true",
                   help="encode the --checkpoint with test-time flip averaging on")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--threads", type=int, nargs="+", default=list(THREADS))
    p.add_argument("--out", default=None,
                   help="results name (default: encode, or encode-SIZE above 32 px)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    if args.flip_average and args.checkpoint is None:
        p.error("--flip-average needs a trained --checkpoint")
    trained = flip_averaged(args.checkpoint, tmp) if args.flip_average else args.checkpoint
    model = exported_model(args.backbone, args.bits, tmp, args.image_size, trained)
    size, backbone, bits = (model.model_args[k] for k in ("image_size", "backbone", "bits"))
    files = jpeg_files(tmp / "jpeg", max(BATCHES), (32, 32) if size == 32 else (500, 375))
    int8_model(tmp, files, trained)
    rows = cpu_rows(model, tmp, args.runs, tuple(args.threads), files)
    if torch.cuda.is_available() and size == 32:
        rows += cuda_rows(model, tmp / "model.onnx", args.runs)
    report = dict(command=command_line(args), backbone=backbone, bits=bits, image_size=size,
                  runs=args.runs, checkpoint=args.checkpoint and str(args.checkpoint),
                  flip_average=args.flip_average,
                  cpu=platform.processor() or platform.machine(), torch=torch.__version__,
                  onnxruntime=onnxruntime.__version__, rows=rows)
    if args.checkpoint is not None:
        from hashsdk.export.verify import verify_int8

        check = verify_int8(tmp / "model.int8.onnx", tmp / "model.onnx", trained)
        print(f"INT8 on the run's protocol: {check.summary()}", flush=True)
        report["int8_protocol"] = check.as_dict()
    name = args.out or ("encode" if size == 32 else f"encode-{size}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_results(RESULTS / name, report, markdown(report))


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run."""
    line = "python benchmarks/encode.py"
    if args.checkpoint is not None:
        line += f" --checkpoint {args.checkpoint}"
        if args.flip_average:
            line += " --flip-average"
    else:
        line += f" --backbone {args.backbone} --bits {args.bits}"
        if args.image_size != 32:
            line += f" --image-size {args.image_size}"
    if tuple(args.threads) != THREADS:
        line += " --threads " + " ".join(map(str, args.threads))
    if args.runs != 7:
        line += f" --runs {args.runs}"
    if args.out:
        line += f" --out {args.out}"
    return line


if __name__ == "__main__":
    main()
