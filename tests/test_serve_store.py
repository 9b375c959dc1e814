"""The journal and ServedIndex of hashsdk serve: durable writes, torn tails, idempotent replay,
folding, checked against a plain dict of id -> code."""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import random_packed

from hashsdk import HammingIndex
from hashsdk.errors import HashsdkError
from hashsdk.index import index_file
from hashsdk.serve import Conflict, ServedIndex
from hashsdk.serve.journal import ADD, REMOVE, Journal, Record

BIN = Path(sys.executable).parent
BITS = 40


def state(served: ServedIndex) -> dict[int, bytes]:
    return {int(i): bytes(c) for i, c in zip(served.index.ids, served.index.codes, strict=True)}


def journal_files(path) -> list[str]:
    folder = os.path.dirname(path)
    return sorted(f for f in os.listdir(folder) if ".journal-" in f)


def test_journal_round_trip_and_torn_tail_dropped_at_every_byte(tmp_path, rng):
    path = tmp_path / "j"
    journal = Journal.open(path, BITS)
    codes = random_packed(rng, 3, BITS)
    records = [Record(ADD, np.array([5, 9, 2]), codes, ["a.jpg", None, "c/d é.png"]),
               Record(REMOVE, np.array([9]))]
    for record in records:
        journal.append(record)
    journal.close()
    whole = path.read_bytes()
    back = Journal.open(path, BITS)
    back.close()
    assert [r.op for r in back.records] == [ADD, REMOVE]
    np.testing.assert_array_equal(back.records[0].codes, codes)
    assert back.records[0].paths == ["a.jpg", None, "c/d é.png"]
    np.testing.assert_array_equal(back.records[1].ids, [9])
    last_start = len(whole) - (8 + 5 + 8)  # the remove record: header, op and n, one id
    for cut in range(last_start, len(whole)):  # every torn length of the last record
        path.write_bytes(whole[:cut])
        torn = Journal.open(path, BITS)
        torn.close()
        assert [r.op for r in torn.records] == [ADD]
        assert path.stat().st_size == last_start  # truncated to the whole part


def test_journal_refuses_damage_foreign_files_and_other_bits(tmp_path, rng):
    path = tmp_path / "j"
    journal = Journal.open(path, BITS)
    for i in range(3):
        journal.append(Record(ADD, np.array([i]), random_packed(rng, 1, BITS), [None]))
    journal.close()
    data = bytearray(path.read_bytes())
    with pytest.raises(HashsdkError, match="40-bit"):
        Journal.open(path, 48)
    data[16 + 8 + 2] ^= 0xFF  # a payload byte of the first of three records
    path.write_bytes(bytes(data))
    with pytest.raises(HashsdkError, match="damaged"):
        Journal.open(path, BITS)
    (tmp_path / "other").write_bytes(b"not a journal at all")
    with pytest.raises(HashsdkError, match="not a hashsdk journal"):
        Journal.open(tmp_path / "other", BITS)


def test_writes_survive_reopen_without_a_clean_close(tmp_path, rng):
    path = str(tmp_path / "db.hidx")
    served = ServedIndex(path, bits=BITS)
    expected = {}
    for step in range(30):
        codes = random_packed(rng, 4, BITS)
        ids = served.add(codes, None, [f"img{step * 4 + j}.png" for j in range(4)])
        assert ids.tolist() == list(range(step * 4, step * 4 + 4))
        expected.update({int(i): bytes(c) for i, c in zip(ids, codes, strict=True)})
        if step % 3 == 0:
            gone = served.remove([int(ids[0]), 10**6])
            assert gone == [int(ids[0])]
            del expected[int(ids[0])]
    # no close(): the process "dies"; only the journal has these writes
    die(served)
    reopened = ServedIndex(path)
    assert state(reopened) == expected
    assert reopened.replayed == 40
    assert reopened.paths == {i: f"img{i}.png" for i in expected}
    assert reopened.add(random_packed(rng, 1, BITS)).tolist() == [120]  # ids never reused


def test_concurrent_adds_get_ids_in_the_order_they_reach_the_index(tmp_path, rng):
    # new ids are handed out under the write lock: writers that overtake each other still
    # append, never merge (an O(n) copy each, and a rebuild of mih's tables)
    served = ServedIndex(str(tmp_path / "db.hidx"), bits=BITS)
    served.add(random_packed(rng, 100, BITS))
    batches = [random_packed(rng, 3, BITS) for _ in range(64)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(served.add, batches))
    assert served.index._snap.generation == 0  # no merge happened
    assert sorted(i for ids in got for i in ids.tolist()) == list(range(100, 292))
    for ids, codes in zip(got, batches, strict=True):
        np.testing.assert_array_equal(served.index.lookup(ids)[1], codes)


