"""The paper's ablation: the same network and loss with and without GAN fakes, beside LSH,
ITQ and SH, at several code lengths, seeds and fake-loss settings.

    .venv/bin/python benchmarks/retrieval.py --bits 12 24 32 48 --seeds 0 1 [--epochs 60]
    .venv/bin/python benchmarks/retrieval.py --dataset fashion-mnist --bits 32 \
        --lam 0.03 0.3 --fake-loss entropy uniform-ce        # a sweep: one row per setting
    .venv/bin/python benchmarks/retrieval.py --augment off on --width 64 ...
        # the over-fitting regime (no augmentation) beside augmentation, the other remedy
    .venv/bin/python benchmarks/retrieval.py --augment off --train-per-class 100 \
        --batch-size 32 --epochs 100 ...   # memorises 1,000 images in 4 minutes a model

Setting: CIFAR-10 (the JPEG copy in ../shared/datasets) or Fashion-MNIST, the usual protocol
(1,000 queries, 5,000 training images, a database of all other images), a backbone trained
from scratch on this CPU. One DCGAN per seed, trained on the 5,000 training images only,
gives the fake bank; the GAN and the without-fakes runs are shared by every fake setting.
Every run is a stage of the same builder as ``hashsdk-train all`` (hashsdk.train.stages), so a
finished run is not trained again, an interrupted ablation resumes, and a changed setting
retrains the runs it affects.

With/without differences are paired on the same queries: per-query average precision is
averaged over seeds, then bootstrapped over queries for the standard error. With several
``--augment`` values each is a variant of every row (run names end in ``-noaug`` without
augmentation); each with-fakes row is paired with the without-fakes row of its own
augmentation, and every row also with the first row (``vs_first``), so that remedies compare.

Writes benchmarks/results/retrieval-<dataset>.json and .md (or --out).
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
from _results import write_results  # noqa: E402  (benchmarks/)

from hashsdk.train import config
from hashsdk.train.comparison import paired_difference
from hashsdk.train.stages import Pipeline, run_stages, with_fakes, without_fakes

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_BATCH = 128  # the batch of the tables (left out of the printed command)
PUBLISHED = {  # mAP@all on CIFAR-10 at 12 / 24 / 32 / 48 bits, as published
    "DNNH (NIN, published)": {12: 0.552, 24: 0.566, 32: 0.558, 48: 0.581},
    "DPSH (VGG-F pretrained, published)": {12: 0.713, 24: 0.727, 32: 0.744, 48: 0.757},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bits", type=int, nargs="+", default=[12, 24, 32, 48])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--backbone", default="cnn")
    p.add_argument("--width", type=int, default=32, help="cnn's width (capacity)")
    p.add_argument("--loss", default="pairwise")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help="smaller batches take more steps per epoch: a small training set "
                        "is memorised sooner")
    p.add_argument("--augment", nargs="+", choices=["on", "off"], default=["on"],
                   help="crop and flip; several values run each as a variant")
    p.add_argument("--gan-steps", type=int, default=5000)
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "fashion-mnist"])
    p.add_argument("--fake-loss", nargs="+", default=["entropy"])
    p.add_argument("--lam", type=float, nargs="+", default=[1.0])
    p.add_argument("--fake-ratio", type=float, nargs="+", default=[0.5])
    p.add_argument("--fake-bn", nargs="+", default=["shared"])
    p.add_argument("--setting", action="append", default=None, metavar="LOSS:LAMBDA:RATIO:BN",
                   help="one fake setting, e.g. entropy:0.1:0.5:separate; repeat for a sweep "
                        "that is not a product of the four lists")
    p.add_argument("--only-nofakes", action="store_true",
                   help="no GAN and no with-fakes runs (calibration of a regime)")
    p.add_argument("--gan-width", type=int, default=64)
    # fewer labels is the over-fitting regime, where a regularizer should pay most
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--run-root", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.train_per_class < 1:
        p.error("--train-per-class must be at least 1")
    if args.batch_size < 2:
        p.error("--batch-size must be at least 2 (the pairwise loss needs pairs)")
    low = "" if args.train_per_class == 500 else f"-train{args.train_per_class}"
    args.explicit_root, args.explicit_out = args.run_root, args.out
    args.run_root = args.run_root or Path(f"runs/ablation-{args.dataset}{low}")
    args.out = args.out or RESULTS / f"retrieval-{args.dataset}"
    if args.only_nofakes:
        args.settings = []
    elif args.setting:
        args.settings = [parse_setting(p, text) for text in args.setting]
    else:
        args.settings = [dict(fake_loss=f, lam=lam, fake_ratio=r, fake_bn=bn)
                         for f in args.fake_loss for lam in args.lam for r in args.fake_ratio
                         for bn in args.fake_bn]
    args.variants = [Variant(a, st) for a in args.augment for st in [None, *args.settings]]
    return args


def parse_setting(p: argparse.ArgumentParser, text: str) -> dict:
    parts = text.split(":")
    try:
        loss, lam, ratio, bn = parts
        setting = dict(fake_loss=loss, lam=float(lam), fake_ratio=float(ratio), fake_bn=bn)
    except ValueError:
        p.error(f"--setting {text!r}: expected LOSS:LAMBDA:RATIO:BN, e.g. "
                "entropy:0.1:0.5:separate")
    for key, allowed in (("fake_loss", config.CHOICES[("hash", "fake_loss")]),
                         ("fake_bn", config.CHOICES[("hash", "fake_bn")])):
        if setting[key] not in allowed:
            p.error(f"--setting {text!r}: {key} must be one of {allowed}")
    return setting


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of the table: an augmentation, and a fake setting or None (without fakes)."""

    augment: str
    setting: dict | None

    @property
    def name(self) -> str:  # the run directory's name after "<bits>bits-"
        base = "nofakes" if self.setting is None else tag(self.setting)
        return base + ("-noaug" if self.augment == "off" else "")

    @property
    def reference(self) -> str:  # the without-fakes run of the same augmentation
        return Variant(self.augment, None).name

    def label(self, several: bool) -> str:
        text = "without fakes" if self.setting is None else f"with fakes: {label(self.setting)}"
        if several:
            text += ", crop and flip" if self.augment == "on" else ", no augmentation"
        return text

    def config(self, cfg: config.RunConfig, fakes: Path) -> config.RunConfig:
        hc = dataclasses.replace(cfg.hash, augment=self.augment == "on", **(self.setting or {}))
        at = dataclasses.replace(cfg, hash=hc)
        return without_fakes(at) if self.setting is None else with_fakes(at, fakes)


