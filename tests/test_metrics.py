import numpy as np
import pytest
import reference
from conftest import random_packed

from hashsdk import (
    HashsdkError,
    evaluate,
    mean_average_precision,
    pack_bits,
    precision_at_k,
    precision_at_radius,
    precision_recall_curve,
)
from hashsdk.metrics import average_precisions

# One query, code 0000, against five database codes (4 bits).
#   row  code  distance  relevant
#   0    0001  1         yes
#   1    0000  0         no
#   2    0011  2         yes
#   3    0001  1         no
#   4    1111  4         yes
# Ranked by (distance, row): 1, 0, 3, 2, 4 -> relevant at ranks 2, 4, 5.
HAND_Q = pack_bits(np.array([[0, 0, 0, 0]]))
HAND_DB = pack_bits(np.array([[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1],
                              [1, 1, 1, 1]]))
HAND_QL, HAND_DL = np.array([1]), np.array([1, 0, 1, 0, 1])


def test_hand_worked_example():
    m = evaluate(HAND_Q, HAND_DB, HAND_QL, HAND_DL, bits=4, ks=(2,), radius=1)
    assert m.map == pytest.approx((1 / 2 + 2 / 4 + 3 / 5) / 3)
    assert m.precision_at_k[2] == pytest.approx(1 / 2)
    assert m.precision_at_radius == pytest.approx(1 / 3)  # rows 1, 0, 3 within radius 1
    assert m.pr_precision.tolist() == pytest.approx([0, 1 / 3, 2 / 4, 2 / 4, 3 / 5])
    assert m.pr_recall.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1])
    assert (m.n_queries, m.n_skipped) == (1, 0)
    # AP@3: the top 3 are rows 1, 0, 3, with one relevant item at rank 2
    assert mean_average_precision(HAND_Q, HAND_DB, HAND_QL, HAND_DL, bits=4,
                                  topk=3) == pytest.approx(1 / 2)


@pytest.mark.parametrize("bits", [12, 48, 64])
@pytest.mark.parametrize("topk", [None, 1, 25, 10_000])
def test_map_matches_reference_single_label(search_path, bits, topk, rng):
    # few distinct codes: many ties, where the (distance, row) order decides the score
    db = random_packed(rng, 300, bits, distinct=20)
    q = random_packed(rng, 40, bits, distinct=20)
    dl, ql = rng.integers(0, 5, 300), rng.integers(0, 5, 40)
    dist = reference.hamming(q, db, bits)
    want = np.mean([reference.average_precision(dist[i], ql[i] == dl, topk) for i in range(40)])
    got = mean_average_precision(q, db, ql, dl, bits=bits, topk=topk, backend=search_path)
    assert got == pytest.approx(want, abs=1e-12)


def test_multi_label_relevance_is_any_shared_label(rng):
    bits = 24
    db, q = random_packed(rng, 200, bits), random_packed(rng, 30, bits)
    dl = (rng.random((200, 6)) < 0.25).astype(np.uint8)
    ql = (rng.random((30, 6)) < 0.25).astype(np.uint8)
    ql[0] = 0  # no label at all: no relevant item, so skipped
    rel = (ql.astype(int) @ dl.T.astype(int)) > 0
    dist = reference.hamming(q, db, bits)
    scored = [i for i in range(30) if rel[i].any()]
    want = np.mean([reference.average_precision(dist[i], rel[i]) for i in scored])
    m = evaluate(q, db, ql, dl, bits=bits)
    assert m.map == pytest.approx(want, abs=1e-12)
    assert m.n_skipped == 30 - len(scored) >= 1
    assert m.map == pytest.approx(evaluate(q, db, relevance=rel, bits=bits).map)


def test_precision_functions_match_reference(rng):
    bits = 16
    db, q = random_packed(rng, 500, bits, distinct=40), random_packed(rng, 20, bits)
    dl, ql = rng.integers(0, 3, 500), rng.integers(0, 3, 20)
    dist, rel = reference.hamming(q, db, bits), ql[:, None] == dl[None, :]
    order = [sorted(range(500), key=lambda j: (dist[i, j], j)) for i in range(20)]
    p_at_10 = np.mean([rel[i, order[i][:10]].mean() for i in range(20)])
    within = dist <= 2
    p_at_r = np.mean([rel[i][within[i]].mean() if within[i].any() else 0.0 for i in range(20)])
    assert precision_at_k(q, db, ql, dl, k=10, bits=bits) == pytest.approx(p_at_10)
    assert precision_at_radius(q, db, ql, dl, radius=2, bits=bits) == pytest.approx(p_at_r)
    precision, recall = precision_recall_curve(q, db, ql, dl, bits=bits)
    assert precision.shape == recall.shape == (bits + 1,)
    assert recall[-1] == pytest.approx(1.0) and (np.diff(recall) >= 0).all()
    r = 5
    want_recall = np.mean([(rel[i] & (dist[i] <= r)).sum() / rel[i].sum() for i in range(20)])
    assert recall[r] == pytest.approx(want_recall)


def test_per_query_ap_marks_skipped_queries_nan(rng):
    db, q = random_packed(rng, 50, 8), random_packed(rng, 3, 8)
    aps = average_precisions(q, db, np.array([0, 1, 9]), rng.integers(0, 2, 50), bits=8)
    assert np.isnan(aps[2]) and not np.isnan(aps[:2]).any()


def test_unpacked_float_codes_give_the_same_score(rng):
    outputs_db, outputs_q = rng.standard_normal((100, 32)), rng.standard_normal((10, 32))
    dl, ql = rng.integers(0, 4, 100), rng.integers(0, 4, 10)
    packed = mean_average_precision(pack_bits(outputs_q), pack_bits(outputs_db), ql, dl, bits=32)
    assert mean_average_precision(outputs_q, outputs_db, ql, dl) == pytest.approx(packed)


@pytest.mark.parametrize("kwargs, message", [
    (dict(query_labels=np.zeros(2), db_labels=np.zeros(5)), "expected 1 query labels"),
    (dict(query_labels=np.zeros((1, 3)), db_labels=np.zeros(5)), "multi-hot"),
    (dict(query_labels=np.zeros(1), db_labels=np.zeros(5), relevance=np.ones((1, 5))),
     "not both"),
    (dict(relevance=np.ones((2, 5))), "expected shape"),
    (dict(), "expected query_labels"),
    (dict(query_labels=np.array([7]), db_labels=np.zeros(5)), "no query has a relevant"),
])
def test_bad_metric_input(kwargs, message):
    with pytest.raises(HashsdkError, match=message):
        evaluate(HAND_Q, HAND_DB, bits=4, **kwargs)


def test_empty_inputs_are_refused():
    with pytest.raises(HashsdkError, match="at least one query"):
        evaluate(np.zeros((0, 1), np.uint8), HAND_DB, np.zeros(0), HAND_DL, bits=4)
