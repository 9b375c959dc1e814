"""Brute-force references that the fast code is checked against: plain, slow, obviously right."""

from __future__ import annotations

import numpy as np


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    return np.unpackbits(np.atleast_2d(packed), axis=1)[:, :bits].astype(np.int64)


def hamming(q_packed: np.ndarray, db_packed: np.ndarray, bits: int) -> np.ndarray:
    """(nq, n) int64 distances, bit by bit."""
    q, db = unpack(q_packed, bits), unpack(db_packed, bits)
    return (q[:, None, :] != db[None, :, :]).sum(axis=2)


def knn(q_packed, db_packed, ids, bits: int, k: int):
    """Sorted by (distance, id); padded with (2**31 - 1, -1)."""
    dist = hamming(q_packed, db_packed, bits)
    out_d = np.full((len(dist), k), 2**31 - 1, np.int64)
    out_i = np.full((len(dist), k), -1, np.int64)
    for qi, row in enumerate(dist):
        ranked = sorted(zip(row.tolist(), np.asarray(ids).tolist(), strict=True))[:k]
        for j, (d, i) in enumerate(ranked):
            out_d[qi, j], out_i[qi, j] = d, i
    return out_d, out_i


def range_search(q_packed, db_packed, ids, bits: int, radius: int):
    """A list per query of (distance, id) within radius, sorted."""
    dist = hamming(q_packed, db_packed, bits)
    ids = np.asarray(ids).tolist()
    return [sorted((d, i) for d, i in zip(row.tolist(), ids, strict=True) if d <= radius)
            for row in dist]


def average_precision(dist_row, rel_row, topk=None):
    """AP of one query with the (distance, row) ranking, by the textbook definition."""
    order = sorted(range(len(dist_row)), key=lambda j: (dist_row[j], j))
    if topk is not None:
        order = order[:topk]
    hits, total = 0, 0.0
    for rank, j in enumerate(order, start=1):
        if rel_row[j]:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def pairs_within(packed, bits: int, radius: int) -> list[tuple[int, int, int]]:
    """Every (i, j, distance) with i < j and distance <= radius, pair by pair."""
    dist = hamming(packed, packed, bits)
    return [(i, j, int(dist[i, j])) for i in range(len(dist)) for j in range(i + 1, len(dist))
            if dist[i, j] <= radius]


def connected_groups(n: int, pairs) -> list[list[int]]:
    """The connected components of two or more of ``pairs`` (i, j), by breadth-first search;
    each sorted, the list largest first, then by first member."""
    neighbours: dict[int, set[int]] = {i: set() for i in range(n)}
    for i, j in pairs:
        neighbours[int(i)].add(int(j))
        neighbours[int(j)].add(int(i))
    seen, out = set(), []
    for start in range(n):
        if start in seen:
            continue
        todo, part = [start], []
        seen.add(start)
        while todo:
            x = todo.pop()
            part.append(x)
            for y in neighbours[x] - seen:
                seen.add(y)
                todo.append(y)
        if len(part) > 1:
            out.append(sorted(part))
    return sorted(out, key=lambda p: (-len(p), p[0]))
