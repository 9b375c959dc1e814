"""CIFAR-10's label-free protocol: hashsdk's label-free losses against ITQ on the same features.

    python benchmarks/labelfree.py [--bits 16 32 64] [--image-size 96] [--seeds 0 1]

The field's unsupervised protocol: 1,000 queries (100 a class from the test split), a database
of the other 59,000 images, mAP@1000 (ties broken by the smaller database row, as
hashsdk.metrics does); labels only score. Training: the 50,000 training-split images, their
labels unused (``--labels none``). Features: EfficientNet-Lite0 from its offline ImageNet
weights, frozen, at ``--image-size`` px, computed once and cached (train/frozen.py). Rows:
``itq`` (PCA, then ITQ's rotation; the classic baseline on the same features), ``edit-itq``
and ``bihalf``, each at every length; bihalf over ``--seeds`` (ITQ's random start matters
little). Writes
benchmarks/results/labelfree-cifar10.json and .md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _results import RESULTS, commands_with, previous_results, write_results

from hashsdk.codes import pack_bits
from hashsdk.metrics import evaluate
from hashsdk.train import config
from hashsdk.train.data import cache_dir
from hashsdk.train.frozen import cached_features
from hashsdk.train.loop import train_hash
from hashsdk.train.model import HashNet
from hashsdk.train.stages import prepare

ROOT = Path(__file__).resolve().parent.parent
LOSSES = ("itq", "edit-itq", "bihalf", "contrastive")
PUBLISHED = "BiHalf (Li and van Gemert 2021, VGG-16 features, mAP@1000): 0.59 at 64 bits"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--bihalf-epochs", type=int, default=10,
                   help="Epochs of bihalf's head (batch 128; 50,000 images: 390 steps each).")
    p.add_argument("--run-root", type=Path, default=ROOT / "runs" / "labelfree-cifar10")
    p.add_argument("--root", default=None, help="The CIFAR-10 archive (default: as found).")
    p.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES),
                   help="The losses to run; the results file's rows of the others are kept, "
                        "and its commands list both runs.")
    args = p.parse_args()
    cfg = config.from_dict({
        "data": {"dataset": "cifar10", "root": args.root, "labels": "none",
                 "train_per_class": 5000, "image_size": args.image_size,
                 "trim": False},
        # the low-pass filter, the trim and block 4's features (defaults without labels since
        # copydetect-blur.md and copydetect-blocks.md) off, as this table was measured
        "hash": {"backbone": "timm/tf_efficientnet_lite0", "pretrained": "imagenet",
                 "input_blur": 0.0, "feature_block": -1},
    }, where="labelfree")
    data, split = prepare(args.run_root, cfg)
    old = previous_results(RESULTS / "labelfree-cifar10.json")
    rows = [r for r in old.get("rows", []) if r["loss"] not in args.losses]
    for bits in args.bits:
        for loss in args.losses:
            for seed in args.seeds if loss == "bihalf" else args.seeds[:1]:
                rows.append(run(cfg, data, split, args.run_root, loss, bits, seed,
                                args.bihalf_epochs))
                print(rows[-1], flush=True)
    command = "python benchmarks/labelfree.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in (("bits", args.bits), ("image_size", args.image_size),
                     ("seeds", args.seeds), ("bihalf_epochs", args.bihalf_epochs),
                     ("losses", args.losses)))
    # a run of every loss replaces every row, so the earlier commands go with them
    every = set(args.losses) == set(LOSSES)
    report = dict(commands=commands_with({} if every else old, command),
        protocol=dict(queries=len(split.query), train=len(split.train),
                      database=len(split.database)), image_size=args.image_size,
        published=PUBLISHED, bihalf_epochs=args.bihalf_epochs, rows=rows)
    write_results(RESULTS / "labelfree-cifar10", report, markdown(report))


def run(cfg: config.RunConfig, data, split, root: Path, loss: str, bits: int,
        seed: int, bihalf_epochs: int) -> dict:
    import dataclasses

    # koleo off: the table was measured before the KoLeo term (docs/dedup.md) existed
    run_cfg = dataclasses.replace(cfg, hash=dataclasses.replace(
        cfg.hash, loss=loss, bits=bits, seed=seed, koleo=0.0,
        epochs=bihalf_epochs if loss == "bihalf" else None))
    run_dir = root / f"{loss}-{bits}bits-seed{seed}"
    started = time.perf_counter()
    result = train_hash(run_cfg, data, split, run_dir, resume=False, progress=False)
    seconds = time.perf_counter() - started
    model = HashNet.from_checkpoint(run_dir / "checkpoint.pt")[0].eval()
    feats = cached_features(model, data.images, cache_dir(cfg.data), torch.device("cpu"), False)
    with torch.inference_mode():
        out = model.hash(torch.from_numpy(feats)).numpy()
    codes = pack_bits(out)
    m = evaluate(codes[split.query], codes[split.database], data.labels[split.query],
                 data.labels[split.database], bits=bits, topk=1000)
    distinct = len(np.unique(codes[split.database], axis=0))
    return dict(loss=loss, bits=bits, seed=seed, map_at_1000=m.map, map_all=result["map"],
                distinct_database_codes=distinct, seconds=seconds,
                feature_seconds=result["feature_seconds"])


def markdown(report: dict) -> list[str]:
    n = report["protocol"]
    lines = [f"CIFAR-10 without labels: {n['queries']:,} queries, {n['database']:,} database, "
             f"{n['train']:,} training images (labels unused); EfficientNet-Lite0's frozen "
             f"ImageNet features at {report['image_size']} px; bihalf's head "
             f"{report['bihalf_epochs']} epochs, contrastive's 60 (the frozen-feature default; "
             "batch 128, seed 0); mAP@1000, ties broken by the smaller database row. "
             "Published: " + report["published"] + ".", "",
             "| bits | " + " | ".join(LOSSES) + " | bihalf seeds |",
             "|---:|" + "---:|" * (len(LOSSES) + 1)]
    for bits in sorted({r["bits"] for r in report["rows"]}):
        cells = []
        for loss in LOSSES:
            maps = [r["map_at_1000"] for r in report["rows"]
                    if r["bits"] == bits and r["loss"] == loss]
            cells.append(f"{np.mean(maps):.4f}" if maps else "")
        seeds = sum(r["bits"] == bits and r["loss"] == "bihalf" for r in report["rows"])
        lines.append(f"| {bits} | " + " | ".join(cells) + f" | {seeds} |")
    return lines


if __name__ == "__main__":
    main()
