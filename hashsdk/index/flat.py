"""``HammingIndex``: exact search over bit-packed binary codes.

A few plain verbs, numpy in and out, in the manner of faiss::

    index = HammingIndex(48)
    index.add(codes)                          # packed uint8 (n, 6), or outputs (n, 48)
    distances, ids = index.search(queries, k=10)
    lims, distances, ids = index.range_search(queries, radius=2)
    index.remove(ids_to_drop)
    index.save("db.hidx"); index = HammingIndex.load("db.hidx", mmap=True)

Results are exact and deterministic: sorted by Hamming distance, ties broken by the smaller
id. (faiss's heap does not promise a tie order, and evaluation needs one.) The index keeps its
rows sorted by id, so the kernel's (distance, row) order is the (distance, id) order.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from hashsdk._args import check_int
from hashsdk.codes import as_packed, check_bits, code_size
from hashsdk.errors import HashsdkError
from hashsdk.index import _search, _storage, index_file

if TYPE_CHECKING:  # the milvus extra; never imported at run time unless used
    from hashsdk.index.milvus import MilvusIndex


class HammingIndex:
    """An exact Hamming-distance index over ``bits``-bit codes.

    Args:
        bits: code length, 1 to 4096.
        threads: default thread count for searches (None: every core this process may use).
        backend: "auto" (the C kernel where it built, else numpy), "c" or "numpy".

    Codes may be given packed (uint8, shape (n, ceil(bits / 8)), MSB first, pad bits zero) or
    unpacked (shape (n, bits), float outputs, {-1, +1}, {0, 1} or bool; bit = output > 0).

    Searching is thread-safe, also while another thread adds or removes: a search works on the
    snapshot it started with, and ``add`` and ``remove`` publish new ones. Adding codes with
    ids above every id present (the default ids) costs amortized O(1) a code, and removing
    O(log n); see hashsdk.index._storage.
    """

    def __init__(self, bits: int, *, threads: int | None = None, backend: str = "auto"):
        self._bits = check_bits(bits)
        self._threads = _search.resolve_threads(threads)
        self._backend = _search.resolve_backend(backend)
        self._snap = _storage.empty(code_size(bits))
        self._store = _storage.Store(self._snap)
        self._next_id = 0
        self._write_lock = threading.Lock()

    # ---- properties ----------------------------------------------------------------------

    @property
    def bits(self) -> int:
        """Code length in bits."""
        return self._bits

    @property
    def code_size(self) -> int:
        """Bytes per packed code: ceil(bits / 8)."""
        return code_size(self._bits)

    @property
    def ntotal(self) -> int:
        """Number of codes in the index."""
        return self._snap.ntotal

    def __len__(self) -> int:
        return self.ntotal

    @property
    def next_id(self) -> int:
        """The id that ``add`` gives the next code without ids: one above every id ever
        added (removing codes does not lower it)."""
        return self._next_id

    @property
    def backend(self) -> str:
        """The kernel in use: "c" or "numpy"."""
        return self._backend

    @property
    def codes(self) -> np.ndarray:
        """Packed codes, uint8 (ntotal, code_size), in ascending id order; read-only."""
        return _readonly(self._snap.live()[0])

    @property
    def ids(self) -> np.ndarray:
        """Ids, int64 (ntotal,), ascending; read-only."""
        return _readonly(self._snap.live()[1])

    def __repr__(self) -> str:
        return f"HammingIndex(bits={self._bits}, ntotal={self.ntotal}, backend={self._backend!r})"

    # ---- add and remove -----------------------------------------------------------------

    def add(self, codes: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """Adds codes.

        Args:
            codes: packed uint8 (n, code_size) or unpacked (n, bits); a 1-D array is one code.
            ids: int64-compatible (n,), unique, 0 to 2**63 - 2 (``MAX_ID``), not already in
                the index. None gives consecutive ids after the largest id ever added (faiss's
                sequential ids); none are left after ``MAX_ID``.

        Returns:
            the ids of the added codes, int64 (n,).
        """
        packed = as_packed(codes, self._bits, "add")
        if len(packed) == 0:
            raise HashsdkError("add: expected at least one code, got an empty batch")
        with self._write_lock:
            snap = self._snap
            if ids is None:
                new_ids = self.default_ids(len(packed))
            else:
                new_ids = _storage.check_new_ids(_as_int64(ids, "add"), len(packed), snap)
            self._snap = self._store.add(snap, packed, new_ids)
            self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        return new_ids

    def default_ids(self, n: int) -> np.ndarray:
        """The n ids an add without ids would take, int64 (n,): after the largest id ever
        added; an error where they would pass ``MAX_ID`` (the caller holds the write lock)."""
        if self._next_id + n - 1 > _storage.MAX_ID:
            raise HashsdkError(f"add: no default ids left: the largest id ever added is "
                               f"{self._next_id - 1} and ids stop at {_storage.MAX_ID}; give ids")
        return np.arange(self._next_id, self._next_id + n, dtype=np.int64)

    def remove(self, ids: np.ndarray) -> int:
        """Removes the codes with these ids; ids not in the index are ignored.

        Returns:
            how many codes were removed.
        """
        ids = np.unique(_as_int64(ids, "remove"))
        with self._write_lock:
            snap = self._snap
            rows = snap.find(ids)
            if len(rows):
                self._snap = self._store.remove(snap, rows)
        return len(rows)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The codes of those of ``ids`` that the index holds (faiss's ``reconstruct``).

        Returns:
            ids int64 (m,), ascending and unique, the ones present (the rest left out), and
            their packed codes uint8 (m, code_size).
        """
        ids = np.unique(_as_int64(ids, "lookup"))
        snap = self._snap
        rows = snap.find(ids)
        return snap.ids[rows], snap.codes[rows]

    def reset(self) -> None:
        """Removes every code; the next default id stays where it was."""
        with self._write_lock:
            self._snap = _storage.empty(self.code_size)
            self._store = _storage.Store(self._snap)

    # ---- search ------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, *,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest codes of each query.

        Args:
            queries: packed uint8 (nq, code_size) or unpacked (nq, bits); 1-D is one query.
            k: results per query, >= 1. Where k > ntotal, the rows are padded.
            threads: thread count for this call (default: the index's).

        Returns:
            distances int32 (nq, k) and ids int64 (nq, k), sorted by (distance, id). Padding is
            distance 2**31 - 1 and id -1, as in faiss.
        """
        q = self._queries(queries, "search")
        k = check_int(k, "k", minimum=1)
        snap = self._snap
        # removed rows not yet dropped can take at most len(dead) places: ask for that many more
        dist, rows = _search.knn(q, snap.codes, self._bits, k + len(snap.dead),
                                 self._threads_for(threads), self._backend)
        dist, rows = _storage.without_dead_knn(dist, rows, snap.dead, k)
        return dist, _rows_to_ids(rows, snap.ids)

    def range_search(self, queries: np.ndarray, radius: int, *,
                     threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within Hamming distance ``radius`` (inclusive) of each query.

        Returns:
            lims int64 (nq + 1,), distances int32 (lims[-1],), ids int64 (lims[-1],); query i's
            results are ``distances[lims[i]:lims[i + 1]]``, sorted by (distance, id), as in
            faiss's ``range_search``.
        """
        q = self._queries(queries, "range_search")
        radius = check_int(radius, "radius", minimum=0)
        snap = self._snap
        lims, dist, rows = _search.range_search(q, snap.codes, self._bits, radius,
                                                self._threads_for(threads), self._backend)
        lims, dist, rows = _storage.without_dead_range(lims, dist, rows, snap.dead)
        return lims, dist, snap.ids[rows]

    # ---- files -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, *, paths: list[str] | None = None) -> None:
        """Writes the index to ``path`` atomically; see ``hashsdk.index.index_file`` for the format.
        ``paths``: the image of each code, in id order, written to ``path + ".paths.txt"`` in
        the same step (``index_file.read_paths`` reads them back)."""
        codes, ids = self._snap.live()
        index_file.write(path, self._bits, codes, ids, self._next_id, paths)

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = False, verify: bool | None = None,
             threads: int | None = None, backend: str = "auto") -> HammingIndex:
        """Reads an index written by ``save``.

        Args:
            mmap: map the codes and ids read-only instead of reading them, so that opening a
                large index costs nothing until it is searched. ``add`` and ``remove`` still
                work and copy the arrays into memory.
            verify: check the data CRC and the id order. Default: True for a full read, False
                with ``mmap`` (it would read every byte). The header and the file size are
                always checked, so a truncated file never loads.
        """
        verify = not mmap if verify is None else verify
        head, codes, ids = index_file.read(path, mmap, verify)
        index = cls(head.bits, threads=threads, backend=backend)
        index._snap = _storage.Snapshot(codes, ids, np.empty(0, np.int64))
        index._store = _storage.Store(index._snap)
        index._next_id = head.next_id
        return index

    # ---- Milvus ----------------------------------------------------------------------------

    def to_milvus(self, uri: str, collection: str, **kwargs: Any) -> MilvusIndex:
        """The codes and ids in a Milvus collection (new, or of the same bits), batched, with a
        progress bar; returns its ``hashsdk.index.milvus.MilvusIndex``. Needs the milvus extra."""
        from hashsdk.index.milvus import push

        return push(self, uri, collection, **kwargs)

    # ---- faiss ---------------------------------------------------------------------------

    def to_faiss(self, kind: str = "flat", nlist: int | None = None) -> Any:
        """The same codes and ids in a faiss binary index (needs faiss and bits % 8 == 0).

        kind="flat": ``IndexBinaryIDMap2(IndexBinaryFlat)``, exact;
        kind="ivf": ``IndexBinaryIVF`` over ``nlist`` lists (default ~sqrt(ntotal)), trained
        on these codes; approximate, searched with its ``nprobe``.
        The packed layout is the same on both sides (MSB-first bytes), so codes copy as is.
        """
        faiss = _faiss()
        if self._bits % 8:
            raise HashsdkError(f"faiss binary indexes need a multiple of 8 bits, not "
                               f"{self._bits}; pad the codes with zero bits first")
        codes, ids = self._snap.live()
        codes = np.ascontiguousarray(codes)
        if kind == "flat":
            index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(self._bits))
        elif kind == "ivf":
            nlist = nlist or max(1, int(np.sqrt(max(1, len(ids)))))
            quantizer = faiss.IndexBinaryFlat(self._bits)
            index = faiss.IndexBinaryIVF(quantizer, self._bits, nlist)
            index.own_fields = True
            quantizer.this.disown()  # the IVF index now frees its quantizer
            if len(ids):
                index.train(codes)
        else:
            raise HashsdkError(f"kind must be 'flat' or 'ivf', got {kind!r}")
        if len(ids):
            index.add_with_ids(codes, np.ascontiguousarray(ids))
        return index

    @classmethod
    def from_faiss(cls, index: Any, **kwargs: Any) -> HammingIndex:
        """A HammingIndex with the codes and ids of a faiss ``IndexBinaryFlat``,
        ``IndexBinaryIDMap``/``IDMap2`` (of a flat index) or ``IndexBinaryIVF``."""
        faiss = _faiss()
        index = faiss.downcast_IndexBinary(index)
        ids = None
        if isinstance(index, (faiss.IndexBinaryIDMap, faiss.IndexBinaryIDMap2)):
            ids = faiss.vector_to_array(index.id_map).astype(np.int64)
            index = faiss.downcast_IndexBinary(index.index)
        cs = index.code_size
        if isinstance(index, faiss.IndexBinaryFlat):
            codes = faiss.vector_to_array(index.xb).reshape(-1, cs)
            ids = np.arange(len(codes), dtype=np.int64) if ids is None else ids
        elif isinstance(index, faiss.IndexBinaryIVF):
            invlists, parts, id_parts = index.invlists, [], []
            for i in range(index.nlist):
                n = invlists.list_size(i)
                if n:
                    parts.append(faiss.rev_swig_ptr(invlists.get_codes(i), n * cs).copy())
                    id_parts.append(faiss.rev_swig_ptr(invlists.get_ids(i), n).copy())
            codes = (np.concatenate(parts) if parts else np.empty(0, np.uint8)).reshape(-1, cs)
            ids = np.concatenate(id_parts).astype(np.int64) if id_parts else np.empty(0, np.int64)
        else:
            raise HashsdkError(f"cannot read codes from a {type(index).__name__}; expected "
                               "IndexBinaryFlat, IndexBinaryIDMap(2) or IndexBinaryIVF")
        out = cls(index.d, **kwargs)
        if len(codes):
            out.add(codes, ids)
        return out

    # ---- pickling: the lock stays behind, and mapped arrays travel as plain arrays ---------

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_write_lock"], state["_store"]
        codes, ids = self._snap.live()
        state["_snap"] = _storage.Snapshot(np.array(codes), np.array(ids),
                                           np.empty(0, np.int64))
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._store = _storage.Store(self._snap)
        self._write_lock = threading.Lock()

    # ---- helpers -------------------------------------------------------------------------

    def _queries(self, queries: np.ndarray, what: str) -> np.ndarray:
        q = as_packed(queries, self._bits, what)
        if len(q) == 0:
            raise HashsdkError(f"{what}: expected at least one query, got an empty batch")
        return q

    def _threads_for(self, threads: int | None) -> int:
        return self._threads if threads is None else _search.resolve_threads(threads)


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def _rows_to_ids(rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if len(ids) == 0:
        return rows  # all -1
    out = ids[np.maximum(rows, 0)]
    out[rows < 0] = -1
    return out


def _as_int64(ids: np.ndarray, what: str) -> np.ndarray:
    ids = np.atleast_1d(np.asarray(ids))
    if ids.ndim != 1:
        raise HashsdkError(f"{what}: ids must be 1-D, got shape {ids.shape}")
    if ids.size and ids.dtype.kind not in "iu":
        raise HashsdkError(f"{what}: ids must be integers (int64), got dtype {ids.dtype}")
    if ids.dtype == np.uint64 and ids.size and ids.max() > np.iinfo(np.int64).max:
        raise HashsdkError(f"{what}: ids must fit in int64")
    return ids.astype(np.int64)


def _faiss():
    try:
        import faiss
    except ImportError:
        raise HashsdkError("to_faiss/from_faiss need faiss: pip install faiss-cpu") from None
    return faiss