def seed_config(args: argparse.Namespace, seed: int) -> config.RunConfig:
    return config.from_dict({
        # one protocol: the same queries for every seed
        "data": {"dataset": args.dataset, "seed": 0, "train_per_class": args.train_per_class},
        "gan": {"steps": args.gan_steps, "width": args.gan_width, "seed": seed},
        "hash": {"backbone": args.backbone, "loss": args.loss, "epochs": args.epochs,
                 "batch_size": args.batch_size, "seed": seed, "width": args.width},
    })


def run_seed(args: argparse.Namespace, seed: int) -> tuple[Pipeline, dict]:
    """One seed's stages on its run directory: the GAN (where a row needs fakes), then per
    code length one run per variant, and (first seed) the pixel baselines. Returns the
    pipeline and {(bits, variant name): run result}."""
    cfg = seed_config(args, seed)
    p = Pipeline.open(args.run_root / f"seed{seed}", cfg)
    stages = [p.gan()] if args.settings else []
    runs = {}
    for bits in args.bits:
        at_bits = dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, bits=bits))
        # the fake settings name each with-fakes run, so that settings share the run root
        # (its GAN and without-fakes run) without reusing each other's results
        runs |= {(bits, v.name): v.config(at_bits, p.fakes) for v in args.variants}
        if seed == args.seeds[0]:
            stages.append(p.baselines(bits, name=f"baselines-{bits}bits"))
    stages += [p.hashing(f"{bits}bits-{name}", c) for (bits, name), c in runs.items()]
    run_stages(stages, p.run_dir)
    return p, {key: read_run(p.run_dir / f"{key[0]}bits-{key[1]}") for key in runs}


