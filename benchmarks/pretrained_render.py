"""benchmarks/pretrained.py's tables: the finished runs read back, the paired with-minus-
without differences, the published rows, and the Markdown."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hashsdk.train import baselines as bl
from hashsdk.train.comparison import paired_difference

PUBLISHED = {  # mAP@all on CIFAR-10 at 12 / 24 / 32 / 48 bits, as published
    "DPSH (VGG-F pretrained, published)": {12: 0.713, 24: 0.727, 32: 0.744, 48: 0.757},
    "DPSH (VGG-11 pretrained, as quoted in the project's issue 18)": {48: 0.811},
}
FEATURE_BASELINES = ("pca", "itq", "lsh")


def read_run(run: Path) -> dict:
    e = json.loads((run / "eval.json").read_text())
    history = json.loads((run / "history.json").read_text())
    return dict(map=e["map"], ap=np.load(run / "ap.npy"),
                train_minutes=sum(r["seconds"] for r in history) / 60)


def table(args: argparse.Namespace, roots: list[Path], lam: float) -> dict:
    """{bits: {row: cell}}, rows "frozen-nofakes", "frozen-fakes", "finetune-nofakes",
    "finetune-fakes", the feature baselines and the pixel baselines."""
    modes = [("frozen", "", args.bits), ("finetune", "", args.finetune_bits),
             ("finetune", "-noaug", args.noaug_bits)]
    kinds = ["nofakes"] + (["fakes"] if lam > 0 else [])
    first = roots[0]
    feature = json.loads((first / "feature-baselines.json").read_text())
    out: dict = {}
    for bits in args.bits:
        cell = {}
        for mode, suffix, lengths in modes:
            # the seeds whose runs of this cell finished (all of them, unless --render-only)
            seeds = [(seed, root) for root, seed in zip(roots, args.seeds, strict=True)
                     if (mode == "frozen" or seed in args.finetune_seeds) and all(
                         (root / f"{mode}-{bits}bits-{k}{suffix}" / "eval.json").exists()
                         for k in kinds)]
            if bits not in lengths or not seeds:
                continue
            runs = {k: [read_run(root / f"{mode}-{bits}bits-{k}{suffix}") for _, root in seeds]
                    for k in kinds}
            for k in kinds:
                cell[f"{mode}-{k}{suffix}"] = dict(
                    map_mean=float(np.mean([r["map"] for r in runs[k]])),
                    map_per_seed=[r["map"] for r in runs[k]], seeds=[s for s, _ in seeds],
                    train_minutes=[r["train_minutes"] for r in runs[k]])
            if lam > 0:
                ap = {k: np.mean([r["ap"] for r in runs[k]], axis=0) for k in kinds}
                fakes = cell[f"{mode}-fakes{suffix}"]
                fakes["paired"] = paired_difference(ap["fakes"], ap["nofakes"])
                fakes["paired_per_seed"] = [
                    paired_difference(f["ap"], n["ap"])
                    for f, n in zip(runs["fakes"], runs["nofakes"], strict=True)]
        for method in FEATURE_BASELINES:
            cell[f"{method}-features"] = dict(map_mean=feature[f"{bits}-{method}"]["map"])
        pixels = json.loads((first / "pixel-baselines.json").read_text())[str(bits)]
        for method in bl.METHODS:
            cell[f"{method}-pixels"] = dict(map_mean=pixels[method]["map"])
        out[str(bits)] = cell
    return out


LABELS = {
    "frozen-nofakes": "frozen features, without fakes",
    "frozen-fakes": "frozen features, with fakes",
    "finetune-nofakes": "fine-tuned, without fakes",
    "finetune-fakes": "fine-tuned, with fakes",
    "finetune-nofakes-noaug": "fine-tuned without augmentation, without fakes",
    "finetune-fakes-noaug": "fine-tuned without augmentation, with fakes",
    "pca-features": "sign of PCA (pretrained features, no training)",
    "itq-features": "ITQ (pretrained features, no training)",
    "lsh-features": "LSH (pretrained features, no training)",
    "lsh-pixels": "LSH (pixels)", "itq-pixels": "ITQ (pixels)", "sh-pixels": "SH (pixels)",
}


def finetune_seeds(t: dict, bits: list[int]) -> str:
    """Which seeds each length's fine-tuned cells average, e.g. "seeds 0, 1 at 48 bits"."""
    by_seeds: dict[tuple, list[int]] = {}
    for b in bits:
        cell = t[str(b)].get("finetune-nofakes")
        if cell is not None:
            by_seeds.setdefault(tuple(cell["seeds"]), []).append(b)
    return "; ".join(f"seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))} at "
                     f"{', '.join(map(str, lengths))} bits"
                     for s, lengths in by_seeds.items()) or "none"


