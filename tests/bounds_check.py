"""Every search path reads only inside the codes it was given: a script, run in a subprocess by
tests/test_kernel_bounds.py, because a read past the end is a segmentation fault, not an error.

Each database is placed so that its last byte is the last byte before a page mapped with no
access (PROT_NONE), so a load of even one byte too many faults. A buffer from numpy or malloc
ends there only by chance (about 1 in 70 large arrays for a 56-byte over-read), which is how the
first such bug showed: `hashsdk serve` crashed under concurrent adds, whose merges leave the
index in an exactly-sized buffer of 8-byte codes (issue #19). Queries get the same treatment.

Results are checked against tests/reference.py. Prints "checked N cases" and exits 0.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import reference  # noqa: E402

from hashsdk.index import _search, _storage  # noqa: E402
from hashsdk.index.mih import MultiIndexHammingIndex  # noqa: E402

PAGE = mmap.PAGESIZE
CODE_SIZES = (1, 2, 3, 7, 8, 9, 12, 16, 24, 32, 33, 64, 65)
SIZES = (1, 7, 9, 63, 1029)
QUERIES = (1, 3, 4, 33)
_libc = ctypes.CDLL(None, use_errno=True)
_keep = []  # the mappings stay alive while their arrays are used


def before_guard_page(data: np.ndarray) -> np.ndarray:
    """A read-only copy of ``data`` (uint8, 2-D) whose last byte precedes a PROT_NONE page."""
    nbytes = data.nbytes
    pages = (nbytes + PAGE - 1) // PAGE + 1
    m = mmap.mmap(-1, pages * PAGE)
    start = (pages - 1) * PAGE - nbytes
    np.frombuffer(m, np.uint8)[start:start + nbytes] = data.reshape(-1)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    if _libc.mprotect(ctypes.c_void_p(addr + (pages - 1) * PAGE), PAGE, 0) != 0:
        raise OSError(ctypes.get_errno(), "mprotect failed")
    _keep.append(m)
    return np.frombuffer(m, np.uint8, nbytes, start).reshape(data.shape)


def expected_knn(q, db, bits, k):
    dist = reference.hamming(q, db, bits)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]  # ties by row
    d = np.full((len(q), k), 2**31 - 1, np.int64)
    r = np.full((len(q), k), -1, np.int64)
    d[:, :order.shape[1]] = np.take_along_axis(dist, order, 1)
    r[:, :order.shape[1]] = order
    return d, r


def check_flat(rng, cs: int, n: int, nq: int, threads: int) -> None:
    bits = 8 * cs
    db_plain = rng.integers(0, 256, (n, cs), dtype=np.uint8)
    q_plain = rng.integers(0, 256, (nq, cs), dtype=np.uint8)
    db, q = before_guard_page(db_plain), before_guard_page(q_plain)
    k = min(5, n + 1)
    d, r = _search.knn(q, db, bits, k, threads, "c")
    want_d, want_r = expected_knn(q_plain, db_plain, bits, k)
    assert (d == want_d).all() and (r == want_r).all(), ("knn", cs, n, nq, threads)
    radius = bits // 2
    lims, rd, rr = _search.range_search(q, db, bits, radius, threads, "c")
    got = [sorted(zip(rd[lims[i]:lims[i + 1]].tolist(), rr[lims[i]:lims[i + 1]].tolist(),
                      strict=True))
           for i in range(nq)]
    assert got == reference.range_search(q_plain, db_plain, np.arange(n), bits, radius), \
        ("range", cs, n, nq, threads)
    full = _search.distances(q, db, bits, threads, "c")
    assert (full == reference.hamming(q_plain, db_plain, bits)).all(), ("dist", cs, n, nq)


def check_mih(rng, cs: int, n: int) -> None:
    """The multi-index tables over a guarded database (both its table build and its checks
    of candidates read the codes)."""
    bits = 8 * cs
    distinct = np.packbits(rng.integers(0, 2, (50, bits), dtype=np.uint8), axis=1)
    db_plain = distinct[rng.integers(0, 50, n)]  # ties, so that candidates are many
    index = MultiIndexHammingIndex(bits)
    index._snap = _storage.Snapshot(before_guard_page(db_plain), np.arange(n, dtype=np.int64),
                                    np.empty(0, np.int64))
    index._store = _storage.Store(index._snap)
    q_plain = db_plain[:3] ^ np.uint8(1)
    d, r = index.search(before_guard_page(q_plain), 4)
    want_d, want_r = expected_knn(q_plain, db_plain, bits, 4)
    assert (d == want_d).all() and (r == want_r).all(), ("mih", cs, n)


def main() -> int:
    if not _search.has_kernel():
        print("checked 0 cases (no kernel)")
        return 0
    rng = np.random.default_rng(0)
    cases = 0
    for dispatch in _search._kernel.dispatches():
        _search._kernel.set_dispatch(dispatch)
        for cs, n, nq in itertools.product(CODE_SIZES, SIZES, QUERIES):
            check_flat(rng, cs, n, nq, threads=1)
            cases += 1
        for cs in (3, 8, 16):  # more than one chunk: each chunk's end is inside, the last not
            check_flat(rng, cs, 2 * 4096 + 5, 2, threads=2)
            cases += 1
    _search._kernel.set_dispatch("auto")
    for cs in (4, 8, 9, 16):
        check_mih(rng, cs, 20_003)
        cases += 1
    print(f"checked {cases} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
