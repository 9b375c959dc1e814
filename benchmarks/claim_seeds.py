"""The paper's claim over more seeds and code lengths: with minus without fakes, from run
directories of the CLI under one protocol, GAN and recipe, and for the pairwise loss the
fine-tuned rows of results/retrieval-cifar10-pretrained.json (seeds 0 and 1) at the same lengths
(configs/cifar10-lite0-fakes-seed2.toml and configs/cifar10-lite0-orthohash-fakes.toml say how).

    python benchmarks/claim_seeds.py runs/claim-seed2 [more run directories]
    python benchmarks/claim_seeds.py --loss orthohash runs/claim-orthohash-seed0 ...

With ``--loss`` other than pairwise (the table's loss) the table's seeds are left out: every
seed is a run directory given, and each run's loss must be the one named.

Each run directory holds hash-fakes/ and hash-nofakes/ (eval.json, ap.npy, history.json,
config.json) of one seed and code length. Per run: with minus without fakes, paired over the
1,000 queries (bootstrap SE, train/comparison.py). Per code length, over its seeds: the mean
of the per-seed differences, its SE the per-seed SEs combined as independent (sqrt of the sum
of squares, over the count): the table's seeds keep only their paired differences, not their
per-query APs. Writes results/retrieval-cifar10-claim-LOSS.{json,md}, keeping the rows of the
file it replaces whose code length and seed no run given holds (``--fresh`` drops them), so a
table grows over sessions whose run directories are gone; the json lists every command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from _results import RESULTS, commands_with, previous_results, run_minutes, write_results

from hashsdk.train.comparison import paired_difference

TABLE_LOSS = "pairwise"  # the loss of results/retrieval-cifar10-pretrained.json's rows
# hash.codewords of a run whose config.json predates the key: the only rule there was then
EARLIER_CODEWORDS = "sylvester"


def table_seeds(bits: int) -> list[dict]:
    r = json.loads((RESULTS / "retrieval-cifar10-pretrained.json").read_text())
    cell = r["table"][str(bits)]
    fakes, nofakes = cell["finetune-fakes"], cell["finetune-nofakes"]
    return [dict(bits=bits, seed=seed, nofakes=n, fakes=f, minutes=[mn, mf], source=r["command"],
                 **p)
            for seed, n, f, mn, mf, p in zip(
                fakes["seeds"], nofakes["map_per_seed"], fakes["map_per_seed"],
                nofakes["train_minutes"], fakes["train_minutes"], fakes["paired_per_seed"],
                strict=True)]


def run_seed(run: Path, loss: str) -> dict:
    runs = {k: run / f"hash-{k}" for k in ("fakes", "nofakes")}
    configs = [_settings(json.loads((d / "config.json").read_text())) for d in runs.values()]
    for key in ("seed", "bits", "codewords", "image_size", "epochs", "label_smoothing"):
        if len({c[key] for c in configs}) != 1:
            raise SystemExit(f"{run}: hash-fakes and hash-nofakes have other values of {key} "
                             f"({sorted({c[key] for c in configs})})")
    if {c["loss"] for c in configs} != {loss}:
        raise SystemExit(f"{run}: expected loss {loss!r} in both runs, found "
                         f"{sorted({c['loss'] for c in configs})}")
    maps = {k: json.loads((d / "eval.json").read_text())["map"] for k, d in runs.items()}
    minutes = [run_minutes(runs[k]) for k in ("nofakes", "fakes")]
    paired = paired_difference(np.load(runs["fakes"] / "ap.npy"),
                               np.load(runs["nofakes"] / "ap.npy"))
    return dict(bits=configs[0]["bits"], seed=configs[0]["seed"], minutes=minutes,
                source=str(run), codewords=configs[0]["codewords"],
                **{k: configs[0][k] for k in RECIPE}, **maps, **paired)


# what a run's recipe is, and its value for the runs (and rows) of before these keys were kept
RECIPE = {"image_size": 96, "epochs": 8, "label_smoothing": 0.0}


def _settings(cfg: dict) -> dict:
    """A run's config.json, flat: its hash settings, its image size, and the defaults of the
    keys its time did not have."""
    return {"codewords": EARLIER_CODEWORDS, **RECIPE, **cfg["hash"],
            "image_size": cfg.get("data", {}).get("image_size", RECIPE["image_size"])}


def _recipe(rows: list[dict]) -> str:
    """The rows' recipes in words: "96 px for 8 epochs", and the smoothing where there is one."""
    found = sorted({tuple(r.get(k, v) for k, v in RECIPE.items()) for r in rows})
    return " and ".join(f"{px} px for {epochs} epochs"
                        + (f" with label smoothing {sm:g}" if sm else "")
                        for px, epochs, sm in found)


