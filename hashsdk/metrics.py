"""Retrieval metrics for binary codes: mAP, precision@k, precision within a Hamming radius and
precision-recall over the radius.

Conventions (the same as ``HammingIndex.search``):

* The database is ranked for each query by Hamming distance, ties broken by the smaller
  database row. That order is deterministic, unlike an unstable argsort, so a score does not
  move between runs or machines.
* Relevance: with single-label data (1-D integer labels) an item is relevant when its label
  equals the query's; with multi-label data (2-D multi-hot labels, NUS-WIDE or MS-COCO style)
  when it shares at least one label. Or pass an explicit ``relevance`` matrix.
* Queries with no relevant item in the whole database are skipped and counted
  (``RetrievalMetrics.n_skipped``), as published protocols do; they cannot have an average
  precision. Note that DeepHash-pytorch's ``CalcTopMap`` divides by every query instead, so
  the two differ only where some query has no relevant item (never on CIFAR-10).
* AP@k (``topk``) divides by the relevant items found in the top k, as DeepHash-pytorch does; a
  query whose top k holds no relevant item scores 0.
* Precision within radius r counts a query that retrieves nothing within r as precision 0
  (the convention of the DPSH and DeepHash-pytorch code).

Codes are packed uint8 (n, ceil(bits / 8)) or unpacked (n, bits) outputs; see
``hashsdk.codes``. The work is done in chunks of queries with vectorized numpy on top of the
search kernel; nothing loops over queries in Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hashsdk._args import check_int
from hashsdk.codes import as_packed, check_bits, infer_bits
from hashsdk.errors import HashsdkError
from hashsdk.index import _search

# queries per chunk: keeps the (chunk, n) int64 sort order near 50 MB for n = 100,000
_CHUNK = 64


@dataclass(frozen=True)
class RetrievalMetrics:
    """Scores of one retrieval run, averaged over the scored queries.

    Attributes:
        map: mAP@all, or mAP@topk when ``topk`` is set.
        topk: None for mAP@all.
        precision_at_k: {k: mean precision of the top k}.
        radius: the Hamming radius of ``precision_at_radius``.
        precision_at_radius: mean precision within ``radius`` (P@r).
        pr_precision, pr_recall: float64 (bits + 1,), mean precision and recall of everything
            within Hamming radius r, for r = 0..bits.
        n_queries: queries scored; n_skipped: queries skipped for having no relevant item.
    """

    map: float
    topk: int | None
    precision_at_k: dict[int, float]
    radius: int
    precision_at_radius: float
    pr_precision: np.ndarray
    pr_recall: np.ndarray
    n_queries: int
    n_skipped: int

    def as_dict(self) -> dict:
        """Plain types, for JSON."""
        return {
            "map": self.map, "topk": self.topk,
            "precision_at_k": {str(k): v for k, v in self.precision_at_k.items()},
            "radius": self.radius, "precision_at_radius": self.precision_at_radius,
            "pr_precision": self.pr_precision.tolist(), "pr_recall": self.pr_recall.tolist(),
            "n_queries": self.n_queries, "n_skipped": self.n_skipped,
        }


def evaluate(query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray | None = None,
             db_labels: np.ndarray | None = None, *, relevance: np.ndarray | None = None,
             bits: int | None = None, topk: int | None = None, ks: tuple[int, ...] = (100,),
             radius: int = 2, threads: int | None = None,
             backend: str = "auto") -> RetrievalMetrics:
    """Every metric of this module in one pass over the distances.

    Args:
        query_codes: packed uint8 (n, ceil(bits / 8)) or unpacked (n, bits).
        db_codes: as query_codes, of the database.
        query_labels: int (n,) class ids, or multi-hot (n, classes).
        db_labels: as query_labels, of the database.
        relevance: instead of labels, bool (nq, n_db): True where db item j is relevant to
            query i.
        bits: code length; default: inferred (8 x width for uint8 codes, else the width).
        topk: mAP over the top k (mAP@k); None for mAP@all.
        ks: the k of precision@k.
        radius: the Hamming radius of precision@r (2 is the usual P@r=2).
    """
    ks = tuple(check_int(k, "ks") for k in ks)
    topk = None if topk is None else check_int(topk, "topk")
    radius = check_int(radius, "radius", minimum=0)
    aps, pks, prs, hist_rel, hist_all, n_rel = [], {k: [] for k in ks}, [], [], [], []
    bits_used = 0
    for dist, rel, bits_used in _chunks(query_codes, db_codes, query_labels, db_labels,
                                        relevance, bits, threads, backend):
        ranked = _ranked_relevance(dist, rel)
        aps.append(_average_precision(ranked, topk))
        for k in ks:
            pks[k].append(ranked[:, :k].sum(axis=1) / min(k, ranked.shape[1]))
        prs.append(_precision_within(dist, rel, radius))
        rel_counts, all_counts = _histograms(dist, rel, bits_used)
        hist_rel.append(rel_counts)
        hist_all.append(all_counts)
        n_rel.append(rel.sum(axis=1))
    n_rel_all = np.concatenate(n_rel)
    scored = n_rel_all > 0
    if not scored.any():
        raise HashsdkError("evaluate: no query has a relevant item in the database")
    precision, recall = _pr_from_histograms(np.concatenate(hist_rel)[scored],
                                            np.concatenate(hist_all)[scored], n_rel_all[scored])
    return RetrievalMetrics(
        map=float(np.concatenate(aps)[scored].mean()),
        topk=topk,
        precision_at_k={k: float(np.concatenate(v)[scored].mean()) for k, v in pks.items()},
        radius=radius,
        precision_at_radius=float(np.concatenate(prs)[scored].mean()),
        pr_precision=precision,
        pr_recall=recall,
        n_queries=int(scored.sum()),
        n_skipped=int((~scored).sum()),
    )


def average_precisions(query_codes: np.ndarray, db_codes: np.ndarray,
                       query_labels: np.ndarray | None = None,
                       db_labels: np.ndarray | None = None, *,
                       relevance: np.ndarray | None = None, bits: int | None = None,
                       topk: int | None = None, threads: int | None = None,
                       backend: str = "auto") -> np.ndarray:
    """Average precision of each query, float64 (nq,); NaN for a query with no relevant item.

    Per-query scores let two models be compared paired, on the same queries (for example with
    a bootstrap over queries).
    """
    topk = None if topk is None else check_int(topk, "topk")
    out = []
    for dist, rel, _ in _chunks(query_codes, db_codes, query_labels, db_labels, relevance, bits,
                                threads, backend):
        ap = _average_precision(_ranked_relevance(dist, rel), topk)
        ap[~rel.any(axis=1)] = np.nan
        out.append(ap)
    return np.concatenate(out)


def mean_average_precision(query_codes: np.ndarray, db_codes: np.ndarray,
                           query_labels: np.ndarray | None = None,
                           db_labels: np.ndarray | None = None, *,
                           relevance: np.ndarray | None = None, bits: int | None = None,
                           topk: int | None = None, threads: int | None = None,
                           backend: str = "auto") -> float:
    """mAP@all (``topk=None``) or mAP@topk, over queries with at least one relevant item."""
    aps = average_precisions(query_codes, db_codes, query_labels, db_labels,
                             relevance=relevance, bits=bits, topk=topk, threads=threads,
                             backend=backend)
    if np.isnan(aps).all():
        raise HashsdkError("mean_average_precision: no query has a relevant item in the database")
    return float(np.nanmean(aps))


def precision_at_k(query_codes: np.ndarray, db_codes: np.ndarray,
                   query_labels: np.ndarray | None = None, db_labels: np.ndarray | None = None,
                   *, k: int = 100, relevance: np.ndarray | None = None,
                   bits: int | None = None, threads: int | None = None,
                   backend: str = "auto") -> float:
    """Mean share of relevant items among the top k, over queries with a relevant item."""
    return evaluate(query_codes, db_codes, query_labels, db_labels, relevance=relevance,
                    bits=bits, ks=(k,), threads=threads, backend=backend).precision_at_k[k]


def precision_at_radius(query_codes: np.ndarray, db_codes: np.ndarray,
                        query_labels: np.ndarray | None = None,
                        db_labels: np.ndarray | None = None, *, radius: int = 2,
                        relevance: np.ndarray | None = None, bits: int | None = None,
                        threads: int | None = None, backend: str = "auto") -> float:
    """Mean precision of everything within Hamming distance ``radius`` (0 where nothing is)."""
    return evaluate(query_codes, db_codes, query_labels, db_labels, relevance=relevance,
                    bits=bits, radius=radius, threads=threads,
                    backend=backend).precision_at_radius


def precision_recall_curve(query_codes: np.ndarray, db_codes: np.ndarray,
                           query_labels: np.ndarray | None = None,
                           db_labels: np.ndarray | None = None, *,
                           relevance: np.ndarray | None = None, bits: int | None = None,
                           threads: int | None = None,
                           backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Mean precision and recall within Hamming radius r = 0..bits.

    Returns:
        precision, recall: float64 (bits + 1,).
    """
    m = evaluate(query_codes, db_codes, query_labels, db_labels, relevance=relevance, bits=bits,
                 threads=threads, backend=backend)
    return m.pr_precision, m.pr_recall


