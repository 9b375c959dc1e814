"""A table of finished ``hashsdk-train hash`` runs as they scored themselves: each run's protocol,
code length, resolution, loss, epochs, mAP@all (eval.json: ties broken by the smaller database
row) and minutes of training; trains and encodes nothing.

    python benchmarks/runs_table.py RUN_DIR [RUN_DIR ...] --out NAME

A run's minutes are its median epoch's seconds times its epochs (``_results.run_minutes``), so
that a pause of the machine does not count. Writes results/``--out``.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _results import RESULTS, run_minutes, write_results


def run_row(run: Path) -> dict:
    """One run directory's row: its settings from config.json, mAP from eval.json."""
    config = json.loads((run / "config.json").read_text())
    data, hash_ = config["data"], config["hash"]
    split = json.loads((run.parent / "split.json").read_text()) if (
        run.parent / "split.json").exists() else {}
    return dict(run=run.name, dataset=data["dataset"], bits=hash_["bits"],
                image_size=data.get("image_size"), backbone=hash_["backbone"],
                loss=hash_["loss"], epochs=hash_["epochs"], seed=hash_["seed"],
                map=json.loads((run / "eval.json").read_text())["map"],
                minutes=run_minutes(run), split={k: v for k, v in split.items()
                                                 if isinstance(v, (int, str))})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--out", required=True, help="results/OUT.json and .md")
    args = p.parse_args()
    rows = [run_row(run) for run in args.runs]
    report = dict(command="python benchmarks/runs_table.py " + " ".join(map(str, args.runs))
                  + f" --out {args.out}", rows=rows)
    lines = ["Finished `hashsdk-train hash` runs, each scored on its own protocol's queries "
             "(eval.json): mAP@all with ties broken by the smaller database row; minutes of "
             "training on 2 CPU cores (median epoch times epochs).", "",
             "| run | dataset | bits | px | backbone | loss | epochs | seed | mAP@all | minutes |",
             "|---|---|---:|---:|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['dataset']} | {r['bits']} | {r['image_size']} | "
              f"`{r['backbone']}` | {r['loss']} | {r['epochs']} | {r['seed']} | "
              f"{r['map']:.4f} | {r['minutes']:.1f} |" for r in rows]
    write_results(RESULTS / args.out, report, lines)


if __name__ == "__main__":
    main()
