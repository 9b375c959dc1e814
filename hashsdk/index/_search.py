"""Exact Hamming search kernels: the C extension, and a numpy fallback with the same results.

Every function takes packed codes (uint8, C-contiguous, shape (n, ceil(bits / 8)), pad bits
zero; see ``hashsdk.codes``) and returns rows, meaning positions in ``db``. Results are ordered
by (distance, row). Missing top-k results are distance 2**31 - 1 and row -1, as in faiss.

Backends:
    "c"      the ``hashsdk.index._kernel`` extension: 64-bit XOR and popcount, top-k by counting,
             multithreaded with the GIL released;
    "numpy"  ``np.bitwise_count`` in chunks, for machines that could not compile the extension;
    "auto"   "c" where it imported, else "numpy".
"""

from __future__ import annotations

import numpy as np

from hashsdk import _args
from hashsdk._args import check_int
from hashsdk.errors import HashsdkError

try:
    from hashsdk.index import _kernel
except ImportError:  # the extension is optional: no compiler at install time
    _kernel = None

SEARCH_BACKENDS = ("auto", "c", "numpy")
MISSING_DISTANCE = np.iinfo(np.int32).max

# numpy fallback: bytes of temporaries per chunk of queries, to bound memory
_CHUNK_BYTES = 64 << 20


def has_kernel() -> bool:
    """Whether the compiled kernel is importable."""
    return _kernel is not None


def resolve_backend(backend: str) -> str:
    if backend not in SEARCH_BACKENDS:
        raise HashsdkError(f"backend must be one of {SEARCH_BACKENDS}, got {backend!r}")
    if backend == "c" and _kernel is None:
        raise HashsdkError("backend 'c' asked for, but hashsdk.index._kernel did not build or "
                           "import; reinstall with a C compiler, or use backend='numpy'")
    if backend == "auto":
        return "c" if _kernel is not None else "numpy"
    return backend


def resolve_threads(threads: int | None) -> int:
    if threads is None:
        return _args.default_threads()
    return check_int(threads, "threads")


def knn(queries: np.ndarray, db: np.ndarray, bits: int, k: int, threads: int,
        backend: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of ``db`` for each query.

    Returns:
        distances int32 (nq, k) and rows int64 (nq, k), sorted by (distance, row).
    """
    nq, n = len(queries), len(db)
    if resolve_backend(backend) == "c":
        dist = np.empty((nq, k), np.int32)
        rows = np.empty((nq, k), np.int64)
        _kernel.knn(queries, db, nq, n, queries.shape[1], bits, k, threads, dist, rows)
        return dist, rows
    return _knn_numpy(queries, db, bits, k)


def range_search(queries: np.ndarray, db: np.ndarray, bits: int, radius: int, threads: int,
                 backend: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row of ``db`` within Hamming distance ``radius`` (inclusive) of each query.

    Returns:
        lims int64 (nq + 1,), distances int32 (lims[-1],), rows int64 (lims[-1],); query i's
        results are ``[lims[i], lims[i + 1])``, sorted by (distance, row).
    """
    nq, n = len(queries), len(db)
    if resolve_backend(backend) == "c":
        lims, dist, rows = _kernel.range_search(queries, db, nq, n, queries.shape[1], bits,
                                                min(radius, bits), threads)
        return (np.frombuffer(lims, np.int64), np.frombuffer(dist, np.int32),
                np.frombuffer(rows, np.int64))
    return _range_numpy(queries, db, bits, radius)


def distances(queries: np.ndarray, db: np.ndarray, bits: int, threads: int,
              backend: str) -> np.ndarray:
    """All Hamming distances, uint16 of shape (nq, n)."""
    nq, n = len(queries), len(db)
    if resolve_backend(backend) == "c":
        out = np.empty((nq, n), np.uint16)
        _kernel.distances(queries, db, nq, n, queries.shape[1], bits, threads, out)
        return out
    return _distances_numpy(queries, db)


# ---- numpy fallback ------------------------------------------------------------------------


def _as_words(codes: np.ndarray) -> np.ndarray:
    """Views codes as uint64 words, zero-padding rows to a multiple of 8 bytes."""
    width = codes.shape[1]
    if width % 8:
        padded = np.zeros((len(codes), width + 8 - width % 8), np.uint8)
        padded[:, :width] = codes
        codes = padded
    return codes.view(np.uint64)


def _query_chunks(nq: int, n: int, words: int):
    step = max(1, _CHUNK_BYTES // max(1, n * max(words, 2) * 8))
    for q0 in range(0, nq, step):
        yield q0, min(nq, q0 + step)


def _distances_numpy(queries: np.ndarray, db: np.ndarray) -> np.ndarray:
    return _distances_words(_as_words(queries), _as_words(db))


def _distances_words(qw: np.ndarray, dw: np.ndarray) -> np.ndarray:
    out = np.empty((len(qw), len(dw)), np.uint16)
    for q0, q1 in _query_chunks(len(qw), len(dw), qw.shape[1]):
        xor = np.bitwise_xor(qw[q0:q1, None, :], dw[None, :, :])
        out[q0:q1] = np.bitwise_count(xor).sum(axis=2, dtype=np.uint16)
    return out


def _knn_numpy(queries: np.ndarray, db: np.ndarray, bits: int,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    nq, n = len(queries), len(db)
    dist = np.full((nq, k), MISSING_DISTANCE, np.int32)
    rows = np.full((nq, k), -1, np.int64)
    if n == 0:
        return dist, rows
    take = min(k, n)
    qw, dw = _as_words(queries), _as_words(db)  # pad the database once, not per chunk
    for q0, q1 in _query_chunks(nq, n, 1):
        # one int64 key orders by distance, then row: the tie rule of the C kernel
        key = _distances_words(qw[q0:q1], dw).astype(np.int64) * n + np.arange(n)
        if take < n:
            key = np.take_along_axis(key, np.argpartition(key, take - 1, axis=1)[:, :take], 1)
        key.sort(axis=1)
        key = key[:, :take]
        dist[q0:q1, :take] = key // n
        rows[q0:q1, :take] = key % n
    return dist, rows


def _range_numpy(queries: np.ndarray, db: np.ndarray, bits: int,
                 radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    full = _distances_numpy(queries, db)
    qi, rows = np.nonzero(full <= radius)  # row-major: ascending row within each query
    dist = full[qi, rows].astype(np.int32)
    order = np.argsort(qi * (bits + 1) + dist, kind="stable")
    lims = np.zeros(len(queries) + 1, np.int64)
    np.cumsum(np.bincount(qi, minlength=len(queries)), out=lims[1:])
    return lims, dist[order], rows[order].astype(np.int64)
