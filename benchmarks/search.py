"""Search speed: hashsdk.HammingIndex against faiss.IndexBinaryFlat, in the same run.

    .venv/bin/python benchmarks/search.py [--n 1000000] [--runs 7]

Both indexes hold the same random codes and answer the same queries, with the same thread
count set explicitly on both (faiss through omp_set_num_threads). Each cell is the median of
2 x ``--runs`` timed runs, in alternating blocks so that machine noise falls on both alike.
The distances are checked equal in every cell. The scan rate counts database bytes compared
per second (n x code size x queries / time): batches reuse each database block from cache, so
they can pass the memory bound, which is the rate of a numpy copy of the same bytes.

Writes benchmarks/results/search.json and search.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _results import write_results  # noqa: E402  (benchmarks/)

from hashsdk import HammingIndex
from hashsdk.index import _search

BITS = (16, 32, 48, 64, 128, 256)
BATCHES = (1, 256)
KS = (10, 100)
THREADS = (1, 2)
RESULTS = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def alternating_blocks(ours, theirs, runs: int) -> tuple[float, float]:
    """Median times of ``runs`` back-to-back calls each, in blocks ours, faiss, ours, faiss.

    Back-to-back calls measure each library in its steady state (thread pools awake). Blocks
    rather than single alternating calls, because after a parallel region OpenMP's workers
    spin for a while, and on 2 cores that spin would steal the core of the next search.
    """
    a, b = [], []
    for _ in range(2):
        ours()
        a += [median_time(ours, 1) for _ in range(runs)]
        theirs()
        b += [median_time(theirs, 1) for _ in range(runs)]
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database size")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per cell (median)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    import faiss  # the bench extra

    rng = np.random.default_rng(0)
    cells = [cell for bits in BITS for cell in measure_bits(faiss, bits, args.n, args.runs, rng)]
    ratios = [c["ratio"] for c in cells]
    one_thread = [c["ratio"] for c in cells if c["threads"] == 1]
    summary = dict(min_ratio=min(ratios), median_ratio=statistics.median(ratios),
                   min_ratio_1thread=min(one_thread),
                   median_ratio_1thread=statistics.median(one_thread))
    report = dict(
        command="python benchmarks/search.py" + (f" --n {args.n}" if args.n != 1_000_000 else ""),
        n=args.n, runs=args.runs, cpu=cpu_name(), cores=os.cpu_count(),
        kernel_dispatch=_search._kernel.dispatch() if _search.has_kernel() else "numpy",
        numpy=np.__version__, faiss=faiss.__version__, python=platform.python_version(),
        summary=summary, cells=cells)
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(args.out / "search", report, markdown(report))
    print(json.dumps(summary, indent=1))


def measure_bits(faiss, bits: int, n: int, runs: int, rng: np.random.Generator) -> list[dict]:
    """Every (batch, k, threads) cell at one code length, against faiss's IndexBinaryFlat on
    the same n random codes; exits if the distances ever differ."""
    cs = bits // 8
    db = rng.integers(0, 256, (n, cs), dtype=np.uint8)
    ours = HammingIndex(bits)
    ours.add(db)
    theirs = faiss.IndexBinaryFlat(bits)
    theirs.add(db)
    copy_dst = np.empty_like(db)
    copy_s = median_time(lambda: np.copyto(copy_dst, db), runs)
    cells = []
    for nq in BATCHES:
        q = rng.integers(0, 256, (nq, cs), dtype=np.uint8)
        for k in KS:
            for threads in THREADS:
                faiss.omp_set_num_threads(threads)
                d_ours, _ = ours.search(q, k, threads=threads)
                d_theirs, _ = theirs.search(q, k)
                if not (d_ours == d_theirs).all():
                    sys.exit(f"distances differ from faiss at bits={bits} nq={nq} k={k}")
                t_ours, t_theirs = alternating_blocks(
                    lambda: ours.search(q, k, threads=threads),  # noqa: B023
                    lambda: theirs.search(q, k),  # noqa: B023
                    runs)
                cell = dict(bits=bits, batch=nq, k=k, threads=threads,
                            hashsdk_ms=t_ours * 1e3, faiss_ms=t_theirs * 1e3,
                            ratio=t_theirs / t_ours, scan_gbps=n * cs * nq / t_ours / 1e9,
                            numpy_copy_gbps=n * cs / copy_s / 1e9)
                cells.append(cell)
                print(f"bits={bits:3d} batch={nq:3d} k={k:3d} threads={threads}  "
                      f"hashsdk {cell['hashsdk_ms']:8.2f} ms  faiss {cell['faiss_ms']:8.2f} ms"
                      f"  ratio {cell['ratio']:6.2f}  scan {cell['scan_gbps']:7.1f} GB/s "
                      f"(numpy copy {cell['numpy_copy_gbps']:.1f} GB/s)", flush=True)
    return cells


def markdown(report: dict) -> str:
    lines = [
        f"Exact top-k over {report['n']:,} random codes, median of {report['runs']} runs; "
        f"{report['cpu']}, {report['cores']} cores, kernel path `{report['kernel_dispatch']}`, "
        f"faiss {report['faiss']}. Ratio = faiss time / hashsdk time.",
        "",
        "| bits | batch | k | threads | hashsdk ms | faiss ms | ratio | scan GB/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report["cells"]:
        lines.append(f"| {c['bits']} | {c['batch']} | {c['k']} | {c['threads']} | "
                     f"{c['hashsdk_ms']:.2f} | {c['faiss_ms']:.2f} | {c['ratio']:.2f} | "
                     f"{c['scan_gbps']:.1f} |")
    s = report["summary"]
    copy = statistics.median(c["numpy_copy_gbps"] for c in report["cells"])
    lines += ["", f"Ratio: min {s['min_ratio']:.2f}, median {s['median_ratio']:.2f} "
                  f"(1 thread: min {s['min_ratio_1thread']:.2f}, median "
                  f"{s['median_ratio_1thread']:.2f}). Memory bound (numpy copy of the database): "
                  f"median {copy:.1f} GB/s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
