"""Near-duplicate groups in a collection of codes, and the radius that reaches a precision.

    pairs = find_pairs(codes, bits, radius)          # int64 (m, 2) rows i < j, int32 (m,)
    groups = group(len(codes), pairs)                # lists of rows, connected within radius
    radius = radius_for_precision(encoder, images, 0.99)

Pairs come from range searches of the collection against itself, in chunks of queries, on a
``HammingIndex`` or, where it pays (many codes, a radius small for the code length), a
``MultiIndexHammingIndex``: never an all-pairs matrix. Groups are the connected components of
the pairs (single linkage: two images are in one group when a chain of pairs within the
radius joins them). Rows are positions in ``codes``; callers map them to ids or paths.

The precision calibration needs images, not codes: from a sample of the collection it makes
one edited copy of each image for every edit of ``hashsdk.edits``, searches each copy among
the sampled originals, and takes the largest radius at which at least the target share of
the matches found are the copy's own original.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hashsdk.codes import check_bits, pack_bits
from hashsdk.errors import HashsdkError
from hashsdk.index import HammingIndex, MultiIndexHammingIndex

QUERY_CHUNK = 8192        # queries a range search takes at a time (bounded memory)
# multi-index hashing pays from about MIH_MIN_CODES codes at radii below bits / MIH_RADIUS_SHARE:
# 5x the flat scan at radius 4 of 64 bits, slower at 8 (benchmarks/results/dedup.md)
MIH_MIN_CODES = 20_000
MIH_RADIUS_SHARE = 10
CALIBRATION_SAMPLE = 200  # images the precision calibration edits


def make_index(codes: np.ndarray, bits: int, radius: int, kind: str = "auto"):
    """The index the range searches run on: "flat", "mih", or "auto" (by size and radius)."""
    if kind == "auto":
        kind = "mih" if len(codes) >= MIH_MIN_CODES and \
            radius * MIH_RADIUS_SHARE < bits else "flat"
    if kind not in ("flat", "mih"):
        raise HashsdkError(f"kind must be 'auto', 'flat' or 'mih', got {kind!r}")
    index = (MultiIndexHammingIndex if kind == "mih" else HammingIndex)(bits)
    index.add(codes)  # ids 0..n-1: the rows
    return index


def find_pairs(codes: np.ndarray, bits: int, radius: int, kind: str = "auto",
               progress: Callable[[int, int], None] | None = None,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of rows within Hamming distance ``radius`` (inclusive).

    Args:
        codes: packed uint8 (n, ceil(bits / 8)).
        progress: called with (rows done, n) after each chunk of queries.
    Returns:
        int64 (m, 2) pairs (i, j) with i < j, sorted; int32 (m,) their distances.
    """
    check_bits(bits)
    codes = np.ascontiguousarray(codes, np.uint8)
    if codes.ndim != 2 or codes.shape[1] != (bits + 7) // 8:
        raise HashsdkError(f"codes must be packed uint8 (n, {(bits + 7) // 8}) for {bits} "
                           f"bits, got {codes.dtype} {codes.shape}")
    if not isinstance(radius, (int, np.integer)) or radius < 0:
        raise HashsdkError(f"radius must be an integer >= 0, got {radius!r}")
    index = make_index(codes, bits, int(radius), kind)
    found_pairs, found_dist = [], []
    for start in range(0, len(codes), QUERY_CHUNK):
        q = codes[start:start + QUERY_CHUNK]
        lims, dist, ids = index.range_search(q, int(radius), threads=threads)
        rows = start + np.repeat(np.arange(len(q)), np.diff(lims))
        keep = ids > rows  # each pair once, and no row with itself
        found_pairs.append(np.stack([rows[keep], ids[keep]], axis=1))
        found_dist.append(dist[keep])
        if progress is not None:
            progress(min(start + QUERY_CHUNK, len(codes)), len(codes))
    pairs = np.concatenate(found_pairs) if found_pairs else np.empty((0, 2), np.int64)
    dist = np.concatenate(found_dist) if found_dist else np.empty(0, np.int32)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order].astype(np.int64), dist[order].astype(np.int32)


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """int64 (n,): for each row, the smallest row of its connected component."""
    label = np.arange(n, dtype=np.int64)
    if len(pairs) == 0:
        return label
    i, j = pairs[:, 0], pairs[:, 1]
    while True:  # min-label propagation with pointer jumping: O(log n) rounds in practice
        low = np.minimum(label[i], label[j])
        changed = False
        for side in (i, j):
            before = label[side]
            np.minimum.at(label, side, low)
            changed |= bool((label[side] != before).any())
        label = label[label]
        while True:
            jumped = label[label]
            if (jumped == label).all():
                break
            label = jumped
        if not changed:
            return label


