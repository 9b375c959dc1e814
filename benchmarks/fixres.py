"""Train low, test higher (FixRes, Touvron et al. 2019): a network fine-tuned at one size,
encoding its validation split at larger sizes, with nothing retrained; and with ``--flip``,
at the trained size, each image's outputs averaged with its mirror image's before the sign
(test-time flip averaging, twice the encoding's cost).

    python benchmarks/fixres.py runs/size-48bits/seed0/recipes/1-pad-loss=orthohash \
        [--sizes 112 128] [--flip] [--val-per-class 100] [--out NAME]

RUN: a recipe's run directory written by ``benchmarks/pretrained.py --recipes-only``
(config.json, checkpoint.pt, ap.npy); its parent's parent holds the split, from which the
same validation split is carved (benchmarks/pretrained_protocol.py ``validation_split``: the
queries are training images, the database the other training images). Each size reads the
dataset stored at that size (bicubic from the originals, as training read it at its own)
and scores mAP@all with ties broken by the smaller database row; the difference from the
trained size is paired over the queries (bootstrap SE). The trained size's own row is
recomputed and checked against the run's ap.npy. Writes benchmarks/results/NAME.json and .md
(default NAME: fixres-DATASET-BITSbits).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from _results import RESULTS, write_results
from pretrained_protocol import validation_split

from hashsdk.codes import pack_bits
from hashsdk.metrics import average_precisions
from hashsdk.train import config
from hashsdk.train.comparison import paired_difference
from hashsdk.train.data import ImageSet, Split, load_dataset
from hashsdk.train.device import resolve_device
from hashsdk.train.evaluate import encode
from hashsdk.train.model import HashNet
from hashsdk.train.stages import prepare


def size_aps(model: HashNet, data: ImageSet, val: Split, bits: int,
             device: torch.device, flip: bool = False) -> np.ndarray:
    """Per-query AP (float64 (n_queries,)) of ``val``, ``data``'s images at their stored size;
    ``flip``: encoded as ``hash.flip_average`` does (train/model.py)."""
    rows = np.concatenate([val.query, val.database])
    model.flip_average = flip
    codes = pack_bits(encode(model, data.images[rows], device))
    n = len(val.query)
    return average_precisions(codes[:n], codes[n:], data.labels[val.query],
                              data.labels[val.database], bits=bits)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--sizes", type=int, nargs="+", default=[],
                   help="the test sizes in pixels, besides the trained one")
    p.add_argument("--flip", action="store_true",
                   help="a row at the trained size with test-time flip averaging")
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    cfg = config.from_dict(json.loads((args.run / "config.json").read_text()))
    trained = cfg.data.image_size
    data, split = prepare(args.run.parent.parent, cfg, progress=False)
    val = validation_split(split, data.labels, args.val_per_class)
    dev = resolve_device("auto")
    model = HashNet.from_checkpoint(args.run / "checkpoint.pt")[0].to(dev)
    aps = {trained: size_aps(model, data, val, cfg.hash.bits, dev)}
    if args.flip:
        aps[f"{trained} + flip"] = size_aps(model, data, val, cfg.hash.bits, dev, flip=True)
    del data  # one dataset in memory at a time: 60,000 images at 128 px are 2.9 GB
    recorded = np.load(args.run / "ap.npy")
    if abs(np.nanmean(aps[trained]) - np.nanmean(recorded)) > 1e-3:
        raise SystemExit(f"{args.run}: mAP at {trained} px re-encoded is "
                         f"{np.nanmean(aps[trained]):.4f}, not ap.npy's "
                         f"{np.nanmean(recorded):.4f}; the checkpoint or the data changed")
    for size in args.sizes:
        at_size = dataclasses.replace(cfg.data, image_size=size, resize_size=size)
        aps[size] = size_aps(model, load_dataset(at_size, progress=False), val, cfg.hash.bits,
                             dev)
    rows = [dict(size=s, map=float(np.nanmean(a)), **paired_difference(a, aps[trained]))
            for s, a in aps.items()]
    report = dict(commands=[shlex.join(["python", "benchmarks/fixres.py", *sys.argv[1:]])],
                  run=str(args.run), trained_size=trained, bits=cfg.hash.bits,
                  loss=cfg.hash.loss, epochs=cfg.hash.epochs, queries=len(val.query),
                  database=len(val.database), rows=rows)
    lines = [f"A network fine-tuned at {trained} px ({cfg.data.dataset}, {cfg.hash.loss}, "
             f"{cfg.hash.bits} bits, {cfg.hash.epochs} epochs, {Path(args.run).name}) encoding "
             f"its validation split ({len(val.query):,} training images searching the other "
             f"{len(val.database):,}) at other sizes (+ flip: outputs averaged with the mirror "
             "image's), nothing retrained; mAP@all, ties broken "
             "by the smaller database row; the difference from the trained size paired over "
             "the queries (bootstrap SE).", "",
             "| test size, px | validation mAP | minus the trained size |", "|---:|---:|---:|"]
    lines += [f"| {r['size']}{' (trained)' if r['size'] == trained else ''} | {r['map']:.4f} | "
              f"{r['difference']:+.4f} ± {r['standard_error']:.4f} |" for r in rows]
    out = RESULTS / (args.out or f"fixres-{cfg.data.dataset}-{cfg.hash.bits}bits")
    write_results(out, report, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