def read_run(run: Path) -> dict:
    e = json.loads((run / "eval.json").read_text())
    history = json.loads((run / "history.json").read_text())
    return dict(map=e["map"], p_r2=e["precision_at_radius"], ap=np.load(run / "ap.npy"),
                train_seconds=sum(r["seconds"] for r in history))


def table(args: argparse.Namespace, runs: dict, baselines: dict) -> dict:
    """{bits: {run name or baseline: cell}}; runs maps (seed, bits, name) to a result."""
    first = args.variants[0].name
    out: dict = {}
    for bits in args.bits:
        ap = {v.name: np.mean([runs[(s, bits, v.name)]["ap"] for s in args.seeds], axis=0)
              for v in args.variants}
        cell = {}
        for v in args.variants:
            maps = [runs[(s, bits, v.name)]["map"] for s in args.seeds]
            cell[v.name] = dict(map_mean=float(np.mean(maps)), map_per_seed=maps,
                                train_minutes=[runs[(s, bits, v.name)]["train_seconds"] / 60
                                               for s in args.seeds])
            if v.setting is not None:
                cell[v.name]["paired"] = paired_difference(ap[v.name], ap[v.reference])
                cell[v.name]["paired_per_seed"] = [
                    paired_difference(runs[(s, bits, v.name)]["ap"],
                                      runs[(s, bits, v.reference)]["ap"]) for s in args.seeds]
            if len(args.augment) > 1 and v.name != first:
                cell[v.name]["vs_first"] = paired_difference(ap[v.name], ap[first])
        for method, r in baselines[bits].items():
            cell[method] = dict(map_mean=r["map"])
        out[str(bits)] = cell
    return out


def command(args: argparse.Namespace) -> str:
    low = args.train_per_class != 500
    if args.only_nofakes:
        fakes = " --only-nofakes"
    elif args.setting:
        fakes = "".join(f" --setting {text}" for text in args.setting)
    else:
        fakes = (" --fake-loss " + " ".join(args.fake_loss) + " --lam "
                 + " ".join(map(str, args.lam)) + " --fake-ratio "
                 + " ".join(map(str, args.fake_ratio)) + " --fake-bn " + " ".join(args.fake_bn))
    return ("python benchmarks/retrieval.py --dataset " + args.dataset + " --bits "
            + " ".join(map(str, args.bits)) + " --seeds " + " ".join(map(str, args.seeds))
            + f" --epochs {args.epochs} --gan-steps {args.gan_steps} --gan-width {args.gan_width}"
            + f" --backbone {args.backbone} --loss {args.loss}"
            + (f" --width {args.width}" if args.width != 32 else "")
            + (f" --batch-size {args.batch_size}" if args.batch_size != DEFAULT_BATCH else "")
            + (" --augment " + " ".join(args.augment) if args.augment != ["on"] else "")
            + fakes
            + (f" --train-per-class {args.train_per_class}" if low else "")
            + (f" --run-root {args.run_root}" if args.explicit_root else "")
            + (f" --out {args.explicit_out}" if args.explicit_out else ""))


