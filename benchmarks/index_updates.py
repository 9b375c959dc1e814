"""Adds and removes on a large index: single-code adds, single-id removes, and what removed
rows (marked dead until compaction, hashsdk.index._storage) cost a search.

    .venv/bin/python benchmarks/index_updates.py [--n 1000000] [--bits 64]

An add with an id below the largest present merges (an O(n) copy); its cost is measured too,
with the add after it. Targets (issue 12): 100,000 single-code adds to a 1M-code index in under
2 s; a removal of a few ids from 1M codes under 1 ms; the same for MultiIndexHammingIndex,
whose tables rebuild when the codes added since pass 1/64 of the index (here a search after
every 1,000th add makes them, so the rebuilds count). faiss's IndexBinaryFlat takes the same
single adds, for reference (its storage is a growing vector). One run on one machine; times are
medians where a call repeats.

Writes benchmarks/results/index-updates.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from _results import write_results  # noqa: E402  (benchmarks/)

from hashsdk import HammingIndex, MultiIndexHammingIndex

RESULTS = Path(__file__).resolve().parent / "results"


def single_adds(index, codes: np.ndarray) -> float:
    """Seconds to add ``codes`` one at a time."""
    t0 = time.perf_counter()
    for code in codes:
        index.add(code[None])
    return time.perf_counter() - t0


def removes(index: HammingIndex, ids: np.ndarray) -> list[float]:
    """Seconds of each one-id removal."""
    times = []
    for i in ids:
        t0 = time.perf_counter()
        index.remove(np.array([i]))
        times.append(time.perf_counter() - t0)
    return times


def out_of_order_adds(index: HammingIndex, codes: np.ndarray) -> tuple[list[float], list[float]]:
    """Seconds of each add one id below the largest present (a merge: two writers that took
    ids in one order and reached the index in the other), and of the plain add after it."""
    merges, appends = [], []
    for a, b, c in codes.reshape(-1, 3, codes.shape[1]):
        top = index.next_id
        index.add(a[None], np.array([top + 1]))
        t0 = time.perf_counter()
        index.add(b[None], np.array([top]))
        t1 = time.perf_counter()
        index.add(c[None])
        merges.append(t1 - t0)
        appends.append(time.perf_counter() - t1)
    return merges, appends


def search_ms(index: HammingIndex, queries: np.ndarray, runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        index.search(queries, 10)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--adds", type=int, default=100_000)
    p.add_argument("--removes", type=int, default=2_000)
    p.add_argument("--merges", type=int, default=100)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    cs = args.bits // 8
    base = rng.integers(0, 256, (args.n, cs), dtype=np.uint8)
    extra = rng.integers(0, 256, (args.adds, cs), dtype=np.uint8)
    query = base[:1]

    index = HammingIndex(args.bits)
    index.add(base)
    ours = single_adds(index, extra)
    before = search_ms(index, query)
    remove_times = removes(index, rng.choice(args.n, args.removes, replace=False))
    dead = len(index._snap.dead)
    after = search_ms(index, query)
    row = dict(n=args.n, bits=args.bits, adds=args.adds, hashsdk_add_seconds=ours,
               hashsdk_add_us_each=1e6 * ours / args.adds, removes=args.removes,
               remove_ms_median=1e3 * statistics.median(remove_times),
               remove_ms_p99=1e3 * float(np.percentile(remove_times, 99)),
               remove_ms_max=1e3 * max(remove_times), dead_rows_after=dead,
               search_ms_before_removes=before, search_ms_with_dead_rows=after)
    shuffled = HammingIndex(args.bits)
    shuffled.add(base)
    merges, appends = out_of_order_adds(shuffled, extra[:3 * args.merges])
    row.update(merges=args.merges, merge_ms_median=1e3 * statistics.median(merges),
               append_after_merge_ms_median=1e3 * statistics.median(appends))
    multi = MultiIndexHammingIndex(args.bits)
    multi.add(base)
    multi.search(query, 10)  # the tables, built
    t0 = time.perf_counter()
    for i, code in enumerate(extra):
        multi.add(code[None])
        if i % 1000 == 999:
            multi.search(query, 10)
    row["mih_add_seconds"] = time.perf_counter() - t0
    row["mih_remove_ms_median"] = 1e3 * statistics.median(
        removes(multi, rng.choice(args.n, args.removes, replace=False)))
    try:
        import faiss

        theirs = faiss.IndexBinaryFlat(args.bits)
        theirs.add(base)
        row["faiss_add_seconds"] = single_adds(theirs, extra)
        row["faiss_version"] = faiss.__version__
    except ImportError:
        pass
    given = [f"--{k} {v}" for k, v in vars(args).items() if v != p.get_default(k)]
    report = dict(command=" ".join(["python benchmarks/index_updates.py", *given]),
                  cores=os.cpu_count(), **row)
    print(json.dumps(report, indent=1))
    write_results(RESULTS / "index-updates", report, markdown(report))


def markdown(r: dict) -> str:
    faiss_cell = (f"{r['faiss_add_seconds']:.2f} s" if "faiss_add_seconds" in r
                  else "not installed")
    return "\n".join([
        f"{r['n']:,} codes of {r['bits']} bits; one run on {r['cores']} cores.", "",
        "| measure | hashsdk | target |", "|---|---:|---:|",
        f"| {r['adds']:,} single-code adds | {r['hashsdk_add_seconds']:.2f} s "
        f"({r['hashsdk_add_us_each']:.1f} µs each; faiss IndexBinaryFlat {faiss_cell}) | < 2 s |",
        f"| an add one id below the largest present (a merge), median of {r['merges']} / "
        f"the add after it | {r['merge_ms_median']:.2f} / "
        f"{r['append_after_merge_ms_median']:.3f} ms | |",
        f"| the same adds to a MultiIndexHammingIndex, a search every 1,000 (tables rebuilt "
        f"as they go) | {r['mih_add_seconds']:.2f} s | < 2 s |",
        f"| one-id removal, median / p99 / max of {r['removes']:,} | "
        f"{r['remove_ms_median']:.3f} / {r['remove_ms_p99']:.3f} / {r['remove_ms_max']:.2f} ms"
        " | < 1 ms |",
        f"| one-id removal from the MultiIndexHammingIndex, median | "
        f"{r['mih_remove_ms_median']:.3f} ms | < 1 ms |",
        f"| search, 1 query, k = 10: before the removals / with {r['dead_rows_after']} removed "
        f"rows awaiting compaction | {r['search_ms_before_removes']:.2f} / "
        f"{r['search_ms_with_dead_rows']:.2f} ms | |", ""])


if __name__ == "__main__":
    main()
