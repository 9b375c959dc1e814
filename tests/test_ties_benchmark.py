"""benchmarks/ties.py: mAP with ties broken by the smaller row against ties broken at random."""

import numpy as np
import pytest
from conftest import load_benchmark

from hashsdk import pack_bits


@pytest.fixture(scope="module")
def ties():
    return load_benchmark("ties")


def test_one_tied_code_favours_the_first_class_by_row_and_no_class_at_random(ties):
    db = pack_bits(np.ones((10, 16), np.float32))  # every database item the same code
    dl = np.repeat([0, 1], 5)  # laid out class by class, as make_split does
    q, ql = db[:2], np.array([0, 1])
    r = ties.tie_rules(q, db, ql, dl, 16, shuffles=200)
    second = np.mean([k / (5 + k) for k in range(1, 6)])  # class 1's items at ranks 6 to 10
    assert r["map_by_row"] == pytest.approx((1.0 + second) / 2)
    assert r["distinct_database_codes"] == 1
    # at random each query's relevant items are anywhere: both classes score alike, and the
    # mean lies between the two classes' by-row scores
    assert second < r["map_random"] < 1.0
    assert r["map_random_sd"] > 0


def test_without_ties_both_rules_agree_exactly(ties):
    # code k: its first k bits set, so code i and code j are |i - j| apart; from code 0 and
    # code 32 every database item is at its own distance, and no order of rows can matter
    bits = np.tri(33, 32, -1, dtype=np.float32)
    db = pack_bits(bits * 2 - 1)
    dl = np.sort(np.random.default_rng(0).integers(0, 3, len(db)))
    q, ql = db[[0, 32]], dl[[0, 32]]
    r = ties.tie_rules(q, db, ql, dl, 32, shuffles=4)
    assert r["distinct_database_codes"] == 33
    assert r["map_random"] == pytest.approx(r["map_by_row"], abs=1e-12)
    assert r["map_random_sd"] == pytest.approx(0, abs=1e-12)