def main() -> None:
    args = parse_args()
    runs, first = {}, None
    for seed in args.seeds:
        t0 = time.perf_counter()
        p, seed_runs = run_seed(args, seed)
        first = first or p
        runs |= {(seed, bits, name): r for (bits, name), r in seed_runs.items()}
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    baselines = {bits: json.loads((first.run_dir / f"baselines-{bits}bits.json").read_text())
                 for bits in args.bits}
    split = first.split
    several = len(args.augment) > 1
    report = dict(
        command=command(args), dataset=args.dataset,
        protocol=f"{len(split.query):,} queries / {len(split.train):,} train / all other "
        "images as database", config=seed_config(args, args.seeds[0]).to_dict(),
        settings=[tag(st) for st in args.settings],
        labels={v.name: v.label(several) for v in args.variants},
        augment=args.augment, rows=[v.name for v in args.variants],
        torch=torch.__version__, threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(), table=table(args, runs, baselines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, report, markdown(report, args.bits, args.seeds))
    print(markdown(report, args.bits, args.seeds))


def tag(setting: dict) -> str:
    return (f"fakes-{setting['fake_loss']}-lam{setting['lam']:g}-ratio{setting['fake_ratio']:g}"
            f"-{setting['fake_bn']}")


def label(setting: dict) -> str:
    return (f"{setting['fake_loss']}, λ {setting['lam']:g}, {setting['fake_ratio']:g} per real, "
            f"BN {setting['fake_bn']}")


def markdown(report: dict, bits: list[int], seeds: list[int]) -> str:
    t, hc = report["table"], report["config"]["hash"]
    rows = report.get("rows") or ["nofakes", *report["settings"]]
    labels = {"nofakes": "without fakes"} | {
        k: (v if v.startswith("with") else f"with fakes: {v}")
        for k, v in report["labels"].items()}
    width = f" (width {hc['width']})" if hc.get("width", 32) != 32 else ""
    batch = hc.get("batch_size", DEFAULT_BATCH)  # results from before the option lack it
    aug = "" if report.get("augment", ["on"]) == ["on"] else (
        "no augmentation" if report["augment"] == ["off"] else "with and without augmentation")
    lines = [f"{report['dataset']} ({report['protocol']}), mAP@all, mean of {len(seeds)} "
             "seed(s); backbone "
             f"`{hc['backbone']}`{width} from scratch, loss `{hc['loss']}`, {hc['epochs']} epochs"
             + (f" of batch {batch}" if batch != DEFAULT_BATCH else "")
             + (f", {aug}" if aug else "") + ". "
             "Each with-fakes row: fake loss, lambda, fakes per real image, BatchNorm; in "
             "brackets, with minus without fakes, paired over queries (bootstrap SE).", "",
             "| method | " + " | ".join(f"{b} bits" for b in bits) + " |",
             "|---|" + "---:|" * len(bits)]
    for name in rows:
        def cell(b: int, name: str = name) -> str:
            c = t[str(b)][name]
            paired = c.get("paired")
            return f"{c['map_mean']:.4f}" + (
                f" ({paired['difference']:+.4f} ± {paired['standard_error']:.4f})"
                if paired else "")
        lines.append(f"| {labels[name]} | " + " | ".join(cell(b) for b in bits) + " |")
    for label_, key in (("LSH (pixels)", "lsh"), ("ITQ (pixels)", "itq"), ("SH (pixels)", "sh")):
        lines.append(f"| {label_} | " + " | ".join(f"{t[str(b)][key]['map_mean']:.4f}"
                                                  for b in bits) + " |")
    if report["dataset"] == "cifar10":
        for label_, values in PUBLISHED.items():
            lines.append(f"| {label_} | " + " | ".join(
                f"{values[b]:.3f}" if b in values else "" for b in bits) + " |")
    if any("vs_first" in t[str(b)][n] for b in bits for n in rows):
        lines += ["", f"Each row minus the first ({labels[rows[0]]}), paired over queries:", "",
                  "| method | " + " | ".join(f"{b} bits" for b in bits) + " |",
                  "|---|" + "---:|" * len(bits)]
        for name in rows[1:]:
            lines.append(f"| {labels[name]} | " + " | ".join(
                f"{t[str(b)][name]['vs_first']['difference']:+.4f} ± "
                f"{t[str(b)][name]['vs_first']['standard_error']:.4f}" for b in bits) + " |")
    minutes = [m for b in bits for n in rows for m in t[str(b)][n]["train_minutes"]]
    lines += ["", f"Training time per model: {min(minutes):.0f} to {max(minutes):.0f} minutes "
                  f"on {report['threads']} CPU threads."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
