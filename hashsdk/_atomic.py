"""Atomic file writes: a crash mid-write leaves the old file whole."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yields a binary file that replaces ``path`` only when the block ends without error.

    The data goes to a temporary file in the same folder, which is flushed, fsynced and then
    renamed over ``path`` (rename is atomic within a file system); the folder is fsynced so that
    the rename survives a power cut. On any exception the temporary file is removed and ``path``
    is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file 0600; give it the mode a plain open() would have
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_folder(path)


def fsync_folder(path: str | os.PathLike) -> None:
    """Makes a file's creation, rename or removal in its folder durable (where folders can be
    opened, as on POSIX systems)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    # os.umask can only be read by setting it; /proc avoids that race where it exists
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022
