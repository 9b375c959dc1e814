"""MilvusIndex against a real Milvus (Milvus Lite, in this process), checked against
HammingIndex; skipped only where Milvus Lite does not install."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_packed

pytest.importorskip("milvus_lite")

from hashsdk import HammingIndex, HashsdkError  # noqa: E402
from hashsdk.index.milvus import MilvusIndex, to_milvus_bytes  # noqa: E402

BIN = Path(sys.executable).parent


def clustered_packed(rng, n: int, bits: int, centres: int = 20, flip: float = 0.08):
    """Codes around a few centres, about ``flip`` of the bits flipped: many ties."""
    base = rng.integers(0, 2, (centres, bits), dtype=np.uint8)
    rows = base[rng.integers(0, centres, n)] ^ (rng.random((n, bits)) < flip)
    return np.packbits(rows.astype(np.uint8), axis=1)


def documented_layout(bit_list: list[int]) -> bytes:
    """The oracle: Milvus's user guide packs dimension i into bit i % 8 of byte i // 8."""
    out = bytearray(len(bit_list) // 8)
    for i, bit in enumerate(bit_list):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def test_a_code_built_bit_by_bit_lands_where_milvus_puts_it(tmp_path):
    bit_list = [1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1]  # 12 bits, padded with zeros to 16
    ours = np.packbits(np.array(bit_list, np.uint8))[None]
    assert to_milvus_bytes(ours)[0].tobytes() == documented_layout(bit_list + [0] * 4)
    # a vector inserted the documented way is found at distance 0 by our packed code
    index = MilvusIndex(str(tmp_path / "m.db"), "bits", bits=12)
    index._client.insert("bits", [{"id": 7, "code": documented_layout(bit_list + [0] * 4)}])
    dist, ids = index.search(ours, 1)
    assert (dist[0, 0], ids[0, 0]) == (0, 7)
    back = index.to_hamming_index(progress=False)
    assert (back.codes == ours).all() and back.ids.tolist() == [7]


def same_results(milvus: MilvusIndex, flat: HammingIndex, queries: np.ndarray) -> None:
    for k in (1, 10, 100):
        want_d, want_i = flat.search(queries, k)
        got_d, got_i = milvus.search(queries, k)
        assert (got_d == want_d).all(), k
        for row in range(len(queries)):
            kth = want_d[row, -1]
            tied = (flat.search(queries[row:row + 1], flat.ntotal)[0] == kth).sum()
            slots = (want_d[row] == kth).sum()
            if tied == slots:  # the k-th distance is not shared with codes left out
                assert (got_i[row] == want_i[row]).all()
            else:
                keep = want_d[row] < kth
                assert (got_i[row][keep] == want_i[row][keep]).all()
    for radius in (0, max(1, milvus.bits // 8)):
        for got, want in zip(milvus.range_search(queries, radius),
                             flat.range_search(queries, radius), strict=True):
            assert (got == want).all()


@pytest.mark.parametrize("bits", [12, 48, 64, 256])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_knn_and_range_match_hamming_index(tmp_path, rng, bits, kind):
    make = random_packed if kind == "random" else clustered_packed
    codes = make(rng, 1500, bits)
    ids = rng.choice(10**9, len(codes), replace=False)
    queries = np.concatenate([codes[:5], make(rng, 10, bits)])
    flat = HammingIndex(bits)
    flat.add(codes, ids)
    milvus = MilvusIndex(str(tmp_path / "m.db"), f"c{bits}{kind}", bits=bits)
    milvus.add(codes, ids)
    assert milvus.ntotal == 1500
    same_results(milvus, flat, queries)
    # removals leave the same results on both sides
    gone = ids[::7]
    assert milvus.remove(np.concatenate([gone, [10**10]])) == len(gone) == flat.remove(gone)
    assert milvus.ntotal == flat.ntotal
    same_results(milvus, flat, queries)


def test_ivf_on_milvus_lite_is_refused_clearly(tmp_path):
    # Milvus Lite builds BIN_FLAT only; BIN_IVF_FLAT needs a server, which did not run here
    db = str(tmp_path / "m.db")
    with pytest.raises(HashsdkError, match="BIN_IVF_FLAT needs a Milvus server"):
        MilvusIndex(db, "ivf", bits=64, index_type="BIN_IVF_FLAT", nlist=16, nprobe=16)
    with pytest.raises(HashsdkError, match="does not exist"):  # nothing half made was kept
        MilvusIndex(db, "ivf")


def test_reopened_after_the_process_ends(tmp_path, rng):
    db = str(tmp_path / "m.db")
    codes = random_packed(rng, 300, 48)
    np.save(tmp_path / "codes.npy", codes)
    script = ("import numpy as np; from hashsdk.index.milvus import MilvusIndex; "
              f"MilvusIndex({db!r}, 'kept', bits=48).add(np.load({str(tmp_path / 'codes.npy')!r}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    index = MilvusIndex(db, "kept")  # bits read from the collection
    assert index.bits == 48 and index.ntotal == 300
    dist, ids = index.search(codes[:3], 1)
    assert (dist[:, 0] == 0).all() and ids[:, 0].tolist() == [0, 1, 2]
    assert index.add(codes[:2]).tolist() == [300, 301]  # default ids go on after the largest


def test_both_ways_and_the_cli(tmp_path, rng):
    flat = HammingIndex(24)
    flat.add(random_packed(rng, 250, 24), rng.choice(10**6, 250, replace=False))
    milvus = flat.to_milvus(str(tmp_path / "m.db"), "pushed", progress=False)
    back = milvus.to_hamming_index(progress=False)
    assert (back.ids == flat.ids).all() and (back.codes == flat.codes).all()
    flat.save(tmp_path / "db.hidx")
    done = subprocess.run([str(BIN / "hashsdk"), "index", "push", str(tmp_path / "db.hidx"),
                           "--milvus", str(tmp_path / "cli.db"), "--collection", "images"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pushed 250 codes of 24 bits" in done.stdout
    assert MilvusIndex(str(tmp_path / "cli.db"), "images").ntotal == 250


def test_bad_input_gets_our_clear_errors(tmp_path, rng):
    db = str(tmp_path / "m.db")
    index = MilvusIndex(db, "c", bits=48)
    index.add(random_packed(rng, 10, 48), np.arange(10))
    with pytest.raises(HashsdkError, match="packed uint8 codes of width 6"):
        index.add(random_packed(rng, 2, 64))
    with pytest.raises(HashsdkError, match="unique within the batch"):
        index.add(random_packed(rng, 2, 48), np.array([20, 20]))
    with pytest.raises(HashsdkError, match="already in the collection"):
        index.add(random_packed(rng, 2, 48), np.array([3, 50]))
    assert index.ntotal == 10  # nothing of a refused batch went in
    with pytest.raises(HashsdkError, match="holds 48-bit codes"):
        MilvusIndex(db, "c", bits=64)
    with pytest.raises(HashsdkError, match="does not exist .* pass bits"):
        MilvusIndex(db, "missing")
    with pytest.raises(HashsdkError, match="k must be at most 16384"):
        index.search(random_packed(rng, 1, 48), 20_000)
    with pytest.raises(HashsdkError, match="index_type must be one of"):
        MilvusIndex(db, "d", bits=8, index_type="HNSW")