def group(n: int, pairs: np.ndarray) -> list[np.ndarray]:
    """The groups of two or more rows, each sorted, largest first (then by first row)."""
    label = components(n, pairs)
    order = np.argsort(label, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(label[order]) != 0])
    parts = np.split(order, starts[1:])
    out = [p for p in parts if len(p) > 1]
    return sorted(out, key=lambda p: (-len(p), int(p[0])))


def radius_for_precision(encode: Callable[[list], np.ndarray], images: Sequence, bits: int,
                         target: float, seed: int = 0) -> tuple[int, dict]:
    """The largest radius whose precision on edited copies of ``images`` reaches ``target``.

    Args:
        encode: PIL images -> float outputs (n, bits) (an Encoder's ``encode(..., packed=
            False)``).
        images: PIL images of the collection (a sample of up to CALIBRATION_SAMPLE is used).
    Returns:
        the radius (-1 where even radius 0 misses the target), and the curve: {"radius": [...],
        "precision": [...], "recall": [...]} over radii 0..bits, with "copies" and "originals".
    """
    from hashsdk.edits import EDITS, apply

    if not 0 < target <= 1:
        raise HashsdkError(f"the target precision must be in (0, 1], got {target}")
    if len(images) < 2:
        raise HashsdkError("the precision calibration needs at least 2 images")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), min(CALIBRATION_SAMPLE, len(images)), replace=False)
    originals = [images[i] for i in pick]
    copies, source = [], []
    for k, image in enumerate(originals):
        for name in EDITS:
            copies.append(apply(name, image, rng))
            source.append(k)
    a = pack_bits(np.asarray(encode(originals), np.float32))
    b = pack_bits(np.asarray(encode(copies), np.float32))
    index = HammingIndex(bits)
    index.add(a)
    dist, ids = index.search(b, len(originals))
    right = ids == np.asarray(source)[:, None]
    radii = np.arange(bits + 1)
    within = dist[None, :, :] <= radii[:, None, None]          # (radii, copies, originals)
    found = within.sum(axis=(1, 2))
    hits = (within & right[None]).sum(axis=(1, 2))
    precision = np.where(found > 0, hits / np.maximum(found, 1), 1.0)
    recall = hits / len(copies)
    ok = np.flatnonzero((precision >= target) & (found > 0))
    radius = int(ok.max()) if len(ok) else -1
    return radius, dict(radius=radii.tolist(), precision=precision.tolist(),
                        recall=recall.tolist(), copies=len(copies), originals=len(originals))


def report(groups: list[np.ndarray], codes: np.ndarray, ids: np.ndarray,
           paths: Sequence[str | None] | None, **about) -> dict:
    """The JSON document of a dedup run: ``about`` (source, bits, radius, ...), then each
    group's members with their id, path (or None) and distance to the group's first member."""
    out = []
    for rows in groups:
        d = np.unpackbits(codes[rows] ^ codes[rows[0]], axis=1).sum(axis=1)
        out.append({"members": [{"id": int(ids[r]), "path": paths[r] if paths else None,
                                 "distance": int(x)} for r, x in zip(rows, d, strict=True)]})
    return dict(about, groups=len(out), duplicates=int(sum(len(g) - 1 for g in groups)),
                members=out)


def csv_lines(doc: dict) -> list[str]:
    """``report``'s groups as CSV: group, id, path, distance (to the group's first member)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["group", "id", "path", "distance"])
    for g, members in enumerate(doc["members"]):
        for m in members["members"]:
            writer.writerow([g, m["id"], m["path"] or "", m["distance"]])
    return buf.getvalue().splitlines()
