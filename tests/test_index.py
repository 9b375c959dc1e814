import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import reference
from conftest import random_packed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashsdk import HammingIndex, HashsdkError, pack_bits

MISSING = 2**31 - 1
fixture_ok = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@fixture_ok
@given(bits=st.integers(1, 300), n=st.integers(1, 120), nq=st.integers(1, 9),
       k=st.integers(1, 130), distinct=st.sampled_from([None, 1, 3]),
       shuffled_ids=st.booleans(), threads=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_search_matches_brute_force(search_path, bits, n, nq, k, distinct, shuffled_ids, threads,
                                    seed):
    rng = np.random.default_rng(seed)
    db = random_packed(rng, n, bits, distinct)
    q = random_packed(rng, nq, bits)
    ids = rng.permutation(10 * n)[:n] if shuffled_ids else np.arange(n)
    index = HammingIndex(bits, backend=search_path, threads=threads)
    index.add(db, ids)
    dist, got = index.search(q, k)
    want_d, want_i = reference.knn(q, db, ids, bits, k)
    assert dist.dtype == np.int32 and got.dtype == np.int64 and dist.shape == (nq, k)
    assert (dist == want_d).all() and (got == want_i).all()


@fixture_ok
@given(bits=st.integers(1, 300), n=st.integers(1, 120), nq=st.integers(1, 6),
       radius=st.integers(0, 310), distinct=st.sampled_from([None, 2]),
       seed=st.integers(0, 2**32 - 1))
def test_range_search_matches_brute_force(search_path, bits, n, nq, radius, distinct, seed):
    rng = np.random.default_rng(seed)
    db = random_packed(rng, n, bits, distinct)
    q = np.concatenate([db[:1], random_packed(rng, nq - 1, bits)])  # one exact hit
    ids = rng.permutation(5 * n)[:n]
    index = HammingIndex(bits, backend=search_path)
    index.add(db, ids)
    lims, dist, got = index.range_search(q, radius)
    assert lims.shape == (nq + 1,) and lims[0] == 0 and lims[-1] == len(dist) == len(got)
    want = reference.range_search(q, db, ids, bits, radius)
    for i in range(nq):
        span = slice(lims[i], lims[i + 1])
        pairs = list(zip(dist[span].tolist(), got[span].tolist(), strict=True))
        assert pairs == want[i]


@pytest.mark.parametrize("bits", [8, 16, 48, 64, 128, 256, 512])
@pytest.mark.parametrize("nq", [1, 3, 37])
def test_large_database_with_ties_across_chunks(search_path, bits, nq):
    # enough rows that one query is split over threads, and few distinct codes, so that ties
    # straddle the chunk boundaries and the merge must keep (distance, id) order
    rng = np.random.default_rng(bits + nq)
    n = 20_000
    db = random_packed(rng, n, bits, distinct=5)
    q = random_packed(rng, nq, bits)
    index = HammingIndex(bits, backend=search_path, threads=2)
    index.add(db)
    dist, ids = index.search(q, 50)
    full = reference.hamming(q, db, bits)
    for i in range(nq):
        want = np.lexsort((np.arange(n), full[i]))[:50]
        assert (ids[i] == want).all() and (dist[i] == full[i, want]).all()


def test_ties_break_by_smaller_id_not_insertion_order(search_path):
    index = HammingIndex(8, backend=search_path)
    code = np.array([[7]], np.uint8)
    index.add(np.repeat(code, 3, axis=0), ids=[30, 10, 20])
    index.add(code, ids=[5])
    dist, ids = index.search(code, 4)
    assert ids.tolist() == [[5, 10, 20, 30]] and dist.tolist() == [[0, 0, 0, 0]]


def test_k_beyond_ntotal_pads_like_faiss(search_path):
    index = HammingIndex(12, backend=search_path)
    index.add(np.zeros((2, 12)))
    dist, ids = index.search(np.zeros(12), 5)
    assert ids.tolist() == [[0, 1, -1, -1, -1]]
    assert dist.tolist() == [[0, 0, MISSING, MISSING, MISSING]]


def test_empty_index_returns_only_padding(search_path):
    dist, ids = HammingIndex(24, backend=search_path).search(np.zeros((2, 3), np.uint8), 3)
    assert (ids == -1).all() and (dist == MISSING).all()
    lims, d, i = HammingIndex(24, backend=search_path).range_search(np.zeros((2, 3), np.uint8), 5)
    assert lims.tolist() == [0, 0, 0] and len(d) == len(i) == 0


def test_unpacked_and_packed_codes_agree(rng):
    outputs = rng.standard_normal((50, 20))
    a, b = HammingIndex(20), HammingIndex(20)
    a.add(outputs)
    b.add(pack_bits(outputs))
    assert (a.codes == b.codes).all()
    found_a, found_b = a.search(outputs[:5], 7), b.search(outputs[:5], 7)
    assert all((x == y).all() for x, y in zip(found_a, found_b, strict=True))


def test_default_ids_continue_after_remove(rng):
    index = HammingIndex(16)
    assert index.add(random_packed(rng, 3, 16)).tolist() == [0, 1, 2]
    assert index.remove([2, 99]) == 1
    assert index.add(random_packed(rng, 2, 16)).tolist() == [3, 4]
    assert len(index) == index.ntotal == 4 and index.ids.tolist() == [0, 1, 3, 4]


def test_remove_drops_results(rng):
    db = random_packed(rng, 100, 32)
    index = HammingIndex(32)
    index.add(db)
    index.remove(np.arange(0, 100, 2))
    _, ids = index.search(db, 1)
    assert set(ids[1::2, 0].tolist()) == set(range(1, 100, 2))  # odd rows find themselves
    assert (ids % 2 == 1).all()


@pytest.mark.parametrize("ids, message", [
    ([1, 1], "unique"),
    ([-1, 2], ">= 0"),
    ([1], "one id per code"),
    ([1.0, 2.0], "integers"),
    ([[1, 2]], "1-D"),
])
def test_bad_ids(ids, message):
    with pytest.raises(HashsdkError, match=message):
        HammingIndex(8).add(np.zeros((2, 1), np.uint8), ids)


def test_ids_already_present():
    index = HammingIndex(8)
    index.add(np.zeros((2, 1), np.uint8), [4, 5])
    with pytest.raises(HashsdkError, match="already in the index"):
        index.add(np.zeros((1, 1), np.uint8), [5])


@pytest.mark.parametrize("call, message", [
    (lambda ix: ix.add(np.zeros((0, 2), np.uint8)), "empty batch"),
    (lambda ix: ix.search(np.zeros((0, 2), np.uint8), 3), "empty batch"),
    (lambda ix: ix.search(np.zeros((1, 3), np.uint8), 3), "width 2 or unpacked codes of width 12"),
    (lambda ix: ix.search(np.zeros((1, 2), np.uint8), 0), "k must be"),
    (lambda ix: ix.range_search(np.zeros((1, 2), np.uint8), -1), "radius must be"),
    (lambda ix: ix.search(np.zeros((1, 2), np.uint8), 3, threads=0), "threads"),
    (lambda ix: ix.add(np.full((1, 12), np.nan)), "NaN"),
])
def test_bad_calls_name_what_was_expected(call, message):
    index = HammingIndex(12)
    index.add(np.zeros((1, 12)))
    with pytest.raises(HashsdkError, match=message):
        call(index)


def test_bad_backend():
    with pytest.raises(HashsdkError, match="backend"):
        HammingIndex(8, backend="gpu")


def test_results_do_not_depend_on_thread_count(rng):
    db = random_packed(rng, 30_000, 48, distinct=50)
    q = random_packed(rng, 20, 48)
    index = HammingIndex(48)
    index.add(db)
    first = index.search(q, 25, threads=1)
    for threads in (2, 3, 8):
        again = index.search(q, 25, threads=threads)
        assert (again[0] == first[0]).all() and (again[1] == first[1]).all()


def test_concurrent_searches_match_sequential(rng):
    db = random_packed(rng, 50_000, 64, distinct=500)
    queries = [random_packed(rng, 1 + i % 7, 64) for i in range(24)]
    index = HammingIndex(64, threads=2)
    index.add(db)
    alone = [index.search(q, 10) for q in queries]
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(lambda q: index.search(q, 10), queries))
    for (d1, i1), (d2, i2) in zip(alone, together, strict=True):
        assert (d1 == d2).all() and (i1 == i2).all()


