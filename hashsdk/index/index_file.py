"""The ``.hidx`` file format of ``HammingIndex``.

Layout, all integers little-endian::

    offset  size  field
    0       8     magic b"HSDKHIDX"
    8       4     format version (1)
    12      4     bits
    16      4     code size in bytes, ceil(bits / 8)
    20      4     flags (0)
    24      8     count: number of codes
    32      8     next default id
    40      8     codes offset (64)
    48      8     ids offset: codes offset + count * code size, rounded up to 8
    56      4     CRC32 of the data: codes, zero padding, ids
    60      4     CRC32 of bytes 0..59 of this header
    64            codes: count rows of code-size bytes (packed, MSB first)
                  zero padding to an 8-byte boundary
    ids offset    ids: count int64, ascending

The codes and ids are raw arrays, so ``np.memmap`` can map a large index without reading it.
Reading checks the header CRC and the exact file size (a truncated file fails); the data CRC
is checked on a full read, and on a mapped read only when asked, because it reads every byte.

The paths file ``INDEX.paths.txt`` (written by ``hashsdk index build --model``) is UTF-8 text,
one image path per line, relative to the index file's folder (``relative_to_index``; an
absolute path is kept as it is), so that the index and its images can move together and be
served from any directory (``resolve_path``): line i is the image of the i-th code in id
order (id i for the default ids 0, 1, 2, ...). It is written in the same step as the index:
both files are written in full, then renamed into place one right after the other, so that a
failed build leaves both old files. Only a crash between the two renames could pair the new
paths with the old index; ``read_paths`` refuses a paths file whose count disagrees with the
index.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from hashsdk._atomic import atomic_write
from hashsdk.codes import MAX_BITS
from hashsdk.errors import HashsdkError

MAGIC = b"HSDKHIDX"
VERSION = 1
HEADER = struct.Struct("<8sIIIIQQQQII")
HEADER_SIZE = 64
assert HEADER.size == HEADER_SIZE
_CRC_CHUNK = 16 << 20
PATHS_SUFFIX = ".paths.txt"


@dataclass(frozen=True)
class Header:
    bits: int
    code_size: int
    count: int
    next_id: int
    codes_offset: int
    ids_offset: int
    data_crc: int


def _ids_offset(count: int, code_size: int) -> int:
    end = HEADER_SIZE + count * code_size
    return (end + 7) // 8 * 8


def _bytes(array: np.ndarray) -> memoryview:
    """The array's bytes in memory order, without a copy where it is contiguous."""
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _crc(crc: int, data: np.ndarray) -> int:
    raw = _bytes(data)
    for start in range(0, len(raw), _CRC_CHUNK):
        crc = zlib.crc32(raw[start:start + _CRC_CHUNK], crc)
    return crc


def _data_crc(codes: np.ndarray, ids: np.ndarray, pad: bytes) -> int:
    return _crc(zlib.crc32(pad, _crc(0, codes)), ids.astype("<i8", copy=False))


def write(path: str | os.PathLike, bits: int, codes: np.ndarray, ids: np.ndarray,
          next_id: int, paths: list[str] | None = None) -> None:
    """Writes an index file atomically (see ``hashsdk._atomic.atomic_write``), and with
    ``paths`` (one per code, in id order) its paths file in the same step."""
    count, code_size = codes.shape
    if paths is not None and len(paths) != count:
        raise HashsdkError(f"paths: expected one per code ({count}), got {len(paths)}")
    if paths is not None and any("\n" in p or "\r" in p for p in paths):
        raise HashsdkError("paths: a path with a line break cannot go in a paths file")
    ids_offset = _ids_offset(count, code_size)
    pad = b"\0" * (ids_offset - HEADER_SIZE - count * code_size)
    crc = _data_crc(codes, ids, pad)
    head = HEADER.pack(MAGIC, VERSION, bits, code_size, 0, count, next_id, HEADER_SIZE,
                       ids_offset, crc, 0)
    head = head[:60] + struct.pack("<I", zlib.crc32(head[:60]))
    with contextlib.ExitStack() as both:
        # the paths file is renamed into place last, once the index is (see the docstring)
        lines = both.enter_context(atomic_write(paths_path(path))) if paths is not None else None
        with atomic_write(path) as f:
            if lines is not None:
                lines.write("".join(p + "\n" for p in paths).encode())
            f.write(head)
            f.write(_bytes(codes))
            f.write(pad)
            f.write(_bytes(ids.astype("<i8", copy=False)))