def markdown(report: dict) -> str:
    t, bits = report["table"], report["bits"]
    hc = report["config"]["hash"]
    lines = [f"{report['dataset']} ({report['protocol']}), mAP@all, mean of "
             f"{len(report['seeds'])} seed(s) (fine-tuned rows: {finetune_seeds(t, bits)}); "
             f"`{hc['backbone']}` with ImageNet weights "
             f"({report['weights']}), images at {report['image_size']} px. Fine-tuned: "
             f"{hc['epochs']} epochs of batch {hc['batch_size']}, the first "
             f"{hc['freeze_backbone_epochs']} with the backbone frozen, then the backbone at "
             f"{hc['backbone_lr']:g} of lr {hc['lr']:g}, {hc['crop']} crops and flips" + (
                 " (chosen on the validation split: " + ", ".join(
                     f"{k} {v:.4f}" for k, v in report["recipe"]["map_by_recipe"].items()) + ")"
                 if report["recipe"] else "") + ". Frozen features: the hash layer "
             f"alone, {report['frozen_epochs']} epochs. Fakes: {hc['fake_loss']}, λ "
             f"{report['chosen_lam']:g} (chosen on the validation split: "
             + ", ".join(f"λ {k} {v:.4f}" for k, v in report["selection"]["map_by_lam"].items())
             + f"), {hc['fake_ratio']:g} per real, BatchNorm {hc['fake_bn']}. In brackets: "
             "with minus without fakes, paired over queries (bootstrap SE).", "",
             "| method | " + " | ".join(f"{b} bits" for b in bits) + " |",
             "|---|" + "---:|" * len(bits)]
    rows = [r for r in LABELS if any(r in t[str(b)] for b in bits)]
    for row in rows:
        def cell(b: int, row: str = row) -> str:
            c = t[str(b)].get(row)
            if c is None:
                return ""
            paired = c.get("paired")
            return f"{c['map_mean']:.4f}" + (
                f" ({paired['difference']:+.4f} ± {paired['standard_error']:.4f})"
                if paired else "")
        lines.append(f"| {LABELS[row]} | " + " | ".join(cell(b) for b in bits) + " |")
    if report["dataset"] == "cifar10":
        for name, values in PUBLISHED.items():
            lines.append(f"| {name} | " + " | ".join(
                f"{values[b]:.3f}" if b in values else "" for b in bits) + " |")
    minutes = {row: [m for b in bits for m in t[str(b)].get(row, {}).get("train_minutes", [])]
               for row in ("frozen-nofakes", "frozen-fakes", "finetune-nofakes",
                           "finetune-fakes", "finetune-nofakes-noaug", "finetune-fakes-noaug")}
    lines += ["", "Training minutes per model (2 CPU threads), besides the features of the "
              f"frozen rows, computed once ({report['feature_minutes']:.1f} min): "
              + "; ".join(f"{LABELS[r]} {min(m):.2f} to {max(m):.2f}"
                          for r, m in minutes.items() if m) + "."]
    return "\n".join(lines) + "\n"