def test_replay_is_idempotent_over_a_folded_index(tmp_path, rng):
    """A crash after a fold wrote the index but before it deleted the journals: replaying them
    over the new index must give the same state (an add replaces, a remove deletes)."""
    path = str(tmp_path / "db.hidx")
    served = ServedIndex(path, bits=BITS)
    a, b = random_packed(rng, 2, BITS)
    served.add(a[None], np.array([1]))
    served.remove([1])
    served.add(b[None], np.array([1]))  # the same id again, another code
    served.add(random_packed(rng, 5, BITS), np.arange(10, 15))
    served.remove([12])
    expected = state(served)
    saved = {f: (tmp_path / f).read_bytes() for f in journal_files(path)}
    served.close()  # folds: index written, journals deleted
    assert HammingIndex.load(path).ntotal == 5
    for name, data in saved.items():  # the journals come back, as after that crash
        (tmp_path / name).write_bytes(data)
    again = ServedIndex(path)
    assert state(again) == expected


def test_interrupted_fold_finished_on_open(tmp_path, rng):
    path = str(tmp_path / "db.hidx")
    served = ServedIndex(path, bits=BITS)
    served.add(random_packed(rng, 3, BITS), np.array([0, 1, 2]))
    first = journal_files(path)[0]
    shutil.copy(tmp_path / first, tmp_path / "keep")
    served.close()
    os.replace(tmp_path / "keep", tmp_path / first)  # an old journal beside the new one
    served2 = ServedIndex(path)
    served2.add(random_packed(rng, 1, BITS), np.array([7]))
    expected = state(served2)
    # a second journal exists now: the open finished the fold, then wrote to a new journal
    assert len(journal_files(path)) == 1
    die(served2)
    assert state(ServedIndex(path)) == expected


def test_fold_every_and_paths_file(tmp_path, rng):
    path = str(tmp_path / "db.hidx")
    served = ServedIndex(path, bits=BITS, fold_every=5)
    for i in range(12):
        served.add(random_packed(rng, 1, BITS), np.array([i]), [f"p{i}" if i % 2 else None])
    served.close()
    index = HammingIndex.load(path)
    assert index.ntotal == 12
    lines = index_file.read_paths(path, 12)
    assert lines == [f"p{i}" if i % 2 else "" for i in range(12)]
    assert ServedIndex(path).paths == {i: f"p{i}" for i in range(1, 12, 2)}


def test_conflicts_and_bad_ids(tmp_path, rng):
    served = ServedIndex(str(tmp_path / "db.hidx"), bits=BITS)
    served.add(random_packed(rng, 2, BITS), np.array([3, 4]))
    with pytest.raises(Conflict, match=r"\[4\]"):
        served.add(random_packed(rng, 2, BITS), np.array([4, 5]))
    with pytest.raises(HashsdkError, match="repeat"):
        served.add(random_packed(rng, 2, BITS), np.array([8, 8]))
    assert served.journal_records == 1  # refused writes never reach the journal
    with pytest.raises(HashsdkError, match="no such index"):
        ServedIndex(str(tmp_path / "missing.hidx"))
    served.close()
    with pytest.raises(HashsdkError, match="48-bit"):
        ServedIndex(str(tmp_path / "db.hidx"), bits=48)
    with pytest.raises(HashsdkError, match="from 0 to"):
        ServedIndex(str(tmp_path / "db.hidx")).check_new(np.array([2**63 - 1]))


def die(served: ServedIndex) -> None:
    """What a killed process leaves: its files as they are, its writer's lock released (the
    kernel drops a dead process's flock)."""
    served._writer.release()


def test_one_writer_per_index_and_a_killed_one_leaves_no_lock(tmp_path, rng):
    path = str(tmp_path / "db.hidx")
    first = ServedIndex(path, bits=BITS)
    with pytest.raises(HashsdkError, match=r"being written by another process \(pid \d+, "
                                           r"hashsdk serve\)"):
        ServedIndex(path)
    np.save(tmp_path / "c.npy", random_packed(rng, 3, BITS))
    done = subprocess.run([str(BIN / "hashsdk"), "index", "build", str(tmp_path / "c.npy"),
                           "-o", path], capture_output=True, text=True)
    assert done.returncode == 1 and "being written by another process" in done.stderr
    first.close()
    ServedIndex(path).close()  # released on close
    # a server killed with SIGKILL: the kernel releases its lock with the process
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom hashsdk.serve.store import ServedIndex\n"
        f"s = ServedIndex({path!r})\nprint('open', flush=True)\ntime.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(HashsdkError, match="another process"):
            ServedIndex(path)
    finally:
        holder.kill()
        holder.wait()
    ServedIndex(path).close()


def test_mih_kind_serves_the_same_results(tmp_path, rng):
    codes = random_packed(rng, 5000, 64)  # above MIN_ROWS: the tables are built
    flat = HammingIndex(64)
    flat.add(codes)
    flat.save(tmp_path / "db.hidx")
    served = ServedIndex(str(tmp_path / "db.hidx"), kind="mih")
    assert served.add(random_packed(rng, 10, 64)).tolist() == list(range(5000, 5010))
    served.remove([5, 6])
    flat.add(served.index.lookup(np.arange(5000, 5010))[1], np.arange(5000, 5010))
    flat.remove(np.array([5, 6]))
    q = random_packed(rng, 20, 64)
    for got, want in zip(served.index.search(q, 15), flat.search(q, 15), strict=True):
        np.testing.assert_array_equal(got, want)