# ---- internals ---------------------------------------------------------------------------


def relevant(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """bool (nq, n): the relevance rule every metric here uses. Class ids (n,): the same
    class; multi-hot rows (n, classes): at least one shared label."""
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    return _relevance(ql, dl, None, len(ql), len(dl))(0, len(ql))


def _chunks(query_codes, db_codes, query_labels, db_labels, relevance, bits, threads,
            backend) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yields (distances uint16 (c, n), relevance bool (c, n), bits) per chunk of queries."""
    bits = infer_bits(query_codes) if bits is None else check_bits(bits)
    q = as_packed(query_codes, bits, "query codes")
    db = as_packed(db_codes, bits, "database codes")
    if len(q) == 0 or len(db) == 0:
        raise HashsdkError(f"expected at least one query and one database code, got {len(q)} "
                           f"queries and {len(db)} database codes")
    relevant = _relevance(query_labels, db_labels, relevance, len(q), len(db))
    threads = _search.resolve_threads(threads)
    for q0 in range(0, len(q), _CHUNK):
        q1 = min(len(q), q0 + _CHUNK)
        yield _search.distances(q[q0:q1], db, bits, threads, backend), relevant(q0, q1), bits


def _relevance(query_labels, db_labels, relevance, nq: int, n: int):
    """Returns f(q0, q1) -> bool (q1 - q0, n) relevance of those queries."""
    if relevance is not None:
        if query_labels is not None or db_labels is not None:
            raise HashsdkError("pass labels or a relevance matrix, not both")
        relevance = np.asarray(relevance)
        if relevance.shape != (nq, n):
            raise HashsdkError(f"relevance: expected shape ({nq}, {n}), got {relevance.shape}")
        return lambda q0, q1: relevance[q0:q1].astype(bool, copy=False)
    if query_labels is None or db_labels is None:
        raise HashsdkError("expected query_labels and db_labels, or relevance=")
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    if len(ql) != nq or len(dl) != n:
        raise HashsdkError(f"labels: expected {nq} query labels and {n} database labels, got "
                           f"{len(ql)} and {len(dl)}")
    if ql.ndim == 1 and dl.ndim == 1:
        return lambda q0, q1: ql[q0:q1, None] == dl[None, :]
    if ql.ndim == 2 and dl.ndim == 2 and ql.shape[1] == dl.shape[1]:
        qf, df = ql.astype(np.float32), dl.astype(np.float32)
        return lambda q0, q1: (qf[q0:q1] @ df.T) > 0
    raise HashsdkError(f"labels: expected 1-D class ids for both, or multi-hot (n, classes) "
                       f"for both, got shapes {ql.shape} and {dl.shape}")


def _ranked_relevance(dist: np.ndarray, rel: np.ndarray) -> np.ndarray:
    # a stable sort of uint16 keys is a radix sort in numpy: (distance, row) order, in O(n)
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(rel, order, axis=1)


def _average_precision(ranked: np.ndarray, topk: int | None) -> np.ndarray:
    if topk is not None:
        ranked = ranked[:, :topk]
    hits = np.cumsum(ranked, axis=1, dtype=np.float64)
    found = hits[:, -1]
    precision_at_hits = np.where(ranked, hits / np.arange(1, ranked.shape[1] + 1), 0.0)
    return precision_at_hits.sum(axis=1) / np.maximum(found, 1)


def _precision_within(dist: np.ndarray, rel: np.ndarray, radius: int) -> np.ndarray:
    within = dist <= radius
    retrieved = within.sum(axis=1)
    return (within & rel).sum(axis=1) / np.maximum(retrieved, 1)


def _histograms(dist: np.ndarray, rel: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query: relevant items and all items at each distance 0..bits, int64 (c, bits + 1)."""
    c = len(dist)
    flat = (dist.astype(np.int64) + np.arange(c)[:, None] * (bits + 1)).ravel()
    size = c * (bits + 1)
    all_counts = np.bincount(flat, minlength=size).reshape(c, bits + 1)
    rel_counts = np.bincount(flat, weights=rel.ravel(), minlength=size).reshape(c, bits + 1)
    return rel_counts.astype(np.int64), all_counts


def _pr_from_histograms(rel_counts: np.ndarray, all_counts: np.ndarray,
                        n_rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rel_within = np.cumsum(rel_counts, axis=1)
    all_within = np.cumsum(all_counts, axis=1)
    precision = rel_within / np.maximum(all_within, 1)
    recall = rel_within / n_rel[:, None]
    return precision.mean(axis=0), recall.mean(axis=0)
