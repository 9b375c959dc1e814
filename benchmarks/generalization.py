"""Does a trained hashing network over-fit? The gap between seen and unseen queries.

    .venv/bin/python benchmarks/generalization.py RUN_DIR [RUN_DIR ...] --out NAME

A regularizer such as the fake-image loss can only pay where the network over-fits its
training images. This measures that directly, for each run directory of the ablation
(``runs/ablation-*/seed*/<bits>bits-*``, which holds checkpoint.pt; its parent holds the
split): mAP@all of the 1,000 protocol queries (unseen images) against the database, beside
mAP@all of 1,000 training images (seen, with their labels, during training) against the same
database less those 1,000 images. A large positive gap means memorised training images; a gap
near zero means the network under-fits and has nothing for a regularizer to correct. It also
reports the last epoch's training loss.

Writes benchmarks/results/NAME.json and .md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
from _results import write_json, write_results  # noqa: E402  (benchmarks/)

from hashsdk.train.config import from_saved
from hashsdk.train.evaluate import seen_unseen
from hashsdk.train.model import HashNet
from hashsdk.train.stages import prepare

RESULTS = Path(__file__).resolve().parent / "results"


def gap(run: Path) -> dict:
    """The row for one run, cached in run/gap.json against the checkpoint's mtime."""
    cache = run / "gap.json"
    stamp = (run / "checkpoint.pt").stat().st_mtime_ns
    if cache.exists():
        row = json.loads(cache.read_text())
        if row.pop("checkpoint_mtime_ns", None) == stamp:
            return row
    row = measure(run)
    write_json(cache, dict(row, checkpoint_mtime_ns=stamp))
    return row


def measure(run: Path) -> dict:
    model, ckpt = HashNet.from_checkpoint(run / "checkpoint.pt")
    cfg = from_saved(ckpt["config"])
    data, split = prepare(run.parent, cfg, progress=False)
    maps = seen_unseen(model, data, split, torch.device("cpu"))
    history = json.loads((run / "history.json").read_text())
    return dict(run=str(run), bits=ckpt["model_args"]["bits"], epochs=len(history),
                train_images=len(split.train), fakes=ckpt["config"]["hash"]["fakes"] is not None,
                last_loss_real=history[-1]["loss_real"], **maps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    for run in args.runs:
        if not (run / "checkpoint.pt").exists():
            sys.exit(f"{run}: expected a run directory with checkpoint.pt (an ablation run)")
    rows = [gap(run) for run in args.runs]
    command = "python benchmarks/generalization.py " + " ".join(
        shlex.quote(str(r)) for r in args.runs) + f" --out {args.out}"
    lines = ["mAP@all of unseen queries (the protocol's test queries) and of seen ones (1,000 "
             "training images), each against the database (less the seen queries). "
             "Gap = seen minus unseen.", "",
             "| run | train images | epochs | last training loss | unseen | seen | gap |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{Path(r['run']).parent.parent.name}/{Path(r['run']).parent.name}/"
                     f"{Path(r['run']).name}` | {r['train_images']:,} | {r['epochs']} | "
                     f"{r['last_loss_real']:.4f} | {r['map_unseen']:.4f} | {r['map_seen']:.4f} "
                     f"| {r['gap']:+.4f} |")
    out = RESULTS / args.out
    report = dict(command=command, rows=rows, torch=torch.__version__)
    write_results(out, report, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
