"""The write-ahead journal of ``hashsdk serve``: adds and removes, fsynced before they are
acknowledged, replayed over the last saved index on start.

Layout, all integers little-endian::

    file header, 16 bytes:
        0   8   magic b"HSDKJRNL"
        8   4   format version (1)
        12  4   bits of the codes
    then records, one after another:
        0   4   payload length in bytes
        4   4   CRC32 of the payload
        8       payload:
                    0   1   op: 1 add, 2 remove
                    1   4   n, the number of ids
                    5       ids: n int64
                            add only: codes, n rows of ceil(bits / 8) bytes (packed, MSB
                            first), then the paths: UTF-8 JSON, a list of n strings or nulls

Replaying is idempotent: an add sets each id to its code (replacing a code the id already
has) and a remove deletes ids that are present. So replaying a journal over the index it
started from, or over one into which some of its records were already folded, gives the same
index: for every id, the last record that names it decides. That is what makes folding safe
without making the index file and the journal change together (see ``state``).

A record is written with one ``write`` and fsynced before the write is acknowledged. A crash
can leave the last record torn (short, or with a CRC that fails): it was never acknowledged,
so it is dropped and the file truncated there. A failing record with whole records after it
is damage, not a crash, and the journal refuses to open rather than skip it.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hashsdk._atomic import fsync_folder
from hashsdk.codes import code_size
from hashsdk.errors import HashsdkError

MAGIC = b"HSDKJRNL"
VERSION = 1
FILE_HEADER = struct.Struct("<8sII")
RECORD_HEADER = struct.Struct("<II")
ADD, REMOVE = 1, 2
MAX_RECORD = 1 << 30  # a length above this is damage, not a record
SCAN_WINDOW = 1 << 20  # how far past a bad length to look for a whole record


@dataclass(frozen=True)
class Record:
    """One journal record: ``op`` ADD or REMOVE, ids int64 (n,), and for ADD the packed codes
    uint8 (n, code size) and one path (or None) per id."""
    op: int
    ids: np.ndarray
    codes: np.ndarray | None = None
    paths: list[str | None] | None = None


def encode_record(record: Record) -> bytes:
    """The record's bytes, header included."""
    ids = np.ascontiguousarray(record.ids, dtype="<i8")
    parts = [struct.pack("<BI", record.op, len(ids)), ids.tobytes()]
    if record.op == ADD:
        parts.append(np.ascontiguousarray(record.codes, np.uint8).tobytes())
        paths = record.paths if record.paths is not None else [None] * len(ids)
        parts.append(json.dumps(paths).encode())
    payload = b"".join(parts)
    return RECORD_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes, bits: int, where: str) -> Record:
    """A checked payload (its CRC passed) back into a Record; raises on a malformed one."""
    try:
        op, n = struct.unpack_from("<BI", payload)
        ids = np.frombuffer(payload, "<i8", n, 5).astype(np.int64)
        if op == REMOVE and len(payload) == 5 + 8 * n:
            return Record(REMOVE, ids)
        if op == ADD:
            start = 5 + 8 * n
            end = start + n * code_size(bits)
            codes = np.frombuffer(payload[start:end], np.uint8).reshape(n, code_size(bits))
            paths = json.loads(payload[end:].decode())
            if isinstance(paths, list) and len(paths) == n and \
                    all(p is None or isinstance(p, str) for p in paths):
                return Record(ADD, ids, codes.copy(), paths)
    except (struct.error, ValueError, UnicodeDecodeError):
        pass
    raise HashsdkError(f"{where}: malformed journal record")


class Journal:
    """An append-only journal file, opened for appending after its records were read.

    ``Journal.open(path, bits)`` creates the file (fsynced, with its folder) if missing, checks
    its header, reads its records and drops a torn last one. ``records`` holds what was read;
    ``append`` writes and fsyncs one record. Not thread-safe: the caller serializes writes.
    """

    def __init__(self, path: str, bits: int, fd: int, records: list[Record], size: int):
        self.path, self.bits, self._fd = path, bits, fd
        self.records, self.size, self.appended = records, size, 0

    @classmethod
    def open(cls, path: str | os.PathLike, bits: int) -> Journal:
        path = os.fspath(path)
        created = not os.path.exists(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if created or os.fstat(fd).st_size == 0:
                os.write(fd, FILE_HEADER.pack(MAGIC, VERSION, bits))
                os.fsync(fd)
                fsync_folder(path)
            with open(path, "rb") as f:
                data = f.read()
            records, good = read_records(data, bits, path)
            if good < len(data):  # a torn last record: never acknowledged, drop it
                os.ftruncate(fd, good)
                os.fsync(fd)
            os.lseek(fd, good, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, bits, fd, records, good)

    def append(self, record: Record) -> None:
        """Writes the record and fsyncs it: when this returns, it survives a crash."""
        data = encode_record(record)
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk: undo the partial record, refuse the write
            os.ftruncate(self._fd, self.size)
            os.lseek(self._fd, self.size, os.SEEK_SET)
            raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes)")
        os.fdatasync(self._fd)
        self.size += len(data)
        self.appended += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_records(data: bytes, bits: int, where: str) -> tuple[list[Record], int]:
    """The records of a journal's bytes and the length of its whole part (the offset after
    the last good record). Raises for a foreign file, another bits, or damage before the end."""
    if len(data) < FILE_HEADER.size:
        raise HashsdkError(f"{where}: not a hashsdk journal (shorter than its header)")
    magic, version, file_bits = FILE_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise HashsdkError(f"{where}: not a hashsdk journal (bad magic)")
    if version != VERSION:
        raise HashsdkError(f"{where}: journal version {version}, expected {VERSION}")
    if file_bits != bits:
        raise HashsdkError(f"{where}: a journal of {file_bits}-bit codes, the index holds "
                           f"{bits}-bit codes")
    ends: list[int] = []
    records = list(_records(data, bits, where, ends))
    return records, ends[-1]


def _records(data: bytes, bits: int, where: str, ends: list[int]) -> Iterator[Record]:
    """Yields the whole records; appends the end offset of the whole part to ``ends``."""
    offset = FILE_HEADER.size
    while True:
        ends.append(offset)
        if offset + RECORD_HEADER.size > len(data):
            return  # the end, or a torn header
        length, crc = RECORD_HEADER.unpack_from(data, offset)
        start, end = offset + RECORD_HEADER.size, offset + RECORD_HEADER.size + length
        if length > MAX_RECORD or end > len(data):
            if _any_record_after(data, offset):
                raise HashsdkError(f"{where}: damaged journal record at byte {offset}")
            return  # torn: the last write did not finish
        if zlib.crc32(data[start:end]) != crc:
            if end < len(data):
                raise HashsdkError(f"{where}: journal record at byte {offset} fails its CRC "
                                   f"and is not the last one: the file is damaged")
            return  # torn
        yield decode_payload(data[start:end], bits, f"{where} byte {offset}")
        offset = end


def _any_record_after(data: bytes, offset: int) -> bool:
    """Whether a record header with a matching CRC starts anywhere after ``offset``: a bad
    length there is damage in the middle, not a torn end."""
    for pos in range(offset + 1, min(len(data) - RECORD_HEADER.size, offset + SCAN_WINDOW)):
        length, crc = RECORD_HEADER.unpack_from(data, pos)
        end = pos + RECORD_HEADER.size + length
        if 5 <= length <= MAX_RECORD and end <= len(data) and \
                zlib.crc32(data[pos + RECORD_HEADER.size:end]) == crc:
            return True
    return False
