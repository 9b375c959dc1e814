"""Multi-index hashing against the flat scan and faiss: exact k-NN in sublinear time.

    .venv/bin/python benchmarks/mih.py [--n 1000000 10000000] [--bits 64 128]

For each database size, code length and distribution (uniform random codes; clustered codes,
n / 100 centres with 8% of the bits of each code flipped, queries drawn the same way), and
k = 1, 10, 100: milliseconds a query, one query at a time (median of --queries) and in a batch
of 256 (per query). Columns: our flat HammingIndex; our MultiIndexHammingIndex (exact, checked
against the flat results on every query); faiss IndexBinaryMultiHash with as many tables, at
the smallest nflip (0 to --max-nflip) whose distances are exact on these queries; faiss
IndexBinaryHNSW (M 32, efSearch 128) with its recall (the share of returned codes within the
true k-th distance), at sizes up to --hnsw-max-n (its build takes hours at 10M on 2 cores).
Also bytes a code of each index, and the seconds to build the tables. One run on one machine;
OMP_WAIT_POLICY=PASSIVE, so that faiss's idle threads do not spin on the cores.

Writes benchmarks/results/mih.json and mih.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from _results import write_results  # noqa: E402  (benchmarks/)

from hashsdk import HammingIndex, MultiIndexHammingIndex

RESULTS = Path(__file__).resolve().parent / "results"
KS = (1, 10, 100)
BATCH = 256


def codes(kind: str, n: int, bits: int, rng: np.random.Generator,
          centres: np.ndarray | None = None) -> np.ndarray:
    """n packed codes; clustered ones around ``centres`` (bits 0/1), 8% of bits flipped."""
    out = np.empty((n, bits // 8), np.uint8)
    for s in range(0, n, 1 << 20):  # in chunks: 10M x 128 random floats would not fit
        m = min(1 << 20, n - s)
        if kind == "uniform":
            out[s:s + m] = rng.integers(0, 256, (m, bits // 8), dtype=np.uint8)
        else:
            rows = centres[rng.integers(0, len(centres), m)] ^ (rng.random((m, bits)) < 0.08)
            out[s:s + m] = np.packbits(rows.astype(np.uint8), axis=1)
    return out


def per_query_ms(fn, queries: np.ndarray, singles: int) -> tuple[float, float]:
    """(median ms of the first ``singles`` queries one at a time, ms a query in a batch of the
    first 256)."""
    single = []
    for q in queries[:singles]:
        t0 = time.perf_counter()
        fn(q[None])
        single.append(time.perf_counter() - t0)
    batch = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn(queries[:BATCH])
        batch.append((time.perf_counter() - t0) / len(queries[:BATCH]))
    return 1e3 * statistics.median(single), 1e3 * statistics.median(batch)


def faiss_multihash(faiss, db: np.ndarray, bits: int, m: int, queries: np.ndarray,
                    truth: dict, max_nflip: int, singles: int) -> dict:
    index = faiss.IndexBinaryMultiHash(bits, m, bits // m)
    index.add(db)
    out = {"tables": m, "bits_per_table": bits // m}
    for k in KS:
        for nflip in range(max_nflip + 1):
            index.nflip = nflip
            dist, _ = index.search(queries, k)
            if (dist == truth[k]).all():  # exact on all the queries, the batch's included
                out[k] = dict(nflip=nflip, ms=per_query_ms(lambda q: index.search(q, k),  # noqa: B023
                                                           queries, singles))
                break
        else:
            out[k] = dict(nflip=None)  # not exact by max_nflip
    return out


def faiss_hnsw(faiss, db: np.ndarray, bits: int, queries: np.ndarray, truth: dict,
               singles: int) -> dict:
    t0 = time.perf_counter()
    index = faiss.IndexBinaryHNSW(bits, 32)
    index.hnsw.efConstruction = 64
    index.add(db)
    index.hnsw.efSearch = 128
    out = {"build_s": time.perf_counter() - t0,
           "bytes_per_code": len(faiss.serialize_index_binary(index)) / len(db)}
    for k in KS:
        dist, _ = index.search(queries, k)
        recall = float(np.mean(dist <= truth[k][:, -1:]))
        out[k] = dict(recall=recall, ms=per_query_ms(lambda q: index.search(q, k),  # noqa: B023
                                                     queries, singles))
    return out


def measure(n: int, bits: int, kind: str, args: argparse.Namespace, faiss) -> dict:
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 2, (max(1, n // 100), bits), dtype=np.uint8)
    db = codes(kind, n, bits, rng, centres)
    queries = codes(kind, max(args.queries, BATCH), bits, rng, centres)
    flat = HammingIndex(bits)
    flat.add(db)
    multi = MultiIndexHammingIndex(bits)
    multi.add(db)
    t0 = time.perf_counter()
    tables = multi.build()
    row = dict(n=n, bits=bits, kind=kind, build_s=time.perf_counter() - t0,
               substrings=tables.length.tolist(), scan_first=tables.scan_first,
               flat_bytes_per_code=bits / 8,
               mih_bytes_per_code=bits / 8 + tables.nbytes / n, k={})
    truth = {}
    for k in KS:
        truth[k], want_ids = flat.search(queries, k)
        got_d, got_ids = multi.search(queries, k)
        if not ((got_d == truth[k]).all() and (got_ids == want_ids).all()):
            raise SystemExit(f"MultiIndexHammingIndex differs from the flat scan: {row}")
        row["k"][k] = dict(flat_ms=per_query_ms(lambda q: flat.search(q, k),  # noqa: B023
                                                queries, args.queries),
                           mih_ms=per_query_ms(lambda q: multi.search(q, k),  # noqa: B023
                                               queries, args.queries))
        print(n, bits, kind, k, row["k"][k], flush=True)
    if faiss is not None:
        row["faiss_multihash"] = faiss_multihash(faiss, db, bits, len(tables.length), queries,
                                                 truth, args.max_nflip, args.queries)
        if n <= args.hnsw_max_n:
            row["faiss_hnsw"] = faiss_hnsw(faiss, db, bits, queries, truth, args.queries)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--bits", type=int, nargs="+", default=[64, 128])
    p.add_argument("--kinds", nargs="+", default=["uniform", "clustered"])
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--max-nflip", type=int, default=3)
    p.add_argument("--hnsw-max-n", type=int, default=1_000_000)
    args = p.parse_args()
    # faiss's OpenMP threads otherwise spin after each search and take the cores from ours
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import faiss
    except ImportError:
        faiss = None
    rows = [measure(n, bits, kind, args, faiss) for n in args.n for bits in args.bits
            for kind in args.kinds]
    given = [f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
             for k, v in vars(args).items() if v != p.get_default(k)]
    report = dict(command=" ".join(["python benchmarks/mih.py", *given]), cores=os.cpu_count(),
                  cpu=platform.processor() or platform.machine(),
                  faiss=getattr(faiss, "__version__", None), rows=rows)
    write_results(RESULTS / "mih", report, markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = [f"Milliseconds a query, one at a time / in batches of {BATCH}; {report['cores']} "
             f"cores, faiss {report['faiss']}. MIH is exact (checked against the flat scan "
             "on every query); faiss's MultiHash at the smallest exact nflip ('not exact' past "
             "the largest tried); HNSW with its recall.", "",
             "| n | bits | codes | k | flat | MIH | speed-up | faiss MultiHash | faiss HNSW |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        for k, cell in r["k"].items():
            flat, mih = cell["flat_ms"], cell["mih_ms"]
            mh = r.get("faiss_multihash", {}).get(str(k)) or r.get("faiss_multihash", {}).get(k)
            mh_cell = ("" if mh is None else "not exact" if mh["nflip"] is None else
                       f"{mh['ms'][0]:.3f} / {mh['ms'][1]:.3f} (nflip {mh['nflip']})")
            hn = r.get("faiss_hnsw", {}).get(str(k)) or r.get("faiss_hnsw", {}).get(k)
            hn_cell = "" if hn is None else (f"{hn['ms'][0]:.3f} / {hn['ms'][1]:.3f} "
                                             f"(recall {hn['recall']:.3f})")
            lines.append(f"| {r['n']:,} | {r['bits']} | {r['kind']} | {k} | {flat[0]:.3f} / "
                         f"{flat[1]:.3f} | {mih[0]:.3f} / {mih[1]:.3f} | {flat[0] / mih[0]:.1f}x"
                         f" / {flat[1] / mih[1]:.1f}x | {mh_cell} | {hn_cell} |")
    lines += ["", "| n | bits | codes | substrings | tables built in | bytes a code: flat / MIH "
              "(x codes) | HNSW |", "|---:|---:|---|---|---:|---:|---:|"]
    for r in report["rows"]:
        hnsw = r.get("faiss_hnsw")
        hnsw_bytes = "" if hnsw is None else f"{hnsw['bytes_per_code']:.0f}"
        ratio = r["mih_bytes_per_code"] / r["flat_bytes_per_code"]
        lines.append(f"| {r['n']:,} | {r['bits']} | {r['kind']} | {r['substrings']} | "
                     f"{r['build_s']:.2f} s | {r['flat_bytes_per_code']:.0f} / "
                     f"{r['mih_bytes_per_code']:.1f} ({ratio:.2f}x) | {hnsw_bytes} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
