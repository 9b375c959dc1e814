"""How much a tie rule moves mAP@all: each hashing run scored on its own protocol twice, with
ties broken by the smaller database row (hashsdk.metrics' rule, what every table here reports)
and at random (the database's rows shuffled, then the same rule; the mean over SHUFFLES).

    python benchmarks/ties.py runs/cifar10-32epochs/lite0-96px-32epochs-12bits-orthohash [...] \
        [--flip]

Why it matters: ``make_split`` lays the database out class by class, so among tied codes the
smaller row is the earlier class, and a rule that is fair for distinct codes favours the
queries of the first classes where codes tie. A loss that pulls every image onto its class's
codeword (csq, orthohash) makes many ties, and short codes make more. Each run is re-encoded
from its checkpoint (the run directory's parent holds the split); its eval.json's mAP is checked
against the first rule. ``--flip`` adds a row for each run encoded as ``hash.flip_average``
would (train/model.py: each image's outputs averaged with its mirror image's), with its
difference from the run's own codes paired over the queries (bootstrap SE, smaller-row rule).
Writes results/cifar10-ties.{json,md}, keeping the earlier file's rows of runs not given again
(``--fresh`` drops them).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from _results import RESULTS, commands_with, previous_results, write_results

from hashsdk.codes import pack_bits
from hashsdk.metrics import average_precisions

SHUFFLES = 5


def tie_rules(q: np.ndarray, db: np.ndarray, ql: np.ndarray, dl: np.ndarray, bits: int,
              shuffles: int = SHUFFLES, seed: int = 0) -> dict:
    """Packed codes and labels -> mAP@all by the smaller row, and the mean and spread over
    ``shuffles`` random orders of the database (each query's AP averaged over them too)."""
    by_row = average_precisions(q, db, ql, dl, bits=bits)
    rng = np.random.default_rng(seed)
    shuffled = []
    for _ in range(shuffles):
        order = rng.permutation(len(db))
        shuffled.append(average_precisions(q, db[order], ql, dl[order], bits=bits))
    per_shuffle = [float(np.nanmean(a)) for a in shuffled]
    return dict(map_by_row=float(np.nanmean(by_row)), map_random=float(np.mean(per_shuffle)),
                map_random_sd=float(np.std(per_shuffle, ddof=1)) if shuffles > 1 else 0.0,
                distinct_database_codes=int(len(np.unique(db, axis=0))), shuffles=shuffles)


def run_row(run: Path, flip: bool = False) -> list[dict]:
    """The run's row (its checkpoint re-encoded, checked against eval.json), and with ``flip``
    a second row of the same network with ``flip_average`` on."""
    from hashsdk.train import config
    from hashsdk.train.comparison import paired_difference
    from hashsdk.train.device import resolve_device
    from hashsdk.train.evaluate import encode
    from hashsdk.train.model import HashNet
    from hashsdk.train.stages import prepare

    cfg = config.from_dict(json.loads((run / "config.json").read_text()))
    data, split = prepare(run.parent, cfg, progress=False)
    model, _ = HashNet.from_checkpoint(run / "checkpoint.pt")
    dev = resolve_device("auto")
    model = model.to(dev)
    ql, dl = data.labels[split.query], data.labels[split.database]
    rows, aps = [], []
    for averaged in (False, True)[:1 + flip]:
        model.flip_average = averaged
        q = pack_bits(encode(model, data.images[split.query], dev))
        db = pack_bits(encode(model, data.images[split.database], dev))
        aps.append(average_precisions(q, db, ql, dl, bits=cfg.hash.bits))
        rows.append(dict(run=str(run) + (" + flip" if averaged else ""), loss=cfg.hash.loss,
                         bits=cfg.hash.bits, seed=cfg.hash.seed, epochs=cfg.hash.epochs,
                         flip_average=averaged,
                         **tie_rules(q, db, ql, dl, cfg.hash.bits)))
    recorded = json.loads((run / "eval.json").read_text())["map"]
    if abs(recorded - rows[0]["map_by_row"]) > 1e-3:
        raise SystemExit(f"{run}: re-encoded mAP {rows[0]['map_by_row']:.4f} is not "
                         f"eval.json's {recorded:.4f}; the checkpoint or the data changed")
    if flip:
        rows[1]["flip_minus_plain"] = paired_difference(aps[1], aps[0])
    return rows


def _line(r: dict) -> str:
    flip = r.get("flip_minus_plain")
    return (f"| {Path(r['run']).name} | "
            f"{r['loss']} | {r['bits']} | {r['epochs']} | {r['seed']} | {r['map_by_row']:.4f} | "
            f"{r['map_random']:.4f} ± {r['map_random_sd']:.4f} | "
            f"{(r['map_by_row'] - r['map_random']) * 100:+.2f} points | "
            f"{r['distinct_database_codes']:,} | "
            + (f"{flip['difference'] * 100:+.2f} ± {flip['standard_error'] * 100:.2f} points |"
               if flip else "|"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, nargs="+", help="hashing run directories (checkpoint.pt, "
                                                      "config.json, eval.json)")
    p.add_argument("--flip", action="store_true",
                   help="a row for each run with test-time flip averaging (hash.flip_average)")
    p.add_argument("--fresh", action="store_true",
                   help="drop the earlier results file's rows (default: keep each row whose "
                        "run is not given again, as run directories do not outlive a machine)")
    args = p.parse_args()
    old = {} if args.fresh else previous_results(RESULTS / "cifar10-ties.json")
    given = {str(r) for r in args.runs} | {f"{r} + flip" for r in args.runs}
    rows = [r for r in old.get("rows", []) if r["run"] not in given]
    rows += [row for r in args.runs for row in run_row(r, args.flip)]
    lines = [f"CIFAR-10's protocol (1,000 queries, 59,000 database laid out class by class), "
             f"mAP@all of each run's codes with ties broken by the smaller database row (the "
             f"tables' rule) and at random (the mean ± SD over {SHUFFLES} shuffles of the "
             "database's rows). A run's + flip row: the same network encoding each image as "
             "the mean of its outputs and its mirror image's (hash.flip_average), and its "
             "difference from the run's own codes paired over the queries (bootstrap SE, "
             "smaller-row rule).", "",
             "| run | loss | bits | epochs | seed | smaller row | random | row minus random | "
             "distinct database codes | flip minus plain |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [_line(r) for r in rows]
    command = shlex.join(["python", "benchmarks/ties.py", *sys.argv[1:]])
    write_results(RESULTS / "cifar10-ties", dict(commands=commands_with(old, command),
                                                 shuffles=SHUFFLES, rows=rows), lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
