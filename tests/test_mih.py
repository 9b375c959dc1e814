"""MultiIndexHammingIndex gives HammingIndex's results bit for bit: distances, ids, ties by id,
padding; k-NN and range; through every path (the tables, queries that give up and scan, rows
added since the build, rebuilds after removals and out-of-order ids)."""

import pickle

import numpy as np
import pytest
from conftest import random_packed

import hashsdk.index.mih as mih
from hashsdk import HammingIndex, HashsdkError, MultiIndexHammingIndex

pytestmark = pytest.mark.skipif(mih._mih is None, reason="the _mih extension did not build")


def clustered_packed(rng, n: int, bits: int, per_cluster: int = 100, flip: float = 0.08):
    centres = rng.integers(0, 2, (max(1, n // per_cluster), bits), dtype=np.uint8)
    rows = centres[rng.integers(0, len(centres), n)] ^ (rng.random((n, bits)) < flip)
    return np.packbits(rows.astype(np.uint8), axis=1)


def both(bits: int, codes: np.ndarray, ids=None, substrings=None):
    flat, multi = HammingIndex(bits), MultiIndexHammingIndex(bits, substrings)
    flat.add(codes, ids)
    multi.add(codes, ids)
    return flat, multi


def assert_same(flat: HammingIndex, multi: MultiIndexHammingIndex, queries: np.ndarray,
                ks=(1, 10, 100, 1000), radii=(0, 2, 5)) -> None:
    for k in ks:
        want, got = flat.search(queries, k), multi.search(queries, k)
        assert (got[0] == want[0]).all() and (got[1] == want[1]).all(), k
    for radius in radii:
        for got, want in zip(multi.range_search(queries, radius),
                             flat.range_search(queries, radius), strict=True):
            assert (got == want).all(), radius


@pytest.fixture(params=["tables", "give-up", "free"])
def path(request, monkeypatch):
    """tables: as shipped; give-up: every query scans after one unit of work; free: no query
    ever gives up and no index scans first, so the tables answer everything."""
    if request.param == "give-up":
        monkeypatch.setattr(MultiIndexHammingIndex, "_budget", staticmethod(lambda t: 1))
    if request.param == "free":
        monkeypatch.setattr(mih, "BUDGET_FRACTION", 1e9)
    return request.param


@pytest.mark.parametrize("bits", [16, 33, 64, 100, 128, 256])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_same_results_as_the_flat_index(path, rng, bits, kind):
    make = random_packed if kind == "random" else clustered_packed
    codes = make(rng, 6000, bits)
    ids = rng.choice(10**7, len(codes), replace=False)  # ids not in row order
    flat, multi = both(bits, codes, ids)
    queries = np.concatenate([codes[:8], make(rng, 8, bits)])
    assert_same(flat, multi, queries)
    assert multi.build() is not None  # the tables were used


def test_ties_resolve_by_id_as_the_flat_index(path, rng):
    # a few distinct codes, many copies: every k-th distance is tied
    codes = random_packed(rng, 8000, 64, distinct=12)
    flat, multi = both(64, codes, rng.permutation(8000))
    assert_same(flat, multi, codes[:5], ks=(1, 7, 500, 3000))


def test_updates_keep_results_exact(path, rng):
    codes = clustered_packed(rng, 8000, 48)
    flat, multi = both(48, codes)
    queries = codes[:6]
    assert_same(flat, multi, queries, ks=(10, 200))
    built = multi._tables
    # a few appends: scanned beside the tables, no rebuild
    more = clustered_packed(rng, 50, 48)
    flat.add(more)
    multi.add(more)
    assert_same(flat, multi, queries, ks=(10, 200))
    assert multi._tables is built
    # removals marked dead, then so many that rows are dropped (renumbered: a rebuild)
    for drop in (np.arange(0, 40), np.arange(100, 4000)):
        assert flat.remove(drop) == multi.remove(drop)
        assert_same(flat, multi, queries, ks=(10, 200))
    # ids below the largest present: a merge, renumbered rows, a rebuild
    flat.add(more[:5], np.arange(10**6, 10**6 + 5) - 10**6 + 200)
    multi.add(more[:5], np.arange(10**6, 10**6 + 5) - 10**6 + 200)
    assert_same(flat, multi, queries, ks=(10, 200))
    assert multi._tables is not built


def test_small_and_empty_indexes_scan(rng):
    multi = MultiIndexHammingIndex(32)
    dist, ids = multi.search(random_packed(rng, 2, 32), 3)
    assert (ids == -1).all() and (dist == 2**31 - 1).all()
    codes = random_packed(rng, 100, 32)
    flat, multi = both(32, codes)
    assert multi.build() is None  # below MIN_ROWS: a scan is as fast
    assert_same(flat, multi, codes[:3], ks=(1, 150))


def test_uniform_codes_scan_from_the_start_and_clustered_ones_do_not(rng):
    _, random_multi = both(64, random_packed(rng, 200_000, 64))
    _, clustered_multi = both(64, clustered_packed(rng, 200_000, 64))
    assert random_multi.build().scan_first
    assert not clustered_multi.build().scan_first


def test_save_load_and_pickle(tmp_path, rng):
    codes = clustered_packed(rng, 6000, 64)
    flat, multi = both(64, codes, substrings=5)
    multi.save(tmp_path / "db.hidx")
    loaded = MultiIndexHammingIndex.load(tmp_path / "db.hidx", mmap=True)
    assert loaded.build().length.tolist() == [13, 13, 13, 13, 12]  # m rebuilt at load: auto
    assert_same(flat, loaded, codes[:4], ks=(10,))
    copy = pickle.loads(pickle.dumps(multi))
    assert copy._tables is None
    assert_same(flat, copy, codes[:4], ks=(10,))
    assert len(HammingIndex.load(tmp_path / "db.hidx").ids) == 6000  # a plain index file


def test_substrings_argument():
    assert [length for _, length in mih.substrings_for(64, 10**6, 3)] == [22, 21, 21]
    assert [length for _, length in mih.substrings_for(64, 10**6)] == [16, 16, 16, 16]
    assert len(mih.substrings_for(256, 10**7)) == 12  # ceil(256 / 23): about log2(n) bits
    with pytest.raises(HashsdkError, match="substrings must be 1 to 16"):
        MultiIndexHammingIndex(16, 17)
    with pytest.raises(HashsdkError, match="substrings must be an integer"):
        MultiIndexHammingIndex(16, 0)