def relative_to_index(index_path: str | os.PathLike, image: str | os.PathLike) -> str:
    """How the paths file names ``image`` (a path from the current directory): relative to
    the index file's folder, or absolute where no relative path leads there (another drive)."""
    folder = os.path.dirname(os.path.abspath(index_path))
    try:
        return os.path.relpath(os.path.abspath(image), folder)
    except ValueError:
        return os.path.abspath(image)


def resolve_path(index_path: str | os.PathLike, stored: str) -> str:
    """The file a paths-file line names, from the current directory: relative to the index's
    folder; an index written before paths were stored so (relative to the directory it was
    built in) falls back to the line as it is, where only that exists."""
    if os.path.isabs(stored):
        return stored
    beside = os.path.join(os.path.dirname(os.fspath(index_path)), stored)
    return stored if not os.path.exists(beside) and os.path.exists(stored) else beside


def paths_path(path: str | os.PathLike) -> str:
    """The paths file of the index at ``path``."""
    return os.fspath(path) + PATHS_SUFFIX


def read_paths(path: str | os.PathLike, count: int) -> list[str] | None:
    """The image paths of the index at ``path`` (which holds ``count`` codes), or None where it
    has no paths file. A paths file of another length raises."""
    try:
        with open(paths_path(path), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    if len(lines) != count:
        raise HashsdkError(f"{paths_path(path)} lists {len(lines)} images but {path} holds "
                           f"{count} codes: they are not one build's pair; rebuild the index")
    return lines


def read_header(path: str | os.PathLike) -> Header:
    """Reads and checks the header, and that the file is exactly as long as it says."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_SIZE)
            size = os.fstat(f.fileno()).st_size
    except IsADirectoryError:
        raise HashsdkError(f"{path}: is a folder, expected a .hidx index file") from None
    if len(raw) < HEADER_SIZE:
        raise HashsdkError(f"{path}: not a hashsdk index (file of {size} bytes is shorter than "
                           f"the {HEADER_SIZE}-byte header)")
    (magic, version, bits, code_size, _flags, count, next_id, codes_offset, ids_offset,
     data_crc, head_crc) = HEADER.unpack(raw)
    if magic != MAGIC:
        raise HashsdkError(f"{path}: not a hashsdk index (magic {magic!r}, expected {MAGIC!r})")
    if zlib.crc32(raw[:60]) != head_crc:
        raise HashsdkError(f"{path}: corrupt index header (CRC mismatch)")
    if version != VERSION:
        raise HashsdkError(f"{path}: index format version {version}; this hashsdk reads "
                           f"version {VERSION}")
    if (not 1 <= bits <= MAX_BITS or code_size != (bits + 7) // 8
            or codes_offset != HEADER_SIZE or ids_offset != _ids_offset(count, code_size)):
        raise HashsdkError(f"{path}: corrupt index header (bits={bits}, code size={code_size}, "
                           f"count={count}, offsets {codes_offset}/{ids_offset})")
    expected = ids_offset + 8 * count
    if size != expected:
        raise HashsdkError(f"{path}: index file is {size} bytes, expected {expected} for "
                           f"{count} codes of {bits} bits (truncated or corrupt)")
    return Header(bits, code_size, count, next_id, codes_offset, ids_offset, data_crc)


def read(path: str | os.PathLike, mmap: bool,
         verify: bool) -> tuple[Header, np.ndarray, np.ndarray]:
    """Reads an index file.

    Returns:
        the header, codes uint8 (count, code_size) and ids int64 (count,). With ``mmap`` both
        arrays are read-only maps of the file.
    """
    head = read_header(path)
    shape = (head.count, head.code_size)
    if mmap and head.count:
        codes = np.memmap(path, np.uint8, "r", head.codes_offset, shape)
        ids = np.memmap(path, "<i8", "r", head.ids_offset, (head.count,))
    else:
        with open(path, "rb") as f:
            f.seek(head.codes_offset)
            codes = np.fromfile(f, np.uint8, head.count * head.code_size).reshape(shape)
            f.seek(head.ids_offset)
            ids = np.fromfile(f, "<i8", head.count)
    if verify:
        pad = b"\0" * (head.ids_offset - head.codes_offset - head.count * head.code_size)
        if _data_crc(codes, ids, pad) != head.data_crc:
            raise HashsdkError(f"{path}: corrupt index data (CRC mismatch)")
        if head.count > 1 and not (ids[1:] > ids[:-1]).all():
            raise HashsdkError(f"{path}: corrupt index data (ids not strictly ascending)")
    return head, codes, ids.astype(np.int64, copy=False)