def merge(earlier: list[dict], table: list[dict], runs: list[dict]) -> list[dict]:
    """The rows, by code length and seed: the runs given, the table's seeds, and the rows of
    the earlier results file that neither holds (run directories do not outlive a session's
    machine; their rows do). A seed twice among the runs and the table raises."""
    fresh = table + runs
    keys = [(r["bits"], r["seed"]) for r in fresh]
    if len(set(keys)) != len(keys):
        raise SystemExit("a seed appears twice at one code length")
    kept = [r for r in earlier if (r["bits"], r["seed"]) not in set(keys)]
    return sorted(kept + fresh, key=lambda r: (r["bits"], r["seed"]))


def pool(rows: list[dict]) -> dict:
    """One code length's seeds: the mean difference and the SEs combined as independent."""
    diffs = np.array([r["difference"] for r in rows])
    return dict(bits=rows[0]["bits"], difference=float(diffs.mean()),
                standard_error=float(np.sqrt(sum(r["standard_error"] ** 2 for r in rows))
                                     / len(rows)),
                seeds=len(rows), positive=int((diffs > 0).sum()),
                nofakes=float(np.mean([r["nofakes"] for r in rows])),
                fakes=float(np.mean([r["fakes"] for r in rows])))


def markdown(rows: list[dict], pooled: list[dict], loss: str) -> list[str]:
    lines = ["CIFAR-10 (1,000 queries / 5,000 train / 59,000 database), EfficientNet-Lite0 "
             f"fine-tuned at {_recipe(rows)} (recipe 1:pad, loss {loss}), fakes at λ 1 "
             "(entropy, 0.5 per real, BatchNorm separate); mAP@all, ties broken by the smaller "
             "database row. With minus without fakes paired over the queries (bootstrap SE); "
             "over seeds, the SEs combined as independent. Training minutes of a run "
             "directory: its median epoch times its epochs. Class codewords: the "
             f"{' and '.join(sorted({r.get('codewords', EARLIER_CODEWORDS) for r in rows}))} "
             "rule (train/losses/codewords.py).", "",
             "| bits | seed | without fakes | with fakes | with minus without | training min "
             "(without, with) |", "|---:|---:|---:|---:|---:|---:|"]
    for p in pooled:
        mine = [r for r in rows if r["bits"] == p["bits"]]
        lines += [f"| {r['bits']} | {r['seed']} | {r['nofakes']:.4f} | {r['fakes']:.4f} | "
                  f"{r['difference'] * 100:+.2f} ± {r['standard_error'] * 100:.2f} points | "
                  f"{r['minutes'][0]:.1f}, {r['minutes'][1]:.1f} |" for r in mine]
        if len(mine) > 1:
            lines.append(f"| {p['bits']} | mean of {p['seeds']} | {p['nofakes']:.4f} | "
                         f"{p['fakes']:.4f} | {p['difference'] * 100:+.2f} ± "
                         f"{p['standard_error'] * 100:.2f} points |  |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, nargs="+", help="run directories, one seed and length each")
    p.add_argument("--loss", default=TABLE_LOSS,
                   help=f"the runs' real-image loss; the table's seeds join only for {TABLE_LOSS}")
    p.add_argument("--fresh", action="store_true",
                   help="drop the rows of the earlier results file (kept by default where no "
                        "run given holds their code length and seed)")
    p.add_argument("--out", type=Path, help="the results' path without a suffix (default: "
                                            "results/retrieval-cifar10-claim-LOSS)")
    args = p.parse_args()
    runs = [run_seed(r, args.loss) for r in args.runs]
    base = args.out or RESULTS / f"retrieval-cifar10-claim-{args.loss}"
    earlier = {} if args.fresh else previous_results(base.with_suffix(".json"))
    lengths = sorted({r["bits"] for r in earlier.get("rows", []) + runs})
    table = [t for b in lengths for t in table_seeds(b)] if args.loss == TABLE_LOSS else []
    rows = merge(earlier.get("rows", []), table, runs)
    pooled = [pool([r for r in rows if r["bits"] == b]) for b in lengths]
    lines = markdown(rows, pooled, args.loss)
    command = shlex.join(["python", "benchmarks/claim_seeds.py", *sys.argv[1:]])
    write_results(base, dict(commands=commands_with(earlier, command), loss=args.loss,
                             rows=rows, pooled=pooled), lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
