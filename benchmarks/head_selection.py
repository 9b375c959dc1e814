"""The settings of a head on a fine-tuned backbone (benchmarks/heads.py), chosen on a
validation split carved from the training images, never on the protocol's queries.

    python benchmarks/head_selection.py --config configs/cifar10-lite0-128px-smoothing.toml \
        --run-dir runs/head-selection [--bits 12 48] [--smoothing 0 0.1] \
        [--quantization 0.1 1] [--seeds 0 1]

1. The config's recipe fine-tunes on the validation split (train/data.py's validation_split:
   100 training images a class become the queries; the other 4,000 are the training images
   and the database), into RUN_DIR/finetune/ (kept: a second call reuses it).
2. On that backbone, a mirror-invariant head (frozen-feature mode, as heads.py trains them)
   for each code length, label smoothing, quantization weight and seed, scored on the
   validation queries: mAP@all, ties broken by the smaller database row.
3. Chosen: the setting with the highest mAP averaged over the lengths and seeds; each
   setting's difference from it paired over the validation queries (each query's AP
   averaged over the seeds; bootstrap SE), per length.

Writes results/head-selection.{json,md}; its "chosen" is what heads.py trains with.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from _results import RESULTS, run_minutes, write_results
from heads import head_config

NAME = "head-selection"


def finetune(cfg_path: Path, run_dir: Path):
    """The recipe fine-tuned on the validation split; returns (its run dir, data, split)."""
    from hashsdk.train import config
    from hashsdk.train.data import load_dataset, make_split, validation_split
    from hashsdk.train.loop import train_hash

    cfg = config.load(cfg_path)
    data = load_dataset(cfg.data)
    val = validation_split(data, make_split(data, cfg.data), 100)
    out = run_dir / "finetune"
    if not (out / "eval.json").exists():
        train_hash(cfg, data, val, out)
    return out, data, val


def score_heads(run: Path, data, val, args) -> dict:
    """{(bits, smoothing, quantization, seed): per-query APs} of each head on ``run``."""
    from hashsdk.train.loop import train_hash

    aps = {}
    for bits, sm, q, seed in itertools.product(args.bits, args.smoothing, args.quantization,
                                               args.seeds):
        cfg = head_config(run, bits, True, sm, q)
        cfg = dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, seed=seed))
        out = run.parent / "heads" / f"{bits}-bits-smoothing{sm:g}-q{q:g}-seed{seed}"
        if not (out / "ap.npy").exists():
            train_hash(cfg, data, val, out, progress=False)
        aps[(bits, sm, q, seed)] = np.load(out / "ap.npy")
        print(f"{bits} bits, smoothing {sm:g}, quantization {q:g}, seed {seed}: "
              f"{np.nanmean(aps[(bits, sm, q, seed)]):.4f}", flush=True)
    return aps


def summarize(aps: dict, args) -> tuple[list[dict], dict]:
    """Rows per (bits, smoothing, quantization): the seeds' mean mAP and the difference from
    the chosen setting; and the chosen setting."""
    from hashsdk.train.comparison import paired_difference

    settings = list(itertools.product(args.smoothing, args.quantization))

    def per_query(bits, sm, q):  # each query's AP averaged over the seeds
        return np.mean([aps[(bits, sm, q, s)] for s in args.seeds], axis=0)

    overall = {s: float(np.mean([np.nanmean(per_query(b, *s)) for b in args.bits]))
               for s in settings}
    chosen = max(overall, key=overall.get)
    rows = []
    for bits, (sm, q) in itertools.product(args.bits, settings):
        mine = per_query(bits, sm, q)
        rows.append(dict(bits=bits, label_smoothing=sm, quantization=q,
                         map=float(np.nanmean(mine)),
                         seeds=[float(np.nanmean(aps[(bits, sm, q, s)])) for s in args.seeds],
                         minus_chosen=paired_difference(mine, per_query(bits, *chosen))))
    return rows, dict(label_smoothing=chosen[0], quantization=chosen[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, required=True, help="the fine-tuning recipe")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--bits", type=int, nargs="+", default=[12, 48])
    p.add_argument("--smoothing", type=float, nargs="+", default=[0.0, 0.1])
    p.add_argument("--quantization", type=float, nargs="+", default=[0.1, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args()
    run, data, val = finetune(args.config, args.run_dir)
    rows, chosen = summarize(score_heads(run, data, val, args), args)
    own = json.loads((run / "eval.json").read_text())["map"]
    lines = [f"Heads on a fine-tuned backbone, chosen on a validation split of CIFAR-10's "
             f"training images ({len(val.query):,} queries, {len(val.train):,} training images "
             f"and database). The backbone: {args.config} fine-tuned on those "
             f"{len(val.train):,} images ({run_minutes(run):.1f} min; its own "
             f"{json.loads((run / 'config.json').read_text())['hash']['bits']}-bit codes score "
             f"{own:.4f}). Each head: frozen-feature mode, mirror-invariant features, 60 epochs; "
             f"mAP@all (ties by the smaller database row), the mean of seeds "
             f"{', '.join(map(str, args.seeds))}; its difference from the chosen setting "
             "paired over the queries (bootstrap SE).", "",
             f"Chosen (the highest mAP averaged over {', '.join(map(str, args.bits))} bits): "
             f"label smoothing {chosen['label_smoothing']:g}, quantization "
             f"{chosen['quantization']:g}.", "",
             "| bits | head's label smoothing | quantization | validation mAP | per seed "
             "| minus the chosen |", "|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        d = r["minus_chosen"]
        lines.append(f"| {r['bits']} | {r['label_smoothing']:g} | {r['quantization']:g} | "
                     f"{r['map']:.4f} | {', '.join(f'{m:.4f}' for m in r['seeds'])} | "
                     f"{d['difference'] * 100:+.2f} ± {d['standard_error'] * 100:.2f} points |")
    command = shlex.join(["python", "benchmarks/head_selection.py", *sys.argv[1:]])
    write_results(RESULTS / NAME, dict(command=command, chosen=chosen, rows=rows,
                                       finetune_map=own), lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
