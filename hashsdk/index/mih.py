"""``MultiIndexHammingIndex``: exact k-NN and range search in sublinear time, after Norouzi,
Punjani and Fleet ("Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012).

    index = MultiIndexHammingIndex(64)          # the HammingIndex verbs, the same results
    index.add(codes); index.search(queries, k=10); index.range_search(queries, radius=3)

The code is cut into m substrings, each indexed in a table (hashsdk/index/_mih.c): a k-NN
query widens its substring radius until the k-th best (distance, id) is proven, so the answer
is exact, bit for bit the flat index's (distances, ids, ties by id, padding). m comes from the
database size and the code length (substrings of about log2(n) bits, at most 26) unless given.

Where the work a query would do approaches a scan (short codes, a small database, uniform
random codes, a large k), it stops and scans instead with the flat kernel. And where most
queries would (at each build, PROBES rows of the database are searched as queries, k = 10),
k-NN searches scan from the start: so it is never much slower than HammingIndex.

Rows added since the tables were built are scanned too, and the tables are rebuilt (one pass
over the codes) once those rows pass 1/64 of the index, or after a removal drops rows or ids
arrive out of order: adds stay amortized O(1). Saved as a plain HammingIndex file; the tables
are rebuilt on the first search after ``load``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from hashsdk._args import check_int
from hashsdk.errors import HashsdkError
from hashsdk.index import _search, _storage
from hashsdk.index.flat import HammingIndex, _rows_to_ids

try:
    from hashsdk.index import _mih
except ImportError:  # no C compiler at install: the flat scan serves every query
    _mih = None

MAX_SUBSTRING = 26      # bits a table may index: 2**26 buckets of 4 bytes = 256 MiB
MIN_ROWS = 4096         # below this a scan is as fast as anything
# A query's work (buckets read plus rows scored) before it gives up and scans: a unit of it
# (a random access and a popcount) costs about a hundred rows of the flat scan's streaming
# popcount, so n / 512 units keep a query that gives up within about 1.2 scans.
BUDGET_FRACTION = 1 / 512
PROBES = 32             # database rows searched at each build to see whether the codes suit


@dataclass(frozen=True)
class Tables:
    """The tables of rows [0, n) of one generation of the storage (see _storage.Snapshot)."""

    generation: int
    n: int
    scan_first: bool    # most probes went over budget: k-NN queries scan from the start
    start: np.ndarray   # int32 (m,): first bit of each substring
    length: np.ndarray  # int32 (m,)
    base: np.ndarray    # int64 (m + 1,): table j's offsets at base[j]
    offsets: np.ndarray  # uint32 (base[m],)
    rows: np.ndarray    # uint32 (m * n,)

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.rows.nbytes


def substrings_for(bits: int, n: int, m: int | None = None) -> list[tuple[int, int]]:
    """(start, length) of each substring: m of them (default: about log2(n) bits each), their
    lengths differing by at most one."""
    if m is None:
        target = min(MAX_SUBSTRING, max(8, round(math.log2(max(n, 2)))))
        m = max(1, math.ceil(bits / target))
    m = max(m, math.ceil(bits / MAX_SUBSTRING))
    if not 1 <= m <= min(64, bits):
        raise HashsdkError(f"substrings must be 1 to {min(64, bits)} for {bits}-bit codes "
                           f"(each at most {MAX_SUBSTRING} bits), got {m}")
    short, extra = divmod(bits, m)
    out, at = [], 0
    for j in range(m):
        length = short + (j < extra)
        out.append((at, length))
        at += length
    return out


class MultiIndexHammingIndex(HammingIndex):
    """Exact Hamming search with multi-index hashing; HammingIndex's verbs and results.

    Args:
        bits: code length, 1 to 4096.
        substrings: m, the number of tables (None: chosen from n and bits at each build).
        threads: as HammingIndex.
        backend: as HammingIndex; the flat kernel's, for scans.
    """

    def __init__(self, bits: int, substrings: int | None = None, *,
                 threads: int | None = None, backend: str = "auto"):
        super().__init__(bits, threads=threads, backend=backend)
        self._m = None if substrings is None else check_int(substrings, "substrings")
        if self._m is not None:
            substrings_for(self.bits, MIN_ROWS, self._m)  # refuse an impossible m now
        self._tables: Tables | None = None
        self._tables_lock = threading.Lock()
        self._dead_bitmap: tuple[np.ndarray, np.ndarray] | None = None

    def __repr__(self) -> str:
        m = self._tables.length.size if self._tables is not None else self._m
        return f"MultiIndexHammingIndex(bits={self.bits}, ntotal={self.ntotal}, substrings={m})"

    @property
    def tables_nbytes(self) -> int:
        """Bytes the tables take now (0 before the first search)."""
        return self._tables.nbytes if self._tables is not None else 0

    def build(self) -> Tables | None:
        """Builds the tables for the codes now in the index (a search does this when needed);
        returns them, or None where the index scans (too small, or no C extension)."""
        return self._tables_for(self._snap)

    # ---- search ----------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, *,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = self._queries(queries, "search")
        k = check_int(k, "k", minimum=1)
        snap, threads = self._snap, self._threads_for(threads)
        tables = self._tables_for(snap)
        if tables is None or tables.scan_first:
            return super().search(q, k, threads=threads)
        dist = np.empty((len(q), k), np.int32)
        rows = np.empty((len(q), k), np.int64)
        fallback = np.zeros(len(q), np.uint8)
        _mih.knn(q, len(q), *self._args(snap, tables), k, self._budget(tables), threads, dist,
                 rows, fallback)
        if len(snap.ids) > tables.n:  # rows added since the build: scanned, then merged
            dist, rows = _merge_knn(dist, rows, *self._scan_knn(q, snap, tables.n, k, threads), k)
        scan = np.flatnonzero(fallback)
        if len(scan):  # queries over budget: the flat kernel over every row
            dist[scan], rows[scan] = self._scan_knn(q[scan], snap, 0, k, threads)
        return dist, _rows_to_ids(rows, snap.ids)

    def range_search(self, queries: np.ndarray, radius: int, *,
                     threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = self._queries(queries, "range_search")
        radius = check_int(radius, "radius", minimum=0)
        snap, threads = self._snap, self._threads_for(threads)
        tables = self._tables_for(snap)
        if tables is None:
            return super().range_search(q, radius, threads=threads)
        fallback = np.zeros(len(q), np.uint8)
        lims, dist, rows = _mih.range_search(q, len(q), *self._args(snap, tables),
                                             min(radius, self.bits), self._budget(tables),
                                             threads, fallback)
        parts = [(np.frombuffer(lims, np.int64), np.frombuffer(dist, np.int32),
                  np.frombuffer(rows, np.int64), np.arange(len(q)))]
        if len(snap.ids) > tables.n:
            parts.append((*self._scan_range(q, snap, tables.n, radius, threads),
                          np.arange(len(q))))
        scan = np.flatnonzero(fallback)
        if len(scan):
            parts.append((*self._scan_range(q[scan], snap, 0, radius, threads), scan))
        lims, dist, rows = _merge_range(parts, len(q))
        return lims, dist, snap.ids[rows]

    # ---- helpers ------------------------------------------------------------------------------

    def _tables_for(self, snap: _storage.Snapshot) -> Tables | None:
        n = len(snap.ids)
        if _mih is None or n < MIN_ROWS:
            return None
        tables = self._tables
        if tables is not None and tables.generation == snap.generation and \
                n - tables.n <= max(MIN_ROWS, tables.n // 64):
            return tables
        with self._tables_lock:
            tables = self._tables
            if tables is None or tables.generation != snap.generation or \
                    n - tables.n > max(MIN_ROWS, tables.n // 64):
                tables = self._tables = _build(snap, self.bits, self._m)
        return tables

    def _args(self, snap: _storage.Snapshot, tables: Tables) -> tuple:
        """The tables' arguments of _mih.knn and _mih.range_search, dead rows included."""
        return (snap.codes, tables.n, self.code_size, tables.start, tables.length,
                tables.offsets, tables.base, tables.rows, self._dead_bits(snap, tables.n))

    def _dead_bits(self, snap: _storage.Snapshot, n: int) -> np.ndarray | None:
        """The dead rows below n as a bitmap (bit r of byte r // 8, least significant first);
        kept while the snapshot's dead rows stay the same array."""
        dead = snap.dead[snap.dead < n]
        if not len(dead):
            return None
        cached = self._dead_bitmap
        if cached is None or cached[0] is not snap.dead or len(cached[1]) != (n + 7) // 8:
            mask = np.zeros(n, bool)
            mask[dead] = True
            cached = self._dead_bitmap = (snap.dead, np.packbits(mask, bitorder="little"))
        return cached[1]

    @staticmethod
    def _budget(tables: Tables) -> int:
        return budget(tables.n)

    def _scan_knn(self, q: np.ndarray, snap: _storage.Snapshot, first: int, k: int,
                  threads: int) -> tuple[np.ndarray, np.ndarray]:
        """k-NN of rows [first, n) by the flat kernel, in rows of the whole snapshot."""
        dead = snap.dead[snap.dead >= first] - first
        dist, rows = _search.knn(q, snap.codes[first:], self.bits, k + len(dead), threads,
                                 self.backend)
        dist, rows = _storage.without_dead_knn(dist, rows, dead, k)
        return dist, np.where(rows >= 0, rows + first, -1)

    def _scan_range(self, q: np.ndarray, snap: _storage.Snapshot, first: int, radius: int,
                    threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dead = snap.dead[snap.dead >= first] - first
        lims, dist, rows = _search.range_search(q, snap.codes[first:], self.bits, radius,
                                                threads, self.backend)
        lims, dist, rows = _storage.without_dead_range(lims, dist, rows, dead)
        return lims, dist, rows + first

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        del state["_tables_lock"]
        state["_tables"] = state["_dead_bitmap"] = None  # rebuilt on the next search
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._tables_lock = threading.Lock()


def budget(n: int) -> int:
    """A query's work units before it gives up and scans (see BUDGET_FRACTION)."""
    return max(256, int(n * BUDGET_FRACTION))


def _build(snap: _storage.Snapshot, bits: int, m: int | None) -> Tables:
    n, cs = len(snap.ids), snap.codes.shape[1]
    parts = substrings_for(bits, n, m)
    start = np.array([s for s, _ in parts], np.int32)
    length = np.array([ln for _, ln in parts], np.int32)
    base = np.concatenate([[0], np.cumsum((1 << length.astype(np.int64)) + 1)]).astype(np.int64)
    offsets = np.empty(int(base[-1]), np.uint32)
    rows = np.empty(len(parts) * n, np.uint32)
    codes = np.ascontiguousarray(snap.codes)
    _mih.build(codes, n, cs, start, length, offsets, base, rows)
    # do these codes suit the tables? search some of them; if most give up, scan from the start
    probes = codes[np.linspace(0, n - 1, PROBES).astype(np.int64)]
    k = min(10, n)
    fallback = np.zeros(PROBES, np.uint8)
    _mih.knn(probes, PROBES, codes, n, cs, start, length, offsets, base, rows, None, k,
             budget(n), 1, np.empty((PROBES, k), np.int32),
             np.empty((PROBES, k), np.int64), fallback)
    return Tables(snap.generation, n, bool(fallback.mean() > 0.5), start, length, base, offsets,
                  rows)


def _merge_knn(d1: np.ndarray, r1: np.ndarray, d2: np.ndarray, r2: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best by (distance, row) of two sorted, padded result lists of each query."""
    d, r = np.concatenate([d1, d2], axis=1), np.concatenate([r1, r2], axis=1)
    # padding (distance 2**31 - 1, row -1) sorts last: its row is read as the largest
    key = d.astype(np.int64) * (2**32) + np.where(r < 0, 2**32 - 1, r)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), np.take_along_axis(r, order, 1)


def _merge_range(parts: list[tuple], nq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Range results of several searches over disjoint rows (each part: lims, distances,
    rows, and the queries its lims are for), merged per query by (distance, row)."""
    qs, ds, rs = [], [], []
    for lims, dist, rows, queries in parts:
        counts = np.diff(lims)
        qs.append(np.repeat(queries, counts))
        ds.append(dist)
        rs.append(rows)
    q, d, r = np.concatenate(qs), np.concatenate(ds), np.concatenate(rs)
    order = np.lexsort((r, d, q))
    lims = np.zeros(nq + 1, np.int64)
    np.cumsum(np.bincount(q, minlength=nq), out=lims[1:])
    return lims, d[order].astype(np.int32), r[order].astype(np.int64)

