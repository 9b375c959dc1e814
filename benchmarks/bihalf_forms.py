"""Which form of Bi-half's pair loss trains codes on frozen features: the one hashsdk ships
against the forms tried before it, on a validation split of CIFAR-10's training images.

    python benchmarks/bihalf_forms.py [--bits 64] [--seed 0]

Split: 1,000 queries drawn (seeded) from the 50,000 training images, the other 49,000 the
training set and the database; labels only score (mAP@1000, ties broken by the smaller
database row); the protocol's test images are not used. Features: EfficientNet-Lite0's,
frozen, at 96 px (benchmarks/labelfree.py's, cached). Each form trains the hash layer for
10 epochs (batch 128), with the quantization term at 0.1 (the default) and at 0; ITQ on the
same features is the baseline. Forms (b: Bi-half's balanced bits, f: the features):

    half-batch       the shipped loss (train/losses/unsupervised.py BiHalf): item i of the
                     batch's first half against item i of its second, cos(b) against cos(f)
    all-pairs        every pair of the batch, b b^T / bits against the cosines of the
                     centred features (the form hashsdk shipped before)
    all-pairs-raw    every pair, against the raw features' cosines
    standardized     every pair, the centred cosines standardized over the batch's pairs
                     and scaled to 1 / sqrt(bits)

Writes benchmarks/results/bihalf-forms.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from _results import RESULTS, write_results
from labelfree import ROOT, run

from hashsdk.train import config
from hashsdk.train.data import Split
from hashsdk.train.losses import unsupervised
from hashsdk.train.stages import prepare


class AllPairs:
    centre = True

    def __init__(self, options):
        f = options.train_features.float()
        self.features = F.normalize(f - f.mean(dim=0) if self.centre else f, dim=1)
        self.bits = options.bits

    def target(self, f: torch.Tensor) -> torch.Tensor:
        return f @ f.T

    def __call__(self, h, labels, logits, index):
        b = unsupervised.bihalf(h)
        return F.mse_loss(b @ b.T / h.shape[1], self.target(self.features[index]))


class AllPairsRaw(AllPairs):
    centre = False


class Standardized(AllPairs):
    def target(self, f: torch.Tensor) -> torch.Tensor:
        t = f @ f.T
        off = ~torch.eye(len(f), dtype=torch.bool, device=f.device)
        z = (t - t[off].mean()) / t[off].std().clamp(min=1e-6)
        return torch.where(off, (z / self.bits ** 0.5).clamp(-1, 1), 1.0)


FORMS = {"half-batch": unsupervised.BiHalf, "all-pairs": AllPairs,
         "all-pairs-raw": AllPairsRaw, "standardized": Standardized}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cfg = config.from_dict({
        "data": {"dataset": "cifar10", "labels": "none", "train_per_class": 5000,
                 "image_size": 96, "trim": False},
        # the low-pass filter, the trim and block 4's features (defaults without labels since
        # copydetect-blur.md and copydetect-blocks.md) off, as this table was measured
        "hash": {"backbone": "timm/tf_efficientnet_lite0", "pretrained": "imagenet",
                 "input_blur": 0.0, "feature_block": -1},
    }, where="bihalf_forms")
    root = ROOT / "runs" / "bihalf-forms"
    data, split = prepare(root, cfg)
    train = np.asarray(split.train)
    queries = np.sort(np.random.default_rng(args.seed).choice(train, 1000, replace=False))
    rest = np.setdiff1d(train, queries)
    val = Split(queries, rest, rest)
    rows = [dict(form="itq", quantization=None,
                 **run(cfg, data, val, root, "itq", args.bits, args.seed, 10))]
    for name, form in FORMS.items():
        for q in (0.1, 0.0):
            c = dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, quantization=q))
            with mock.patch.object(unsupervised, "BiHalf", form):
                row = run(c, data, val, root / f"{name}-q{q}", "bihalf", args.bits, args.seed,
                          10)
            rows.append(dict(form=name, quantization=q, **row))
            print(rows[-1], flush=True)
    report = dict(commands=[f"python benchmarks/bihalf_forms.py --bits {args.bits} "
                            f"--seed {args.seed}"],
                  split=dict(queries=len(val.query), train=len(val.train)), rows=rows)
    write_results(RESULTS / "bihalf-forms", report, markdown(report, args))


def markdown(report: dict, args: argparse.Namespace) -> list[str]:
    lines = [f"Bi-half's pair loss in four forms on a validation split of CIFAR-10's training "
             f"images ({report['split']['queries']:,} queries searching the other "
             f"{report['split']['train']:,}, which are also the training set; labels only "
             f"score), {args.bits} bits, seed {args.seed}, EfficientNet-Lite0's frozen "
             "features at 96 px, the hash layer 10 epochs; mAP@1000, ties broken by the "
             "smaller database row. half-batch is the shipped loss.", "",
             "| form | quantization 0.1 | quantization 0 | distinct database codes (0.1) |",
             "|---|---:|---:|---:|"]
    for form in ("itq", *FORMS):
        rows = {r["quantization"]: r for r in report["rows"] if r["form"] == form}
        first = rows[None if form == "itq" else 0.1]
        second = "" if form == "itq" else f"{rows[0.0]['map_at_1000']:.4f}"
        lines.append(f"| {'itq (closed form)' if form == 'itq' else form} | "
                     f"{first['map_at_1000']:.4f} | {second} | "
                     f"{first['distinct_database_codes']:,} |")
    return lines


if __name__ == "__main__":
    main()
