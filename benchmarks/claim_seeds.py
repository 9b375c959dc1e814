"""The paper's claim at 48 bits over more seeds: the fine-tuned rows of
results/retrieval-cifar10-pretrained.json (seeds 0 and 1) and further seeds run by the CLI
under the same protocol, GAN and recipe (configs/cifar10-lite0-fakes-seed2.toml says how).

    python benchmarks/claim_seeds.py runs/claim-seed2 [more run directories]
    python benchmarks/claim_seeds.py --loss orthohash runs/claim-orthohash-seed0 ...

With ``--loss`` other than pairwise (the table's loss) the table's seeds are left out: every
seed is a run directory given, and each run's loss must be the one named.

Each run directory holds hash-fakes/ and hash-nofakes/ (eval.json, ap.npy, history.json,
config.json). Per seed: with minus without fakes, paired over the 1,000 queries (bootstrap
SE, train/comparison.py). Over the seeds: the mean of the per-seed differences, its SE the
per-seed SEs combined as independent (sqrt of the sum of squares, over the count): the
earlier seeds' per-query APs are not kept, only their paired differences. Writes
results/retrieval-cifar10-claim-48bits.{json,md} (-LOSS appended for another loss).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from _results import RESULTS, write_results

from hashsdk.train.comparison import paired_difference

BITS = 48
TABLE_LOSS = "pairwise"  # the loss of results/retrieval-cifar10-pretrained.json's rows


def table_seeds() -> list[dict]:
    r = json.loads((RESULTS / "retrieval-cifar10-pretrained.json").read_text())
    cell = r["table"][str(BITS)]
    fakes, nofakes = cell["finetune-fakes"], cell["finetune-nofakes"]
    return [dict(seed=seed, nofakes=n, fakes=f, minutes=[mn, mf], source=r["command"], **p)
            for seed, n, f, mn, mf, p in zip(
                fakes["seeds"], nofakes["map_per_seed"], fakes["map_per_seed"],
                nofakes["train_minutes"], fakes["train_minutes"], fakes["paired_per_seed"],
                strict=True)]


def run_seed(run: Path, loss: str) -> dict:
    runs = {k: run / f"hash-{k}" for k in ("fakes", "nofakes")}
    configs = [json.loads((d / "config.json").read_text())["hash"] for d in runs.values()]
    seeds = {c["seed"] for c in configs}
    if len(seeds) != 1:
        raise SystemExit(f"{run}: hash-fakes and hash-nofakes have other seeds ({seeds})")
    if {c["loss"] for c in configs} != {loss}:
        raise SystemExit(f"{run}: expected loss {loss!r} in both runs, found "
                         f"{sorted({c['loss'] for c in configs})}")
    maps = {k: json.loads((d / "eval.json").read_text())["map"] for k, d in runs.items()}
    minutes = [sum(row["seconds"] for row in json.loads((runs[k] / "history.json").read_text()))
               / 60 for k in ("nofakes", "fakes")]
    paired = paired_difference(np.load(runs["fakes"] / "ap.npy"),
                               np.load(runs["nofakes"] / "ap.npy"))
    return dict(seed=seeds.pop(), minutes=minutes, source=str(run), **maps, **paired)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, nargs="+", help="run directories of further seeds")
    p.add_argument("--loss", default=TABLE_LOSS,
                   help=f"the runs' real-image loss; the table's seeds join only for {TABLE_LOSS}")
    args = p.parse_args()
    table = table_seeds() if args.loss == TABLE_LOSS else []
    rows = table + [run_seed(r, args.loss) for r in args.runs]
    if len({r["seed"] for r in rows}) != len(rows):
        raise SystemExit("a seed appears twice")
    diffs = np.array([r["difference"] for r in rows])
    pooled = dict(difference=float(diffs.mean()), standard_error=float(
        np.sqrt(sum(r["standard_error"] ** 2 for r in rows)) / len(rows)),
        seeds=len(rows), positive=int((diffs > 0).sum()))
    lines = [f"CIFAR-10 (1,000 queries / 5,000 train / 59,000 database), {BITS} bits, "
             f"EfficientNet-Lite0 fine-tuned at 96 px for 8 epochs (recipe 1:pad, loss "
             f"{args.loss}), fakes at "
             "λ 1 (entropy, 0.5 per real, BatchNorm separate); mAP@all, ties broken by the "
             "smaller database row. With minus without fakes paired over the queries "
             "(bootstrap SE); over seeds, the SEs combined as independent.", "",
             "| seed | without fakes | with fakes | with minus without | training min "
             "(without, with) |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['seed']} | {r['nofakes']:.4f} | {r['fakes']:.4f} | "
              f"{r['difference'] * 100:+.2f} ± {r['standard_error'] * 100:.2f} points | "
              f"{r['minutes'][0]:.1f}, {r['minutes'][1]:.1f} |" for r in rows]
    lines += [f"| mean of {len(rows)} | {np.mean([r['nofakes'] for r in rows]):.4f} | "
              f"{np.mean([r['fakes'] for r in rows]):.4f} | "
              f"{pooled['difference'] * 100:+.2f} ± {pooled['standard_error'] * 100:.2f} "
              "points |  |"]
    command = shlex.join(["python", "benchmarks/claim_seeds.py", *sys.argv[1:]])
    suffix = "" if args.loss == TABLE_LOSS else f"-{args.loss}"
    write_results(RESULTS / f"retrieval-cifar10-claim-{BITS}bits{suffix}",
                  dict(command=command, bits=BITS, loss=args.loss, rows=rows, pooled=pooled),
                  lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
