"""The paper's ablation on CIFAR-10: the same network and loss with and without GAN fakes,
beside LSH, ITQ and SH, at several code lengths and seeds.

    .venv/bin/python benchmarks/retrieval.py --bits 12 24 32 48 --seeds 0 1 [--epochs 60]

Setting: the CIFAR-10 JPEG copy in ../shared/datasets, the usual protocol (1,000 queries,
5,000 training images, a database of the other 59,000), a backbone trained from scratch on
this CPU. One DCGAN per seed, trained on the 5,000 training images only, gives the fake bank.
Every run goes through the same pipeline as ``hashsdk-train all`` (hashsdk.train.pipeline),
and a run whose eval.json exists is not trained again, so an interrupted ablation resumes.

With/without differences are paired on the same queries: per-query average precision is
averaged over seeds, then bootstrapped over queries for the standard error.

Writes benchmarks/results/retrieval-cifar10.json and retrieval-cifar10.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hashsdk.train import config
from hashsdk.train.gan import train_gan
from hashsdk.train.loop import train_hash
from hashsdk.train.pipeline import paired_difference, prepare, run_baselines

RESULTS = Path(__file__).resolve().parent / "results"
PUBLISHED = {  # mAP@all on CIFAR-10 at 12 / 24 / 32 / 48 bits, as published
    "DNNH (NIN, published)": {12: 0.552, 24: 0.566, 32: 0.558, 48: 0.581},
    "DPSH (VGG-F pretrained, published)": {12: 0.713, 24: 0.727, 32: 0.744, 48: 0.757},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bits", type=int, nargs="+", default=[12, 24, 32, 48])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--backbone", default="cnn")
    p.add_argument("--loss", default="pairwise")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--gan-steps", type=int, default=5000)
    p.add_argument("--fake-loss", default="entropy")
    p.add_argument("--lam", type=float, default=1.0)
    p.add_argument("--fake-ratio", type=float, default=0.5)
    p.add_argument("--fake-bn", default="shared")
    p.add_argument("--run-root", type=Path, default=Path("runs/ablation-cifar10"))
    p.add_argument("--out", type=Path, default=RESULTS / "retrieval-cifar10")
    args = p.parse_args()

    runs: dict = {}
    base_cfg = None
    for seed in args.seeds:
        cfg = config.from_dict({
            "data": {"dataset": "cifar10", "seed": 0},  # one protocol: same queries for all
            "gan": {"steps": args.gan_steps, "seed": seed},
            "hash": {"backbone": args.backbone, "loss": args.loss, "epochs": args.epochs,
                     "fake_loss": args.fake_loss, "lam": args.lam,
                     "fake_ratio": args.fake_ratio, "fake_bn": args.fake_bn, "seed": seed},
        })
        base_cfg = base_cfg or cfg
        root = args.run_root / f"seed{seed}"
        data, split = prepare(root, cfg)
        fakes = root / "gan" / "fakes.npz"
        if not fakes.exists():
            t0 = time.perf_counter()
            train_gan(cfg, data, split, root / "gan")
            print(f"seed {seed}: GAN {time.perf_counter() - t0:.0f} s", flush=True)
        # the fake settings name the with-fakes run, so that several settings can share the
        # run root (and its GAN and without-fakes runs) without reusing each other's results
        fake_tag = f"fakes-{args.fake_loss}-lam{args.lam:g}-ratio{args.fake_ratio:g}-{args.fake_bn}"
        for bits in args.bits:
            for name, fake_path in (("fakes", str(fakes)), ("nofakes", None)):
                run = root / f"{bits}bits-{fake_tag if name == 'fakes' else name}"
                hc = dataclasses.replace(cfg.hash, bits=bits, fakes=fake_path)
                if not (run / "eval.json").exists():
                    t0 = time.perf_counter()
                    train_hash(dataclasses.replace(cfg, hash=hc), data, split, run)
                    print(f"seed {seed} {bits} bits {name}: {time.perf_counter() - t0:.0f} s",
                          flush=True)
                e = json.loads((run / "eval.json").read_text())
                history = json.loads((run / "history.json").read_text())
                runs[(seed, bits, name)] = dict(
                    map=e["map"], p_r2=e["precision_at_radius"], ap=np.load(run / "ap.npy"),
                    train_seconds=sum(r["seconds"] for r in history))
    baseline_rows = {bits: run_baselines(data, split, bits) for bits in args.bits}

    table: dict = {}
    for bits in args.bits:
        cell = {}
        for name in ("fakes", "nofakes"):
            maps = [runs[(s, bits, name)]["map"] for s in args.seeds]
            cell[name] = dict(map_mean=float(np.mean(maps)), map_per_seed=maps,
                              train_minutes=[runs[(s, bits, name)]["train_seconds"] / 60
                                             for s in args.seeds])
        ap_f = np.mean([runs[(s, bits, "fakes")]["ap"] for s in args.seeds], axis=0)
        ap_n = np.mean([runs[(s, bits, "nofakes")]["ap"] for s in args.seeds], axis=0)
        cell["paired"] = paired_difference(ap_f, ap_n)
        cell["paired_per_seed"] = [paired_difference(runs[(s, bits, "fakes")]["ap"],
                                                     runs[(s, bits, "nofakes")]["ap"])
                                   for s in args.seeds]
        for method, r in baseline_rows[bits].items():
            cell[method] = dict(map_mean=r["map"])
        table[bits] = cell
    report = dict(
        command="python benchmarks/retrieval.py --bits " + " ".join(map(str, args.bits))
        + " --seeds " + " ".join(map(str, args.seeds)) + f" --epochs {args.epochs}"
        + f" --gan-steps {args.gan_steps} --backbone {args.backbone} --loss {args.loss}"
        + f" --fake-loss {args.fake_loss} --lam {args.lam} --fake-ratio {args.fake_ratio}"
        + f" --fake-bn {args.fake_bn}",
        dataset="CIFAR-10 JPEG copy (../shared/datasets), 1,000 queries / 5,000 train / "
                "59,000 database",
        config=base_cfg.to_dict(), torch=torch.__version__, threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        table={str(b): c for b, c in table.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report, args.bits, args.seeds))
    print(markdown(report, args.bits, args.seeds))


def markdown(report: dict, bits: list[int], seeds: list[int]) -> str:
    t = report["table"]
    head = "| method | " + " | ".join(f"{b} bits" for b in bits) + " |"
    hc = report["config"]["hash"]
    lines = [f"mAP@all, mean of {len(seeds)} seed(s); backbone `{hc['backbone']}` from "
             f"scratch, loss `{hc['loss']}`, {hc['epochs']} epochs; fakes: `{hc['fake_loss']}`"
             f" at lambda {hc['lam']}, {hc['fake_ratio']} per real image, BatchNorm "
             f"`{hc['fake_bn']}`.", "", head,
             "|---|" + "---:|" * len(bits)]
    rows = [("without fakes", "nofakes"), ("with fakes (max-entropy)", "fakes"),
            ("LSH (pixels)", "lsh"), ("ITQ (pixels)", "itq"), ("SH (pixels)", "sh")]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(f"{t[str(b)][key]['map_mean']:.4f}"
                                                 for b in bits) + " |")
    lines.append("| with minus without (paired SE) | " + " | ".join(
        f"{t[str(b)]['paired']['difference']:+.4f} ({t[str(b)]['paired']['standard_error']:.4f})"
        for b in bits) + " |")
    for label, values in PUBLISHED.items():
        lines.append(f"| {label} | " + " | ".join(
            f"{values[b]:.3f}" if b in values else "" for b in bits) + " |")
    minutes = [m for b in bits for k in ("fakes", "nofakes") for m in t[str(b)][k]["train_minutes"]]
    lines += ["", f"Training time per model: {min(minutes):.0f} to {max(minutes):.0f} minutes "
                  f"on {report['threads']} CPU threads."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