def test_search_while_another_thread_adds(rng):
    # a search sees the arrays it started with, so it never mixes old and new rows
    index = HammingIndex(32)
    base = random_packed(rng, 10_000, 32)
    index.add(base)
    q = base[:5]
    errors = []

    def writer():
        for _ in range(20):
            index.add(random_packed(rng, 500, 32))

    t = threading.Thread(target=writer)
    t.start()
    while t.is_alive():
        dist, ids = index.search(q, 1)
        if not ((dist[:, 0] == 0).all() and (ids[:, 0] == np.arange(5)).all()):
            errors.append((dist, ids))
    t.join()
    assert not errors and index.ntotal == 20_000


def test_codes_and_ids_views_are_read_only(rng):
    index = HammingIndex(8)
    index.add(random_packed(rng, 4, 8))
    with pytest.raises(ValueError):
        index.codes[0, 0] = 1
    with pytest.raises(ValueError):
        index.ids[0] = 9


def test_search_in_a_forked_child_after_a_threaded_search(rng):
    # the helper-thread pool does not survive fork(); the child must start its own
    import multiprocessing as mp

    db = random_packed(rng, 40_000, 64)
    index = HammingIndex(64, threads=2)
    index.add(db)
    expected = index.search(db[:3], 5)[1]
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=lambda: results.put(index.search(db[:3], 5, threads=2)[1]))
    child.start()
    got = results.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and (got == expected).all()


