"""The low-pass filter of label-free models (``--input-blur``), chosen on a validation split.

    python benchmarks/copydetect_blur.py [--sigmas 0 1 1.5 2 3] [--originals 500]

The copy-detection benchmark (benchmarks/copydetect.py) made on CIFAR-10 *training* images that
the models do not train on (the validation split; the benchmark's own test images are never
looked at here): ``--originals`` edited 10 ways each, searching a database of them and
``--distractors`` others. For each sigma (and once without the filter or the trim), the
label-free models (edit-ITQ and frozen contrastive, 64 bits, mirror-invariant, on the
benchmark's flat training folder of 5,000 images) are trained with ``hashsdk-train hash
--input-blur SIGMA --trim`` (a border of one colour cut off before fitting), exported, and run
by the Encoder. Scores as the benchmark's: recall at 99.9% and 99% precision per edit and over
all edits, mAP with ties broken by the smaller database row.

The chosen setting is the (loss, sigma, trim) of the highest recall at 99.9% precision over all
edits; it becomes the default of a run without labels (train/config.py LABEL_FREE_LOSS,
LABEL_FREE_BLUR, and data.trim). Writes benchmarks/results/copydetect-blur.json and .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _results import RESULTS, write_results
from copydetect import (
    ARCHIVE,
    DEFAULT_FREE,
    NO_KOLEO,
    PRECISIONS,
    ROOT,
    distances,
    edits_tag,
    encoder_codes,
    evaluate,
    koleo_tag,
    make_sets,
    paired_se,
    seed_spread,
    seed_table,
    table_head,
    table_line,
    train_model,
    training_members,
    write_folder,
)

from hashsdk.edits import EDITS
from hashsdk.train.edited import DEFAULT_TRAINING_EDITS, TRAINING_EDITS

# the filter grid was measured before block 4 became the default without labels: it keeps the
# whole backbone's features
LOSSES = {"edit-ITQ": ["--loss", "edit-itq", "--feature-block", "-1"],
          "contrastive": ["--loss", "contrastive", "--frozen", "--feature-block", "-1",
                          *NO_KOLEO]}
CONTRASTIVE = ["--loss", "contrastive", "--frozen", *NO_KOLEO]
TRAIN_SEED = 1  # the benchmark's training folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archive", type=Path, default=ARCHIVE)
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 1.0, 1.5, 2.0, 3.0])
    p.add_argument("--originals", type=int, default=500)
    p.add_argument("--distractors", type=int, default=2500)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--train-images", type=int, default=5000)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "copydetect")
    p.add_argument("--results", default=None,
                   help="default: results/copydetect-blur, or copydetect-blocks with --blocks")
    p.add_argument("--medians", type=int, nargs="+", default=None,
                   help="instead: contrastive with the trim and block 4's features, at each "
                        "sigma, each median filter's window (0: none) by each pooling")
    p.add_argument("--dct", type=int, nargs="+", default=None,
                   help="instead: the default without labels (contrastive, block 4, the filter "
                        "and the trim) with the n x n lowest DCT frequencies appended to its "
                        "features, for each n (0: none)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="instead: the default without labels trained with each of these "
                        "seeds, beside pHash on the same sets: how far one model's scores "
                        "move with the seed alone")
    p.add_argument("--koleo", type=float, default=0.0,
                   help="with --seeds: the KoLeo weight beside the contrastive loss (0: off); "
                        "with --finetune: each model also with this weight")
    p.add_argument("--training-edits", choices=tuple(TRAINING_EDITS),
                   default=DEFAULT_TRAINING_EDITS,
                   help="with --seeds: how the training copies' edits are drawn")
    p.add_argument("--finetune", type=int, nargs="+", default=None, metavar="EPOCHS",
                   help="instead: the default without labels (frozen features, seed 0) beside "
                        "it fine-tuned (--finetune: the backbone trained too) for each number "
                        "of epochs, the first with the backbone frozen")
    p.add_argument("--blocks", type=int, nargs="+", default=None,
                   help="instead: contrastive with the trim, at each sigma, its features from "
                        "each of these blocks of the backbone (-1: the whole backbone)")
    args = p.parse_args()
    if args.blocks is not None:
        return blocks(args)
    if args.medians is not None:
        return pools(args)
    if args.dct is not None:
        return dcts(args)
    if args.seeds is not None:
        return seeds(args)
    if args.finetune is not None:
        return finetunes(args)
    sets = validation_sets(args)
    db, copies, _, _, left_out = sets
    print(f"validation: {len(db)} database images, {len(copies)} edited copies", flush=True)
    rows = []
    for trim, sigma in [(False, 0.0)] + [(True, s) for s in args.sigmas]:
        for label, loss in LOSSES.items():
            name = f"{loss[1]}-blur{sigma:g}{'-trim' if trim else ''}"
            scores, speed = trained_scores(args, name, [
                *loss, "--input-blur", str(sigma), "--trim" if trim else "--no-trim"], sets)
            rows.append(dict(loss=label, sigma=sigma, trim=trim, images_per_second=speed,
                             scores=scores))
            print(label, sigma, trim, rows[-1]["scores"]["all"], flush=True)
    best = max(rows, key=lambda r: r["scores"]["all"]["recall_at_0.999"])
    report = dict(command="python benchmarks/copydetect_blur.py --sigmas " + " ".join(
        f"{s:g}" for s in args.sigmas) + f" --originals {args.originals} --distractors "
        f"{args.distractors}", split="CIFAR-10 training images outside the training folder",
        database=len(db), copies=len(copies), twins_left_out=left_out,
        chosen=dict(loss=best["loss"], sigma=best["sigma"], trim=best["trim"]), rows=rows)
    write_results(RESULTS / (args.results or "copydetect-blur"), report, markdown(report))


def validation_sets(args: argparse.Namespace):
    """The training folder (written once) and the validation sets."""
    args.work.mkdir(parents=True, exist_ok=True)
    write_folder(args.archive, args.work / "train-flat", args.train_images, True, TRAIN_SEED)
    trained = frozenset(name for _, name, _ in training_members(args.archive, args.train_images,
                                                                TRAIN_SEED))
    return make_sets(args.archive, args.originals, args.distractors, args.size, seed=2,
                     split="train", exclude=trained)


def trained_scores(args: argparse.Namespace, name: str, extra: list[str], sets
                   ) -> tuple[dict, float]:
    """Run ``name`` trained on the training folder (``extra``: hashsdk-train's options), run
    by the Encoder on the validation sets: its scores and images/s."""
    db_bits, copy_bits, speed = trained_codes(args, name, extra, sets)
    return evaluate(db_bits, copy_bits, sets[2], sets[3]), speed


def trained_codes(args: argparse.Namespace, name: str, extra: list[str], sets
                  ) -> tuple[np.ndarray, np.ndarray, float]:
    """Run ``name`` trained on the training folder, run by the Encoder on the validation
    sets: the database's and the copies' bits (uint8 0/1 rows) and images/s."""
    db, copies, _, _, _ = sets
    model = train_model(args.work, name, args.work / "train-flat", extra)
    db_bits, speed = encoder_codes(model, db)
    copy_bits, _ = encoder_codes(model, copies)
    return db_bits, copy_bits, speed


def scored_row(args: argparse.Namespace, sets, name: str, extra: list[str], **settings
               ) -> dict:
    """One grid row: ``settings`` (its columns), its images/s and scores, also printed."""
    scores, speed = trained_scores(args, name, extra, sets)
    print(*settings.values(), scores["all"], f"{speed:.0f} img/s", flush=True)
    return dict(settings, images_per_second=speed, scores=scores)


def blocks(args: argparse.Namespace) -> None:
    """The feature-block grid: contrastive with the trim on, each sigma of the filter by each
    block."""
    sets = validation_sets(args)
    db, copies, _, _, left_out = sets
    rows = []
    for sigma in args.sigmas:
        for block in args.blocks:
            name = f"contrastive-blur{sigma:g}-trim" + ("" if block == -1 else f"-block{block}")
            rows.append(scored_row(args, sets, name, [
                *CONTRASTIVE, "--input-blur", str(sigma), "--trim",
                "--feature-block", str(block)], sigma=sigma, block=block))
    best = max(rows, key=lambda r: r["scores"]["all"]["recall_at_0.999"])
    report = dict(command="python benchmarks/copydetect_blur.py --sigmas " + " ".join(
        f"{s:g}" for s in args.sigmas) + " --blocks " + " ".join(map(str, args.blocks))
        + f" --originals {args.originals} --distractors {args.distractors}"
        + (f" --results {args.results}" if args.results else ""),
        split="CIFAR-10 training images outside the training folder", database=len(db),
        copies=len(copies), twins_left_out=left_out,
        chosen=dict(sigma=best["sigma"], block=best["block"]), rows=rows)
    lines = [f"Validation split as copydetect-blur.md ({len(copies):,} edited copies searching "
             f"{len(db):,} images). Label-free contrastive 64-bit models, the low-pass filter "
             "at sigma px and the trim on; the features of one block of EfficientNet-Lite0 "
             "(average-pooled; -1: the whole backbone, its head). Recall at 99.9% precision, "
             "one Hamming threshold an edit; mAP with ties broken by the smaller database row. "
             f"Best: sigma {best['sigma']:g}, block {best['block']}.", "",
             *table_head(sigma="---:", block="---:")]
    lines += [table_line(r, f"{r['sigma']:g}", r["block"]) for r in rows]
    write_results(RESULTS / (args.results or "copydetect-blocks"), report, lines)


# the pool grid's rule: the fastest setting within this much recall at 99.9% precision over
# all edits of the best (that recall moves by a few points between neighbouring settings)
POOL_TOLERANCE = 0.01


def pools(args: argparse.Namespace) -> None:
    """The median-filter and pooling grid: contrastive with the trim and block 4's features,
    each sigma by each median filter's window by each pooling."""
    sets = validation_sets(args)
    db, copies, _, _, left_out = sets
    rows = []
    for sigma in args.sigmas:
        for median in args.medians:
            for pool in ("avg", "gem"):
                name = f"contrastive-blur{sigma:g}-trim-block4-median{median}-{pool}"
                rows.append(scored_row(args, sets, name, [
                    *CONTRASTIVE, "--input-blur", str(sigma), "--trim",
                    "--feature-block", "4", "--input-median", str(median), "--feature-pool",
                    pool],
                    sigma=sigma, median=median, pool=pool))
    report = dict(command="python benchmarks/copydetect_blur.py --sigmas " + " ".join(
        f"{s:g}" for s in args.sigmas) + " --medians " + " ".join(map(str, args.medians))
        + f" --originals {args.originals} --distractors {args.distractors}"
        + (f" --results {args.results}" if args.results else ""),
        split="CIFAR-10 training images outside the training folder", database=len(db),
        copies=len(copies), twins_left_out=left_out, rows=rows)
    write_pool_results(report, args.results or "copydetect-pool")


def dcts(args: argparse.Namespace) -> None:
    """The DCT grid: the default without labels with each n of ``--dct`` (the first is the
    baseline, normally 0), each row's difference from the baseline with its paired bootstrap
    standard error. A new default needs more than 2 of them."""
    sets = validation_sets(args)
    db, copies, source, edit, left_out = sets
    rows, base = [], None
    for n in args.dct:
        db_bits, copy_bits, speed = trained_codes(
            args, f"contrastive-blur1.5-trim-block4-dct{n}", [
                *CONTRASTIVE, "--input-blur", "1.5", "--trim", "--feature-block", "4",
                "--dct-features", str(n)], sets)
        d = distances(copy_bits, db_bits)
        base = d if base is None else base
        rows.append(dict(dct=n, images_per_second=speed,
                         scores=evaluate(db_bits, copy_bits, source, edit),
                         gain_se=paired_se(base, d, source)))
        print(n, rows[-1]["scores"]["all"], f"SE {rows[-1]['gain_se']:.3f}", flush=True)
    first = rows[0]["scores"]["all"]["recall_at_0.999"]
    for r in rows:
        r["gain"] = r["scores"]["all"]["recall_at_0.999"] - first
    report = dict(command="python benchmarks/copydetect_blur.py --dct " + " ".join(
        map(str, args.dct)) + f" --originals {args.originals} --distractors {args.distractors}",
        split="CIFAR-10 training images outside the training folder", database=len(db),
        copies=len(copies), twins_left_out=left_out, rows=rows,
        chosen=dict(dct=next((r["dct"] for r in sorted(rows, key=lambda r: -r["gain"])
                              if r["gain"] > 2 * r["gain_se"]), args.dct[0])))
    lines = [f"Validation split as copydetect-blur.md ({len(copies):,} edited copies searching "
             f"{len(db):,} images). The label-free model (contrastive, 64 bits, block 4 of "
             "EfficientNet-Lite0, the 1.5 px filter and the trim) with the n x n lowest "
             "frequencies of the image's DCT (pHash's, its constant left out, divided by their "
             "root mean square) appended to its features (0: none). Recall at 99.9% "
             "precision, one Hamming threshold an edit; mAP with ties broken by the smaller "
             f"database row. Gain: recall over all edits minus n = {args.dct[0]}'s, ± its "
             "paired bootstrap standard error (300 draws of the originals). Chosen (the "
             "largest gain beyond 2 standard errors, else the first row): n = "
             f"{report['chosen']['dct']}.", "", *table_head("gain", n="---:")]
    lines += [table_line(r, r["dct"]) + f" {r['gain']:+.3f} ± {r['gain_se']:.3f} |"
              for r in rows]
    write_results(RESULTS / (args.results or "copydetect-dct"), report, lines)


def seeds(args: argparse.Namespace) -> None:
    """The seed spread on the validation sets (copydetect.seed_spread)."""
    sets = validation_sets(args)
    report = seed_spread(args.work, sets, args.seeds, args.training_edits, args.koleo)
    db, copies, _, _, left_out = sets
    report.update(command="python benchmarks/copydetect_blur.py --seeds " + " ".join(
        map(str, args.seeds)) + f" --training-edits {args.training_edits}"
        + (f" --koleo {args.koleo:g}" if args.koleo else "")
        + f" --originals {args.originals} --distractors "
        f"{args.distractors}", split="CIFAR-10 training images outside the training folder",
        database=len(db), copies=len(copies), twins_left_out=left_out)
    lines = seed_table(report, "Validation split as copydetect-blur.md")
    name = args.results or (f"copydetect-seeds{edits_tag(args.training_edits)}"
                            f"{koleo_tag(args.koleo)}")
    write_results(RESULTS / name, report, lines)


def finetunes(args: argparse.Namespace) -> None:
    """The default without labels (frozen features, seed 0) against the same model fine-tuned
    end to end for each of ``--finetune``'s epochs (the first with the backbone frozen, so the
    hash layer is fitted before the backbone moves), seed 0 too: each row's recall at both
    precisions, its difference from the frozen row with the paired bootstrap's standard error,
    and its minutes of training (the run's history)."""
    sets = validation_sets(args)
    db, copies, source, edit, left_out = sets
    weights = [0.0] + ([args.koleo] if args.koleo else [])
    variants = [(f"frozen{koleo_label(w)}",
                 f"contrastive-blur1.5-trim-block4{koleo_tag(w)}-seed0",
                 [*DEFAULT_FREE, "--seed", "0", "--training-edits", DEFAULT_TRAINING_EDITS,
                  "--koleo", f"{w:g}"]) for w in weights]
    variants += [(f"fine-tuned, {e} epochs{koleo_label(w)}",
                  f"contrastive-blur1.5-trim-block4-finetune{e}{koleo_tag(w)}", [
                      "--loss", "contrastive", "--finetune", "--freeze-backbone-epochs", "1",
                      "--epochs", str(e), "--input-blur", "1.5", "--trim", "--feature-block",
                      "4", "--seed", "0", "--koleo", f"{w:g}"])
                 for e in args.finetune for w in weights]
    rows, base = [], None
    for label, name, extra in variants:
        db_bits, copy_bits, speed = trained_codes(args, name, extra, sets)
        d = distances(copy_bits, db_bits)
        base = d if base is None else base
        history = args.work / f"run-{name}" / name / "history.json"
        # a frozen run's epochs are its head's alone, its features' pass (often a cache hit)
        # not counted: its minutes are left out
        minutes = (sum(r["seconds"] for r in json.loads(history.read_text())) / 60
                   if "--finetune" in extra and history.exists() else None)
        others = d.copy()
        others[np.arange(len(d)), source] = d.max() + 1  # each copy's nearest *other* image
        rows.append(dict(model=label, images_per_second=speed, train_minutes=minutes,
                         nearest_other_median=float(np.median(others.min(axis=1))),
                         scores=evaluate(db_bits, copy_bits, source, edit),
                         gain_se={str(p): paired_se(base, d, source, p) for p in PRECISIONS}))
        print(label, rows[-1]["scores"]["all"], flush=True)
    report = dict(command="python benchmarks/copydetect_blur.py --finetune " + " ".join(
        map(str, args.finetune)) + (f" --koleo {args.koleo:g}" if args.koleo else "")
        + f" --originals {args.originals} --distractors "
        f"{args.distractors}", split="CIFAR-10 training images outside the training folder",
        database=len(db), copies=len(copies), twins_left_out=left_out, rows=rows)
    write_results(RESULTS / (args.results or "copydetect-finetune"), report,
                  finetune_table(report))


def koleo_label(weight: float) -> str:
    """A model's name's end for its KoLeo weight: nothing for none."""
    return f", KoLeo {weight:g}" if weight else ""


def finetune_table(report: dict) -> list[str]:
    """finetunes' tables: at each precision a row a model, its gain over the first."""
    rows = report["rows"]
    lines = [f"Validation split as copydetect-blur.md ({report['copies']:,} edited copies "
             f"searching {report['database']:,} images). The label-free 64-bit model "
             "(contrastive, block 4 of EfficientNet-Lite0, the 1.5 px filter and the trim, "
             "seed 0) on frozen features, and fine-tuned end to end (each batch and a fresh "
             "edited copy of each image; the first epoch with the backbone frozen); each also "
             "with a KoLeo term where a row says so. "
             "One Hamming threshold an edit; mAP with ties broken by the smaller database row. "
             "Gain: recall over all edits minus the frozen model's, ± the paired bootstrap's "
             "standard error (originals resampled with their copies). Nearest other: the "
             "median over copies of the Hamming distance to the nearest database image that "
             "is not the copy's original."]
    for p in sorted(PRECISIONS, reverse=True):
        lines += ["", f"Recall at {100 * p:g}% precision:", "",
                  *table_head("minutes of training", "nearest other", "gain",
                              model="---")]
        for r in rows:
            gain = r["scores"]["all"][f"recall_at_{p}"] - rows[0]["scores"]["all"][
                f"recall_at_{p}"]
            minutes = "" if r["train_minutes"] is None else f"{r['train_minutes']:.1f}"
            cells = " | ".join(f"{r['scores'][n][f'recall_at_{p}']:.3f}" for n in
                               ["all", *EDITS])
            lines.append(f"| {r['model']} | {cells} | {r['scores']['all']['map']:.3f} | "
                         f"{r['images_per_second']:.0f} | {minutes} | "
                         f"{r['nearest_other_median']:g} | "
                         f"{gain:+.3f} ± {r['gain_se'][str(p)]:.3f} |")
    return lines


def write_pool_results(report: dict, name: str) -> None:
    """The pool grid's report with its chosen row (the fastest within POOL_TOLERANCE of the
    best), as results/``name``.json and .md."""
    rows = report["rows"]
    best = max(r["scores"]["all"]["recall_at_0.999"] for r in rows)
    chosen = max((r for r in rows if r["scores"]["all"]["recall_at_0.999"] >=
                  best - POOL_TOLERANCE), key=lambda r: r["images_per_second"])
    report = dict(report, chosen=dict(sigma=chosen["sigma"], median=chosen["median"],
                                      pool=chosen["pool"]))
    lines = [f"Validation split as copydetect-blur.md ({report['copies']:,} edited copies "
             f"searching {report['database']:,} images). Label-free contrastive 64-bit models "
             "on block 4's features of EfficientNet-Lite0 with the trim on: a median filter of "
             "median x median px (0: none), then the low-pass filter at sigma px, before the "
             "backbone; the features pooled over positions by their average (avg) or a "
             "generalized mean (gem, p = 3). Recall at 99.9% precision, one Hamming threshold an "
             "edit; mAP with ties broken by the smaller database row; images/s of the Encoder "
             "on the validation images (2 cores). Chosen (the fastest within "
             f"{POOL_TOLERANCE:g} of the best recall over all edits, {best:.3f}): sigma "
             f"{chosen['sigma']:g}, median {chosen['median']}, {chosen['pool']}.", "",
             *table_head(sigma="---:", median="---:", pool="---")]
    lines += [table_line(r, f"{r['sigma']:g}", r["median"], r["pool"]) for r in rows]
    write_results(RESULTS / name, report, lines)


def markdown(report: dict) -> list[str]:
    c = report["chosen"]
    lines = [f"Validation split: {report['copies']:,} edited copies of "
             f"{report['copies'] // len(EDITS):,} CIFAR-10 training images outside the models' "
             f"training folder, upsampled to 256 px, searching a database of "
             f"{report['database']:,}. Label-free 64-bit models with a Gaussian low-pass "
             "filter of sigma pixels before the backbone (96 px input), with or without "
             "a border of one colour trimmed before fitting. Recall at 99.9% precision, one "
             "Hamming threshold an edit; mAP with ties broken by the smaller database row. "
             f"Chosen (best recall over all edits): {c['loss']}, sigma {c['sigma']:g}, trim "
             f"{'on' if c['trim'] else 'off'}.", "",
             *table_head(loss="---", sigma="---:", trim="---")]
    return lines + [table_line(r, r["loss"], f"{r['sigma']:g}", "on" if r["trim"] else "off")
                     for r in report["rows"]]


if __name__ == "__main__":
    main()
