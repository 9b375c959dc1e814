"""What makes fine-tuning a pretrained backbone fast on a CPU: channels-last memory and bf16
autocast, each measured against plain float32 in one run on one machine.

    .venv/bin/python benchmarks/cpu_speed.py [--backbone timm/tf_efficientnet_lite0]
        [--sizes 64 96 128 160] [--batch 64] [--steps 6]

For each input size: the median seconds of a training step (forward, DPSH loss, backward,
AdamW step) and of an inference batch, under each setting. Ratios are against float32 NCHW
at the same size, measured in the same run, so that the machine's load cancels out.

Writes benchmarks/results/cpu-speed.json and .md (cpu-speed-<backbone>.* for another backbone).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from pathlib import Path

import torch
from _results import write_results  # noqa: E402  (benchmarks/)

from hashsdk.train.losses import RealLoss
from hashsdk.train.model import create_model

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {"fp32": (False, None), "channels-last": (True, None),
            "bf16": (False, torch.bfloat16), "channels-last + bf16": (True, torch.bfloat16)}


def timed(fn, steps: int) -> float:
    fn()  # the first call allocates and picks kernels
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(backbone: str, size: int, batch: int, steps: int) -> dict:
    out = {}
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size)
    y = torch.arange(batch) % 10
    for name, (last, dtype) in SETTINGS.items():
        model = create_model(backbone, 48, image_size=size,
                             pretrained=None if backbone == "cnn" else "imagenet")
        loss_fn = RealLoss("pairwise", 0.1)
        opt = torch.optim.AdamW(model.parameters(), 1e-4)
        xs = x.contiguous(memory_format=torch.channels_last) if last else x
        if last:
            model = model.to(memory_format=torch.channels_last)
        cast = (torch.autocast("cpu", dtype=dtype) if dtype is not None
                else contextlib.nullcontext())

        def train_step(model=model, xs=xs, cast=cast, opt=opt, loss_fn=loss_fn):
            model.train()
            with cast:
                loss = loss_fn(model(xs).float(), y, None)
            opt.zero_grad()
            loss.backward()
            opt.step()

        def infer(model=model, xs=xs, cast=cast):
            model.eval()
            with torch.inference_mode(), cast:
                model(xs)

        out[name] = dict(train_step_s=timed(train_step, steps), infer_batch_s=timed(infer, steps))
    base = out["fp32"]
    for row in out.values():
        row["train_speedup"] = base["train_step_s"] / row["train_step_s"]
        row["infer_speedup"] = base["infer_batch_s"] / row["infer_batch_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="timm/tf_efficientnet_lite0")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 160])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--out", type=Path, default=None,
                   help="default: results/cpu-speed (Lite0), else cpu-speed-<backbone>")
    args = p.parse_args()
    default = "timm/tf_efficientnet_lite0"
    args.out = args.out or RESULTS / ("cpu-speed" if args.backbone == default else
                                      "cpu-speed-" + args.backbone.replace("/", "-"))
    rows = {str(size): measure(args.backbone, size, args.batch, args.steps)
            for size in args.sizes}
    command = ("python benchmarks/cpu_speed.py --backbone " + args.backbone + " --sizes "
               + " ".join(map(str, args.sizes)) + f" --batch {args.batch} --steps {args.steps}")
    report = dict(command=command, backbone=args.backbone, batch=args.batch,
                  threads=torch.get_num_threads(), torch=torch.__version__,
                  cpu=platform.processor() or platform.machine(), rows=rows)
    lines = [f"`{args.backbone}`, batch {args.batch}, {report['threads']} threads, median of "
             f"{args.steps} steps; speed-up over float32 NCHW at the same size, same run.", "",
             "| size | setting | train step s | speed-up | inference batch s | speed-up |",
             "|---:|---|---:|---:|---:|---:|"]
    for size, settings in rows.items():
        for name, r in settings.items():
            lines.append(f"| {size} | {name} | {r['train_step_s']:.3f} | "
                         f"{r['train_speedup']:.2f} | {r['infer_batch_s']:.3f} | "
                         f"{r['infer_speedup']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, report, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
