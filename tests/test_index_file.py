import os

import numpy as np
import pytest
from conftest import random_packed

from hashsdk import HammingIndex, HashsdkError
from hashsdk.index import index_file


@pytest.fixture
def saved(tmp_path, rng):
    index = HammingIndex(48)
    index.add(random_packed(rng, 1000, 48), ids=rng.permutation(5000)[:1000])
    path = tmp_path / "db.hidx"
    index.save(path)
    return index, path


@pytest.mark.parametrize("mmap", [False, True])
def test_round_trip(saved, rng, mmap):
    index, path = saved
    loaded = HammingIndex.load(path, mmap=mmap)
    assert loaded.bits == 48 and loaded.ntotal == 1000
    assert (loaded.codes == index.codes).all() and (loaded.ids == index.ids).all()
    q = random_packed(rng, 10, 48)
    for a, b in zip(loaded.search(q, 20), index.search(q, 20), strict=True):
        assert (a == b).all()
    assert isinstance(loaded._snap.codes, np.memmap) == mmap


def test_next_id_survives_a_round_trip(tmp_path, rng):
    index = HammingIndex(8)
    index.add(random_packed(rng, 5, 8))
    index.remove([3, 4])
    index.save(tmp_path / "a.hidx")
    loaded = HammingIndex.load(tmp_path / "a.hidx")
    assert loaded.add(random_packed(rng, 1, 8)).tolist() == [5]


def test_mapped_index_can_still_be_added_to(saved, rng):
    _, path = saved
    loaded = HammingIndex.load(path, mmap=True)
    loaded.add(random_packed(rng, 3, 48))
    assert loaded.ntotal == 1003


def test_empty_index_round_trip(tmp_path):
    HammingIndex(300).save(tmp_path / "e.hidx")
    for mmap in (False, True):
        loaded = HammingIndex.load(tmp_path / "e.hidx", mmap=mmap)
        assert loaded.bits == 300 and loaded.ntotal == 0


@pytest.mark.parametrize("keep", [0, 10, 63, 64, 65, 5000, -1])
def test_truncated_file_is_refused(saved, keep):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    for mmap in (False, True):
        with pytest.raises(HashsdkError, match="truncated|shorter than"):
            HammingIndex.load(path, mmap=mmap)


def test_file_with_extra_bytes_is_refused(saved):
    _, path = saved
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(HashsdkError, match="expected"):
        HammingIndex.load(path)


def test_corrupt_header_is_refused(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[12] ^= 0x01  # bits
    path.write_bytes(bytes(data))
    with pytest.raises(HashsdkError, match="corrupt index header"):
        HammingIndex.load(path, mmap=True)


@pytest.mark.parametrize("offset", [64, 64 + 3000, -8])  # a code byte, another, an id byte
def test_corrupt_data_is_refused(saved, offset):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(HashsdkError, match="corrupt index data"):
        HammingIndex.load(path)
    with pytest.raises(HashsdkError, match="corrupt index data"):
        HammingIndex.load(path, mmap=True, verify=True)


@pytest.mark.parametrize("content", [b"", b"hello", b"\x93NUMPY" + b"\0" * 100])
def test_not_an_index(tmp_path, content):
    path = tmp_path / "x.hidx"
    path.write_bytes(content)
    with pytest.raises(HashsdkError, match="not a hashsdk index"):
        HammingIndex.load(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        HammingIndex.load("/nonexistent/db.hidx")


def test_crash_mid_write_leaves_the_old_file_whole(saved, monkeypatch, rng):
    index, path = saved
    before = path.read_bytes()
    bigger = HammingIndex(48)
    bigger.add(random_packed(rng, 5000, 48))

    real_write = index_file.atomic_write

    class Boom(Exception):
        pass

    def failing_atomic_write(p):
        ctx = real_write(p)

        class Wrapper:
            def __enter__(self):
                f = ctx.__enter__()
                original = f.write
                calls = []

                def write(data):
                    calls.append(1)
                    if len(calls) == 2:  # after the header, during the codes
                        original(bytes(memoryview(data)[:100]))
                        raise Boom()
                    return original(data)

                f.write = write
                return f

            def __exit__(self, *exc):
                return ctx.__exit__(*exc)

        return Wrapper()

    monkeypatch.setattr(index_file, "atomic_write", failing_atomic_write)
    with pytest.raises(Boom):
        bigger.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["db.hidx"]  # no temporary file left behind


def test_saving_over_a_mapped_index(saved, rng):
    _, path = saved
    mapped = HammingIndex.load(path, mmap=True)
    q = random_packed(rng, 3, 48)
    expected = mapped.search(q, 5)
    replacement = HammingIndex(48)
    replacement.add(random_packed(rng, 10, 48))
    replacement.save(path)
    again = mapped.search(q, 5)  # the old mapping still reads the old, unlinked file
    assert (again[1] == expected[1]).all()
    assert HammingIndex.load(path).ntotal == 10


def test_saved_file_has_normal_permissions(saved):
    _, path = saved
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    old = os.umask(0)
    os.umask(old)
    return old


def test_the_paths_file_is_written_with_the_index_and_a_failure_keeps_both(tmp_path, rng,
                                                                           monkeypatch):
    path = tmp_path / "db.hidx"
    idx = HammingIndex(16)
    idx.add(random_packed(rng, 3, 16))
    idx.save(path, paths=["a.jpg", "b c.jpg", "é.jpg"])
    assert index_file.read_paths(path, 3) == ["a.jpg", "b c.jpg", "é.jpg"]
    idx.add(random_packed(rng, 2, 16))

    calls, real = [], index_file._bytes

    def fail_while_writing(array):  # the CRC reads the arrays first, then they are written
        calls.append(1)
        if len(calls) > 2:
            assert (tmp_path / "db.hidx.paths.txt").read_text().startswith("a.jpg")
            raise OSError("disk full")
        return real(array)
    monkeypatch.setattr(index_file, "_bytes", fail_while_writing)
    with pytest.raises(OSError, match="disk full"):
        idx.save(path, paths=list("abcde"))
    monkeypatch.undo()
    # both old files, whole, and no temporary file left behind
    assert HammingIndex.load(path).ntotal == 3 and len(index_file.read_paths(path, 3)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.hidx", "db.hidx.paths.txt"]
    with pytest.raises(HashsdkError, match=r"expected one per code \(5\), got 4"):
        idx.save(path, paths=list("abcd"))
    with pytest.raises(HashsdkError, match="line break"):
        idx.save(path, paths=["a", "b", "c", "d\ne", "f"])
    with pytest.raises(HashsdkError, match="lists 3 images but .* holds 5 codes"):
        index_file.read_paths(path, 5)
    assert index_file.read_paths(tmp_path / "other.hidx", 5) is None
