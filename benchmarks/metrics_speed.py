"""Evaluation speed: hashsdk.metrics on the CIFAR-10 protocol's shape.

    .venv/bin/python benchmarks/metrics_speed.py [--runs 5]

1,000 queries against 59,000 database codes of 48 bits, 10 classes, random codes (speed does
not depend on what the codes mean). Median of ``--runs`` runs of each call. Goal: under 2 s.

Writes benchmarks/results/metrics.json and metrics.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from _results import write_results  # noqa: E402  (benchmarks/)

from hashsdk import evaluate, mean_average_precision, pack_bits
from hashsdk._args import default_threads

RESULTS = Path(__file__).resolve().parent / "results"
NQ, NDB, BITS = 1_000, 59_000, 48


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    q = pack_bits(rng.standard_normal((NQ, BITS)))
    db = pack_bits(rng.standard_normal((NDB, BITS)))
    ql, dl = rng.integers(0, 10, NQ), rng.integers(0, 10, NDB)
    calls = {
        "mean_average_precision (mAP@all)": lambda: mean_average_precision(q, db, ql, dl,
                                                                           bits=BITS),
        "evaluate (mAP@all, P@100, P@r=2, PR curve)": lambda: evaluate(q, db, ql, dl, bits=BITS),
    }
    rows = []
    for name, call in calls.items():
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        rows.append(dict(call=name, median_s=statistics.median(times)))
        print(f"{name}: {rows[-1]['median_s']:.2f} s (median of {args.runs})")
    report = dict(command="python benchmarks/metrics_speed.py", queries=NQ, database=NDB,
                  bits=BITS, runs=args.runs, threads=default_threads(), rows=rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [f"{NQ:,} queries against {NDB:,} codes of {BITS} bits, "
             f"{report['threads']} threads, median of {args.runs} runs.", "",
             "| call | seconds |", "|---|---:|"]
    lines += [f"| `{r['call']}` | {r['median_s']:.2f} |" for r in rows]
    write_results(RESULTS / "metrics", report, lines)


if __name__ == "__main__":
    main()
