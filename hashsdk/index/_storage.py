"""An index's codes and ids: appends in amortized O(1), removals in O(log n), and snapshots.

The rows stay sorted by id, because the (distance, id) order of every result rests on it.
Most adds come with ids above every id present (default ids are sequential), so their rows go
into spare capacity at the end of the buffers, which double when full: amortized O(1) a code,
as faiss's vectors. Ids below the largest present need a merge: one O(n) copy (memcpy of the
segments between the new rows) into new buffers with the same spare capacity.

A removal marks rows dead (their positions, kept sorted) instead of copying the buffers; once
more than ``max(64, n / 1024)`` rows are dead, they are dropped in one O(n) copy, so a removal
costs O(log n) plus O(1) amortized. Searches skip dead rows: a k-NN search asks the kernel for
k + (dead rows) results and drops the dead ones, which stays exact.

Readers work on a ``Snapshot``: views of the first n rows and the dead rows as they were when
the search began. Writers (serialized by the index's lock) build a new Snapshot and publish it
with one assignment. They never write a row that a published snapshot can see: within one
buffer n only grows, and a merge or a compaction writes new buffers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hashsdk.errors import HashsdkError

# the largest id an index holds: the next default id (largest + 1) must fit in int64
MAX_ID = 2**63 - 2

PAD_DISTANCE = np.iinfo(np.int32).max  # a missing result's distance, as in faiss
_SEGMENT_COPIES = 64  # a merge of at most this many rows copies segments, not a boolean mask


class Snapshot(NamedTuple):
    """codes uint8 (n, code_size) and ids int64 (n,), ascending by id, dead rows included;
    dead: int64, sorted positions of removed rows not yet dropped; generation: changes when
    rows are renumbered (a merge or a compaction), so that row-keyed tables know to rebuild."""

    codes: np.ndarray
    ids: np.ndarray
    dead: np.ndarray
    generation: int = 0

    @property
    def ntotal(self) -> int:
        return len(self.ids) - len(self.dead)

    def live(self) -> tuple[np.ndarray, np.ndarray]:
        """The codes and ids without the dead rows: views where none are dead, else copies."""
        if not len(self.dead):
            return self.codes, self.ids
        keep = np.ones(len(self.ids), bool)
        keep[self.dead] = False
        return self.codes[keep], self.ids[keep]

    def find(self, ids: np.ndarray) -> np.ndarray:
        """Row positions of the live rows with these ids, int64 (ids not present left out)."""
        if not len(self.ids):
            return np.empty(0, np.int64)
        pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        rows = pos[self.ids[pos] == ids]
        return rows[~np.isin(rows, self.dead)] if len(self.dead) else rows


def empty(code_size: int) -> Snapshot:
    return Snapshot(np.empty((0, code_size), np.uint8), np.empty(0, np.int64),
                    np.empty(0, np.int64))


class Store:
    """The growable buffers behind the snapshots; every method is called under the index's
    write lock and returns the snapshot to publish."""

    def __init__(self, snapshot: Snapshot):
        # the buffers may be read-only (a mapped file): the first append copies them
        self._codes, self._ids = snapshot.codes, snapshot.ids
        self._writable = False

    def add(self, snap: Snapshot, codes: np.ndarray, ids: np.ndarray) -> Snapshot:
        """``snap`` (the published snapshot) plus these rows; ids are new and unique."""
        n = len(snap.ids)
        if len(snap.ids) and ids.min() <= snap.ids[-1] or not bool((ids[1:] > ids[:-1]).all()):
            return self._merge(snap, codes, ids)
        if not self._writable or n + len(ids) > len(self._ids):
            self._grow(snap, n + len(ids))
        self._codes[n:n + len(ids)] = codes
        self._ids[n:n + len(ids)] = ids
        return Snapshot(self._codes[:n + len(ids)], self._ids[:n + len(ids)], snap.dead,
                        snap.generation)

    def remove(self, snap: Snapshot, rows: np.ndarray) -> Snapshot:
        """``snap`` less the live rows at these positions."""
        dead = np.union1d(snap.dead, rows)
        if len(dead) <= max(64, len(snap.ids) >> 10):
            return Snapshot(snap.codes, snap.ids, dead, snap.generation)
        keep = np.ones(len(snap.ids), bool)
        keep[dead] = False  # too many dead rows: drop them, into new buffers
        self._codes, self._ids = snap.codes[keep], snap.ids[keep]
        self._writable = True
        return Snapshot(self._codes, self._ids, np.empty(0, np.int64), snap.generation + 1)

    def _new_buffers(self, need: int, code_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Empty codes and ids buffers for at least ``need`` rows: the capacity now, or twice
        it where ``need`` does not fit (so that appends cost amortized O(1))."""
        now = len(self._ids)
        capacity = max(need, 2 * now if need > now else now, 1024)
        return np.empty((capacity, code_size), np.uint8), np.empty(capacity, np.int64)

    def _grow(self, snap: Snapshot, need: int) -> None:
        """New buffers for ``need`` rows, holding the snapshot's rows."""
        n = len(snap.ids)
        codes, ids = self._new_buffers(need, snap.codes.shape[1])
        codes[:n], ids[:n] = snap.codes, snap.ids
        self._codes, self._ids, self._writable = codes, ids, True

    def _merge(self, snap: Snapshot, codes: np.ndarray, ids: np.ndarray) -> Snapshot:
        """Rows whose ids fall among those present: one O(n) copy into new buffers (published
        snapshots may be reading the old ones), with spare capacity (``_new_buffers``), so
        that the appends after a merge need no copy. A server whose writers reach the index in
        a slightly different order than they took their ids merges often: this is its cost."""
        live_codes, live_ids = snap.live()
        order = np.argsort(ids, kind="stable")
        codes, ids = codes[order], ids[order]
        n, m = len(live_ids), len(ids)
        out_codes, out_ids = self._new_buffers(n + m, live_codes.shape[1])
        # the new rows' places in the merged order; ids are unique, so no ties
        at = np.searchsorted(live_ids, ids) + np.arange(m)
        if m <= _SEGMENT_COPIES:  # a few new rows: m + 1 contiguous copies of the old ones
            src = 0
            for j, dst in enumerate(at.tolist()):
                out_codes[src + j:dst], out_ids[src + j:dst] = (live_codes[src:dst - j],
                                                                live_ids[src:dst - j])
                src = dst - j
            out_codes[src + m:n + m], out_ids[src + m:n + m] = live_codes[src:], live_ids[src:]
        else:
            old = np.ones(n + m, bool)
            old[at] = False
            out_codes[:n + m][old], out_ids[:n + m][old] = live_codes, live_ids
        out_codes[at], out_ids[at] = codes, ids
        self._codes, self._ids, self._writable = out_codes, out_ids, True
        return Snapshot(out_codes[:n + m], out_ids[:n + m], np.empty(0, np.int64),
                        snap.generation + 1)