def test_pickle_round_trip(tmp_path, rng):
    import pickle

    index = HammingIndex(20)
    index.add(random_packed(rng, 50, 20), ids=rng.permutation(100)[:50])
    index.save(tmp_path / "a.hidx")
    for source in (index, HammingIndex.load(tmp_path / "a.hidx", mmap=True)):
        copy = pickle.loads(pickle.dumps(source))
        assert (copy.codes == index.codes).all() and (copy.ids == index.ids).all()
        assert copy.add(random_packed(rng, 1, 20)).tolist() == [index._next_id]


@pytest.mark.parametrize("bits", [13, 64])
def test_updates_in_any_order_match_brute_force(search_path, bits, rng):
    # sequential and out-of-order adds, removals small (marked dead) and large (compacted),
    # ids removed and added again: after every step, search and range search against the
    # brute-force oracle on the live codes
    index = HammingIndex(bits, backend=search_path)
    live: dict[int, np.ndarray] = {}
    queries = random_packed(rng, 5, bits)

    def check() -> None:
        ids = np.array(sorted(live), np.int64)
        codes = np.array([live[i] for i in ids], np.uint8).reshape(-1, index.code_size)
        assert index.ntotal == len(ids) and (index.ids == ids).all()
        for k in (1, 7, 300):
            want_d, want_i = reference.knn(queries, codes, ids, bits, k)
            got_d, got_i = index.search(queries, k)
            assert (got_d == want_d).all() and (got_i == want_i).all(), k
        lims, dist, found = index.range_search(queries, bits // 3)
        want = reference.range_search(queries, codes, ids, bits, bits // 3)
        for qi, rows in enumerate(want):
            got = list(zip(dist[lims[qi]:lims[qi + 1]].tolist(),
                           found[lims[qi]:lims[qi + 1]].tolist(), strict=True))
            assert got == rows

    for step in range(12):
        n = int(rng.integers(1, 60))
        codes = random_packed(rng, n, bits, distinct=8)
        if step % 3 == 2:  # ids anywhere, some below the largest present: a merge
            n = int(rng.integers(1, 150))  # both ways of merging: segments, and a mask
            codes = random_packed(rng, n, bits, distinct=8)
            free = np.setdiff1d(np.arange(2000), list(live))
            ids = rng.choice(free, n, replace=False)
            index.add(codes, ids)
        else:  # default, sequential ids: an append
            ids = index.add(codes)
        live.update(zip(ids.tolist(), codes, strict=True))
        drop = rng.choice(sorted(live), min(len(live), int(rng.integers(0, 90))),
                          replace=False)
        assert index.remove(np.concatenate([drop, [10_000_000]])) == len(drop)
        for i in drop.tolist():
            del live[i]
        check()
    # removed ids may come back
    back = np.array([i for i in range(2000) if i not in live][:5])
    index.add(random_packed(rng, 5, bits), back)
    assert set(back.tolist()) <= set(index.ids.tolist())


def test_single_adds_go_into_spare_capacity(rng):
    # one code at a time: the buffers grow by doubling, not one copy per add
    index = HammingIndex(32)
    index.add(random_packed(rng, 5000, 32))
    buffers = set()
    for _ in range(3000):
        index.add(random_packed(rng, 1, 32))
        buffers.add(id(index._store._ids))
    assert len(buffers) <= 2 and index.ntotal == 8000
    assert (index.ids == np.arange(8000)).all()


def test_appends_after_an_out_of_order_add_need_no_copy(rng):
    # a server's writers reach the index slightly out of id order: each merge leaves spare
    # capacity, so the appends that follow go into it
    index = HammingIndex(64)
    codes = random_packed(rng, 5000, 64)
    index.add(codes)
    index.add(codes[:1], np.array([6000]))
    index.add(codes[1:2], np.array([5500]))  # below the largest: a merge
    merged = id(index._store._ids)
    index.add(codes[2:40])
    assert id(index._store._ids) == merged
    assert index.ids.tolist() == [*range(5000), 5500, 6000, *range(6001, 6039)]
    np.testing.assert_array_equal(index.lookup(np.array([5500, 6000, 6001]))[1], codes[[1, 0, 2]])


def test_lookup_and_next_id(rng):
    index = HammingIndex(20)
    codes = random_packed(rng, 6, 20)
    index.add(codes, ids=np.array([9, 2, 30, 4, 5, 6]))
    index.remove(np.array([4]))
    found, got = index.lookup(np.array([30, 4, 2, 2, 77]))
    assert found.tolist() == [2, 30]  # present ones only, ascending, once
    np.testing.assert_array_equal(got, codes[[1, 2]])
    assert index.next_id == 31
    index.remove(np.array([30]))
    assert index.next_id == 31  # never lowered: ids are not reused
    assert index.add(codes[:1]).tolist() == [31]
