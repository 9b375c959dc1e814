"""``hashsdk dedup``'s speed: range searches of a collection against itself, flat against
multi-index hashing, and the whole command on an index of 100,000 codes.

    python benchmarks/dedup.py [--n 100000] [--bits 64] [--radii 2 4 8] [--runs 3]

The codes: random, with a planted group of three near-copies (1 and 3 bits away) every 100
codes. Times are medians of ``--runs``, in one process on this machine (2 cores); the command
row runs ``hashsdk dedup INDEX --radius 4`` (loading, range search, groups, JSON and CSV) as a
subprocess, its wall time. Writes benchmarks/results/dedup.json and .md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, write_results

from hashsdk import HammingIndex
from hashsdk.dedup import find_pairs, group


def planted(n: int, bits: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    for k in range(0, n - 2, 100):
        codes[k + 1] = codes[k]
        codes[k + 1, 0] ^= 1
        codes[k + 2] = codes[k]
        codes[k + 2, 1] ^= 7
    return codes


def timed(fn, runs: int) -> tuple[float, object]:
    seconds, out = [], None
    for _ in range(runs):
        started = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--radii", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    codes = planted(args.n, args.bits)
    rows = []
    for radius in args.radii:
        row = dict(radius=radius)
        for kind in ("flat", "mih"):
            seconds, (pairs, _) = timed(lambda k=kind, r=radius: find_pairs(codes, args.bits, r,
                                                                              kind=k), args.runs)
            row[f"{kind}_seconds"], row["pairs"] = seconds, len(pairs)
        row["groups"] = len(group(args.n, pairs))
        rows.append(row)
        print(row, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        index = HammingIndex(args.bits)
        index.add(codes)
        index.save(Path(tmp) / "db.hidx")
        cli = [str(Path(sys.executable).parent / "hashsdk"), "dedup", str(Path(tmp) / "db.hidx"),
               "--radius", "4", "-o", str(Path(tmp) / "d.json"), "--quiet"]
        command_seconds, _ = timed(lambda: subprocess.run(cli, check=True), args.runs)
    report = dict(command="python benchmarks/dedup.py" + "".join(
        f" --{k} {v if not isinstance(v, list) else ' '.join(map(str, v))}"
        for k, v in vars(args).items()), n=args.n, bits=args.bits, rows=rows,
        command_seconds=command_seconds)
    lines = [f"{args.n:,} random {args.bits}-bit codes with a planted group of three every 100; "
             f"median of {args.runs} runs on this machine.", "",
             "| radius | pairs | groups | flat index, s | multi-index hashing, s |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['radius']} | {r['pairs']:,} | {r['groups']:,} | {r['flat_seconds']:.2f} | "
              f"{r['mih_seconds']:.2f} |" for r in rows]
    lines += ["", f"`hashsdk dedup` on an index file of these codes at radius 4 (load, range "
                  f"search, groups, JSON and CSV): {command_seconds:.1f} s wall time."]
    write_results(RESULTS / "dedup", report, lines)


if __name__ == "__main__":
    main()