def without_dead_knn(dist: np.ndarray, rows: np.ndarray, dead: np.ndarray,
                     k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first k results of each row that are not dead rows, from a k + len(dead) search;
    padded as the kernel pads."""
    if not len(dead):
        return dist[:, :k], rows[:, :k]
    is_dead = np.isin(rows, dead)
    order = np.argsort(is_dead, axis=1, kind="stable")[:, :k]  # live first, in their order
    dist, rows = np.take_along_axis(dist, order, 1), np.take_along_axis(rows, order, 1)
    gone = np.take_along_axis(is_dead, order, 1)
    dist[gone], rows[gone] = PAD_DISTANCE, -1
    return dist, rows


def without_dead_range(lims: np.ndarray, dist: np.ndarray, rows: np.ndarray,
                       dead: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A range search's (lims, distances, rows) without the dead rows."""
    if not len(dead):
        return lims, dist, rows
    keep = ~np.isin(rows, dead)
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # kept results before each position
    return kept_before[lims].astype(np.int64), dist[keep], rows[keep]


def check_new_ids(ids: np.ndarray, n: int, snap: Snapshot) -> np.ndarray:
    """``ids`` for n new codes: one each, >= 0, unique, and not in the snapshot; O(n log N)."""
    if len(ids) != n:
        raise HashsdkError(f"add: got {n} codes but {len(ids)} ids; expected one id per code")
    if (ids < 0).any():
        raise HashsdkError("add: ids must be >= 0 (-1 marks a missing result)")
    if (ids > MAX_ID).any():
        raise HashsdkError(f"add: ids must be at most {MAX_ID} (2**63 - 2: the next id after "
                           "the largest must fit in int64)")
    unique = np.unique(ids)
    if len(unique) != n:
        raise HashsdkError(f"add: ids must be unique; {n - len(unique)} repeat within the batch")
    rows = snap.find(unique)
    if len(rows):
        clash = snap.ids[rows]
        raise HashsdkError(f"add: {len(clash)} ids are already in the index, "
                           f"e.g. {clash[:5].tolist()}; remove them first")
    return ids
