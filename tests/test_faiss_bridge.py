import pytest
from conftest import random_packed

faiss = pytest.importorskip("faiss")

from hashsdk import HammingIndex, HashsdkError  # noqa: E402


def test_flat_round_trip_and_same_search_as_faiss(rng):
    codes = random_packed(rng, 2000, 64)
    index = HammingIndex(64)
    index.add(codes, ids=rng.permutation(10_000)[:2000])
    flat = index.to_faiss("flat")
    assert flat.ntotal == 2000
    q = random_packed(rng, 5, 64)
    d_ours, i_ours = index.search(q, 10)
    d_faiss, i_faiss = flat.search(q, 10)
    assert (d_ours == d_faiss).all()
    # same distances; tie order may differ in faiss, so compare id sets per distance
    for row in range(5):
        for dist in set(d_ours[row].tolist()) - {d_ours[row, -1]}:
            assert set(i_ours[row][d_ours[row] == dist]) == set(i_faiss[row][d_faiss[row] == dist])
    back = HammingIndex.from_faiss(flat)
    assert (back.codes == index.codes).all() and (back.ids == index.ids).all()


def test_ivf_round_trip_keeps_every_code(rng):
    codes = random_packed(rng, 3000, 32)
    index = HammingIndex(32)
    index.add(codes)
    ivf = index.to_faiss("ivf", nlist=16)
    assert ivf.ntotal == 3000 and ivf.nlist == 16
    ivf.nprobe = 16  # all lists: exact
    d, _ = ivf.search(codes[:3], 1)
    assert (d[:, 0] == 0).all()
    back = HammingIndex.from_faiss(ivf)
    assert (back.codes == index.codes).all() and (back.ids == index.ids).all()


def test_plain_faiss_flat_index_reads_with_sequential_ids(rng):
    codes = random_packed(rng, 50, 16)
    flat = faiss.IndexBinaryFlat(16)
    flat.add(codes)
    back = HammingIndex.from_faiss(flat)
    assert back.ids.tolist() == list(range(50)) and (back.codes == codes).all()


def test_bits_must_be_a_multiple_of_eight_for_faiss():
    with pytest.raises(HashsdkError, match="multiple of 8"):
        HammingIndex(12).to_faiss()
    with pytest.raises(HashsdkError, match="kind must be"):
        HammingIndex(16).to_faiss("hnsw")
